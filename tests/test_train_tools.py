"""tools/train_cifar.py and tools/train_imagenet.py on generated data: learning, recipe, files, metrics.json,
resume, timm loading, plain timm models as baselines, torchrun DDP and bad input; the learning-rate schedules, the
auxiliary loss and run-folder names as units."""
from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path
from urllib.error import URLError

import pytest
import timm
import torch
from datagen import write_cifar10, write_cifar100, write_imagenet_folder
from kill_at import assert_log_replays, assert_no_file_lost, run_killed

from backbones import train_cli
from backbones.run_record import genotype_label
from backbones.schedulers import PDartsLinearLRScheduler, create_lr_scheduler
from backbones.training import AuxiliaryLoss, Trainer, TrainError, foreign_run
from pdarts_wild.config import SearchConfig
from pdarts_wild.data import DataError, build_test_dataset
from pdarts_wild.genotype import write_genotype_file
from pdarts_wild.networks import NetworkCIFAR, count_parameters
from pdarts_wild.zoo import GENOTYPES, resolve_genotype

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import train_cifar  # noqa: E402  (tools/train_cifar.py)
import train_imagenet  # noqa: E402  (tools/train_imagenet.py)
from model_info import model_info  # noqa: E402  (tools/model_info.py)

BASE = ["--device", "cpu", "--no-progress", "--workers", "0"]
TINY = [*BASE, "--init-channels", "8"]
CIFAR = [*TINY, "--layers", "5", "--batch-size", "16", "--lr", "0.1", "--epochs", "6"]
IMAGENET = [*TINY, "--layers", "3", "--input-size", "32", "--auxiliary-weight", "0", "--batch-size", "8"]
RUN_FILES = {"config.json", "train.log", "tb", "checkpoint.pt", "model_best.pth", "model_final.pth", "metrics.json"}


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def cifar_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_cifar10(tmp_path_factory.mktemp("cifar"), n_train=64, n_test=32)


@pytest.fixture(scope="module")
def imagenet_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_imagenet_folder(tmp_path_factory.mktemp("imagenet") / "in", per_class=8)


@pytest.fixture(scope="module")
def cifar_run(cifar_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("c10") / "run"
    assert train_cifar.main([*CIFAR, "--data", str(cifar_data), "--out", str(out)]) == 0
    return out


# ------------------------------------------------------------------------------------------------ CIFAR


def test_cifar_run_learns_and_writes_every_file(cifar_run: Path) -> None:
    assert RUN_FILES <= {p.name for p in cifar_run.iterdir()}
    assert list((cifar_run / "tb").glob("events.out.tfevents.*"))
    ckpt = load(cifar_run / "checkpoint.pt")
    history = ckpt["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3, 4, 5, 6] and ckpt["epoch"] == 6
    assert all(math.isfinite(h["train_loss"]) and math.isfinite(h["test_loss"]) for h in history)
    assert history[-1]["train_loss"] < history[0]["train_loss"] - 0.5  # 64 learnable images, 24 steps
    assert max(h["test_top1"] for h in history) > 30  # chance: 10%
    best, final = load(cifar_run / "model_best.pth"), load(cifar_run / "model_final.pth")
    assert best["top1"] == max(h["test_top1"] for h in history) == ckpt["best_top1"]
    assert best["epoch"] == ckpt["best_epoch"] and final["epoch"] == 6
    assert all(torch.equal(v, ckpt["state_dict"][k]) for k, v in final["state_dict"].items())
    log = (cifar_run / "train.log").read_text()
    assert "epoch 6/6" in log and "top-5" in log and "finished: best test top-1" in log


def test_cifar_run_writes_metrics_json(cifar_run: Path) -> None:
    """The contract of issue 16: final and best test accuracies, the network's size and cost, the genotype."""
    record = json.loads((cifar_run / "metrics.json").read_text())
    ckpt = load(cifar_run / "checkpoint.pt")
    last, best = ckpt["history"][-1], ckpt["history"][ckpt["best_epoch"] - 1]
    values = {m["name"]: m["value"] for m in record["metrics"]}
    assert values == {"top1": last["test_top1"], "top5": last["test_top5"], "top1_best": best["test_top1"],
                      "top5_best": best["test_top5"]} and values["top1_best"] == ckpt["best_top1"]
    assert all(m["dataset"] == "cifar10" and m["higher_is_better"] for m in record["metrics"])
    size = model_info("PDARTS", "cifar", channels=8, layers=5)  # the same count as tools/model_info.py
    assert {k: record[k] for k in ("params", "macs")} == size and size["macs"] > 0
    assert record["genotype"] == resolve_genotype("PDARTS").to_string()
    expected = {"tool": "train_cifar", "model": "pdarts_c10", "dataset": "cifar10", "epochs": 6, "input_size": [32, 32],
                "best_epoch": ckpt["best_epoch"], "source": "train.log"}
    assert {k: record[k] for k in expected} == expected


def test_cifar_recipe_is_the_papers(cifar_run: Path) -> None:
    """pdarts.md §8: SGD momentum 0.9 wd 3e-4, cosine to 0, drop path 0.3 ramped per epoch, aux 0.4, cutout 16."""
    config = json.loads((cifar_run / "config.json").read_text())
    expected = {"model": "pdarts_c10", "dataset": "cifar10", "sched": "cosine", "lr_min": 0.0, "momentum": 0.9,
                "weight_decay": 3e-4, "cutout": 16, "auxiliary_weight": 0.4, "drop_path": 0.3, "grad_clip": 5.0,
                "seed": 0, "warmup_epochs": 0, "label_smoothing": 0.0, "epochs": 6, "lr": 0.1}
    assert {k: config[k] for k in expected} == expected
    ckpt = load(cifar_run / "checkpoint.pt")
    for e, record in enumerate(ckpt["history"]):
        assert record["lr"] == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi * e / 6)))
        assert record["drop_path"] == pytest.approx(0.3 * e / 6)
    group = ckpt["optimizer"]["param_groups"][0]
    assert group["momentum"] == 0.9 and group["weight_decay"] == 3e-4 and not group["nesterov"]
    assert len(ckpt["optimizer"]["param_groups"]) == 1  # weight decay on every parameter, as the authors
    assert ckpt["model_args"] == {"num_classes": 10, "auxiliary": True, "drop_path_rate": 0.3, "C": 8, "layers": 5}
    assert any(k.startswith("auxiliary_head.") for k in ckpt["state_dict"])


def test_resume_continues_where_it_stopped(cifar_data: Path, cifar_run: Path, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Killed after 2 epochs, then resumed: epochs 3-6 run once, and the weights equal the uninterrupted run's."""
    out = tmp_path / "run"
    args = [*CIFAR, "--data", str(cifar_data), "--out", str(out)]
    real_epoch, calls = Trainer._run_epoch, {"n": 0}

    def two_epochs_then_die(self: Trainer, state: dict) -> dict:
        calls["n"] += 1
        if calls["n"] > 2:
            raise KeyboardInterrupt
        return real_epoch(self, state)

    monkeypatch.setattr(Trainer, "_run_epoch", two_epochs_then_die)
    assert train_cifar.main(args) == 130
    monkeypatch.undo()
    stopped = load(out / "checkpoint.pt")
    assert stopped["epoch"] == 2 and not (out / "model_final.pth").exists()
    assert train_cifar.main(args) == 2
    assert "add --resume" in capsys.readouterr().err
    assert train_cifar.main(["--resume", "--out", str(out), "--lr", "5"]) == 0
    assert "ignoring lr" in capsys.readouterr().err
    resumed, reference = load(out / "checkpoint.pt"), load(cifar_run / "checkpoint.pt")
    assert [h["epoch"] for h in resumed["history"]] == [1, 2, 3, 4, 5, 6]
    assert resumed["history"][:2] == stopped["history"]
    assert "resuming" in (out / "train.log").read_text() and "at epoch 3/6" in (out / "train.log").read_text()
    final, reference_final = load(out / "model_final.pth"), load(cifar_run / "model_final.pth")
    assert all(torch.equal(v, reference_final["state_dict"][k]) for k, v in final["state_dict"].items())
    assert [h["train_loss"] for h in resumed["history"]] == [h["train_loss"] for h in reference["history"]]


def test_killed_at_any_moment_resumes_bit_identical(cifar_data: Path, cifar_run: Path, tmp_path: Path) -> None:
    """kill -9 while epoch 2's checkpoint is half written, then, resumed after epoch 1, in the middle of epoch 4 (its
    3rd of 4 steps), then while the final weights are half written; resumed each time: the uninterrupted run's
    weights bit for bit, its files, TensorBoard scalars and log lines."""
    out = tmp_path / "killed"
    resume = ["--resume", "--out", str(out)]
    run_killed("train_cifar.py", [([*CIFAR, "--data", str(cifar_data), "--out", str(out)], "save:checkpoint.pt.tmp:2"),
                                  (resume, "call:torch.optim:SGD.step:11"),
                                  (resume, "save:model_final.pth.tmp:1"),
                                  (resume, None)], tmp_path)
    for name in ("model_final.pth", "model_best.pth", "checkpoint.pt"):
        resumed, reference = load(out / name), load(cifar_run / name)
        assert resumed["state_dict"].keys() == reference["state_dict"].keys()
        assert all(torch.equal(v, reference["state_dict"][k]) for k, v in resumed["state_dict"].items()), name
    history = load(out / "checkpoint.pt")["history"]
    assert [h["train_loss"] for h in history] == [h["train_loss"] for h in load(cifar_run / "checkpoint.pt")["history"]]
    assert_no_file_lost(out, cifar_run)
    assert_log_replays(out, cifar_run, "train.log")
    log = (out / "train.log").read_text()
    assert [line.split(" at ")[-1] for line in log.splitlines() if "resuming" in line] == \
        ["epoch 2/6", "epoch 4/6", "the end: writing the final weights"]


def test_cifar_drops_the_last_incomplete_batch(cifar_data: Path, tmp_path: Path) -> None:
    """64 images in batches of 63: one step per epoch, never a last batch of one image (BatchNorm in the auxiliary
    head cannot train on it)."""
    out = tmp_path / "run"
    assert train_cifar.main([*CIFAR, "--epochs", "1", "--batch-size", "63", "--data", str(cifar_data),
                             "--out", str(out)]) == 0
    assert load(out / "checkpoint.pt")["step"] == 1


def test_cifar100_picks_its_network(tmp_path: Path) -> None:
    data = write_cifar100(tmp_path / "data", n_train=32, n_test=16)
    out = tmp_path / "c100"
    assert train_cifar.main([*CIFAR, "--epochs", "1", "--dataset", "cifar100", "--data", str(data),
                             "--out", str(out)]) == 0
    final = load(out / "model_final.pth")
    assert final["arch"] == "pdarts_c100" and final["model_args"]["num_classes"] == 100
    assert final["state_dict"]["classifier.weight"].shape[0] == 100


def test_genotype_flag_swaps_the_cell_and_names_the_run(cifar_data: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert train_cifar.main([*CIFAR, "--epochs", "1", "--genotype", "darts_v2", "--data", str(cifar_data)]) == 0
    (out,) = (tmp_path / "runs").iterdir()
    assert re.fullmatch(r"pdarts_c10-DARTS_V2-seed0-\d{8}-\d{6}", out.name)
    final = load(out / "model_final.pth")
    assert final["model_args"]["genotype"].startswith("Genotype(normal=[('sep_conv_3x3', 0)")  # DARTS_V2's cell
    assert final["state_dict"].keys() == NetworkCIFAR("DARTS_V2", C=8, layers=5, auxiliary=True).state_dict().keys()


def test_test_split_is_only_normalised(cifar_data: Path) -> None:
    test, info = build_test_dataset("cifar10", cifar_data, download=False)
    assert len(test) == 32 and info.num_classes == 10
    x, _ = test[0]
    assert x.shape == (3, 32, 32) and torch.equal(x, test[0][0])  # no random augmentation
    with pytest.raises(DataError, match="no test split"):
        build_test_dataset("svhn", cifar_data)


@pytest.mark.parametrize("name", ["checkpoint.pt", "model_best.pth", "model_final.pth"])
def test_saved_weights_load_into_timm(cifar_run: Path, name: str) -> None:
    path = cifar_run / name
    saved = load(path)
    overlay = dict(file=str(path), num_classes=saved["model_args"]["num_classes"])
    model = timm.create_model(saved["arch"], pretrained=True, pretrained_cfg_overlay=overlay, **saved["model_args"])
    state = model.state_dict()
    assert state.keys() == saved["state_dict"].keys()
    assert all(torch.equal(state[k], v) for k, v in saved["state_dict"].items())


def test_genotype_label_names_files_by_their_search_folder(tmp_path: Path) -> None:
    search = tmp_path / "pdarts-c10-seed2"
    search.mkdir()
    write_genotype_file(search / "genotype.json", GENOTYPES["PDARTS"])
    (tmp_path / "my cell.txt").write_text(GENOTYPES["PDARTS"].to_string())
    assert genotype_label(search / "genotype.json") == "pdarts-c10-seed2"
    assert genotype_label(tmp_path / "my cell.txt") == "my_cell"
    assert genotype_label(GENOTYPES["PDARTS"].to_string()) == "custom" and genotype_label("pc_darts_image") == "PC_DARTS_image"


# --------------------------------------------------------------------------------------------- ImageNet


def test_imagenet_run_follows_the_authors_recipe(imagenet_data: Path, tmp_path: Path) -> None:
    """transfer.md §2: linear schedule with its tail, no warm-up at batch <= 256, label smoothing 0.1, top-1/5."""
    out = tmp_path / "in"
    assert train_imagenet.main([*IMAGENET, "--epochs", "7", "--data", str(imagenet_data), "--out", str(out)]) == 0
    assert RUN_FILES <= {p.name for p in out.iterdir()}
    config = json.loads((out / "config.json").read_text())
    assert config["sched"] == "linear" and config["label_smoothing"] == 0.1 and config["warmup_epochs"] == 0
    assert config["weight_decay"] == 3e-5 and config["color_jitter"] == [0.4, 0.4, 0.4, 0.2]
    history = load(out / "checkpoint.pt")["history"]
    # E=7: the main line covers 2 epochs, then the 5-epoch tail with the smaller slope
    expected = [1.0, 0.5, 5 / 10, 4 / 10, 3 / 10, 2 / 10, 1 / 10]
    assert [h["lr"] for h in history] == pytest.approx([0.1 * f for f in expected])
    for h in history:
        assert math.isfinite(h["train_loss"]) and 0 <= h["test_top1"] <= h["test_top5"] <= 100
    assert history[0]["test_top5"] == 100  # 3 classes: the top 5 hold every class


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_two_processes_write_one_checkpoint(imagenet_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={free_port()}",
           str(ROOT / "tools" / "train_imagenet.py"), *IMAGENET, "--epochs", "1", "--data", str(imagenet_data),
           "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
                          cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (done.stdout + done.stderr).count("epoch 1/1 lr") == 1  # only the first process logs
    assert sorted(p.name for p in out.glob("*.p*")) == ["checkpoint.pt", "model_best.pth", "model_final.pth"]
    ckpt = load(out / "checkpoint.pt")
    assert ckpt["epoch"] == 1 and not any(k.startswith("module.") for k in ckpt["state_dict"])
    # each process loads 4 of every batch of 8 from its half of the 24 training images: 3 steps
    assert ckpt["step"] == 3 and ckpt["history"][0]["img_per_s"] > 0


# ------------------------------------------------------------------------------------ plain timm models


@pytest.mark.parametrize("tool, model", [("cifar", "mobilenetv2_100"), ("imagenet", "resnet50")])
def test_plain_timm_models_train_as_baselines(tool: str, model: str, cifar_data: Path, imagenet_data: Path,
                                              tmp_path: Path) -> None:
    """The baselines of issue 16: a timm model by name, with only num_classes, no auxiliary head or drop path."""
    main, data, extra = ((train_cifar.main, cifar_data, ["--batch-size", "32"]) if tool == "cifar" else
                         (train_imagenet.main, imagenet_data, ["--batch-size", "8", "--input-size", "32"]))
    out = tmp_path / "run"
    assert main([*BASE, "--model", model, "--epochs", "1", *extra, "--data", str(data), "--out", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["auxiliary_weight"] == 0 and config["drop_path"] == 0 and config["genotype"] is None
    final = load(out / "model_final.pth")
    classes = 10 if tool == "cifar" else 3
    assert final["arch"] == model and final["model_args"] == {"num_classes": classes}
    reference = timm.create_model(model, num_classes=classes)
    assert {k: v.shape for k, v in final["state_dict"].items()} == {k: v.shape for k, v in reference.state_dict().items()}
    record = json.loads((out / "metrics.json").read_text())
    assert record["model"] == model and record["genotype"] is None and record["input_size"] == [32, 32]
    assert record["params"] == count_parameters(reference) and record["macs"] > 0
    assert record["dataset"] == ("cifar10" if tool == "cifar" else "imagenet")


# ----------------------------------------------------------------------------------------------- units


def test_pdarts_linear_schedule_matches_the_spec() -> None:
    """transfer.md §2, E=250, lr0 0.5: 0.5 -> 0.00204 at e=244 and 245 -> 0.00041 at e=249; warm-up (e+1)/5."""
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.5)
    sched = PDartsLinearLRScheduler(opt, 250)
    lrs = [sched._get_lr(e)[0] for e in range(250)]
    assert lrs[0] == 0.5 and lrs[100] == pytest.approx(0.5 * 145 / 245)
    assert lrs[244] == pytest.approx(0.5 / 245) == pytest.approx(lrs[245])
    assert lrs[249] == pytest.approx(0.5 / 1225) and all(a >= b for a, b in zip(lrs, lrs[1:]))
    warm = PDartsLinearLRScheduler(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.5), 250, warmup_t=5)
    assert [warm._get_lr(e)[0] for e in range(6)] == pytest.approx([lrs[e] * min(e + 1, 5) / 5 for e in range(6)])
    warm.step(3)
    assert warm.optimizer.param_groups[0]["lr"] == pytest.approx(lrs[3] * 4 / 5)


def test_timm_schedules_stay_available() -> None:
    for sched, last in (("cosine", 0.5 * (1 + math.cos(math.pi * 9 / 10))), ("poly", 1 / 10)):
        opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
        scheduler = create_lr_scheduler(opt, sched, epochs=10, warmup_epochs=0, lr_min=0.0)
        scheduler.step(9)
        assert opt.param_groups[0]["lr"] == pytest.approx(last)


def test_auxiliary_loss_is_the_authors_label_smoothed_sum() -> None:
    torch.manual_seed(0)
    logits, aux, target = torch.randn(6, 5), torch.randn(6, 5), torch.randint(0, 5, (6,))

    def authors(x: torch.Tensor) -> torch.Tensor:  # pdarts:train_imagenet.py CrossEntropyLabelSmooth, eps 0.1
        soft = torch.zeros_like(x).scatter_(1, target[:, None], 1) * 0.9 + 0.1 / 5
        return (-soft * x.log_softmax(1)).mean(0).sum()

    loss = AuxiliaryLoss(smoothing=0.1, weight=0.4)
    assert loss((logits, aux), target) == pytest.approx((authors(logits) + 0.4 * authors(aux)).item())
    assert loss(logits, target) == pytest.approx(authors(logits).item())  # eval mode: plain logits
    assert AuxiliaryLoss()(logits, target) == pytest.approx(torch.nn.functional.cross_entropy(logits, target).item())


# ------------------------------------------------------------------------------------------- bad input


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = [line for line in capsys.readouterr().err.strip().splitlines() if not line.startswith("note:")]
    err = [line for line in err if "UserWarning" not in line and "_check_integrity" not in line]
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_help_explains_flags() -> None:
    for tool, flags in ((train_cifar, ("--dataset", "--cutout", "--drop-path")),
                        (train_imagenet, ("--input-size", "--color-jitter", "--sched"))):
        text = tool.build_parser().format_help()
        for flag in (*flags, "--resume", "--genotype", "--model", "--auxiliary-weight", "--amp"):
            assert flag in text


def test_finished_run_is_never_overwritten(cifar_run: Path, cifar_data: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    before = (cifar_run / "model_final.pth").read_bytes()
    assert train_cifar.main([*CIFAR, "--data", str(cifar_data), "--out", str(cifar_run)]) == 2
    assert "finished training" in one_error_line(capsys)
    assert train_cifar.main(["--resume", "--out", str(cifar_run)]) == 2
    assert "another --out" in one_error_line(capsys)
    assert (cifar_run / "model_final.pth").read_bytes() == before


def test_missing_cifar_without_network_says_where_to_put_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise URLError("no network")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    assert train_cifar.main([*CIFAR, "--data", str(tmp_path / "data"), "--out", str(tmp_path / "o")]) == 2
    assert "cifar-10-python.tar.gz" in one_error_line(capsys)


@pytest.mark.parametrize(
    "tool, args, message",
    [
        ("cifar", ["--model", "resnet_nope"], r"unknown model 'resnet_nope' \(closest: resnet50_gn, .*; all: timm\.list_models\(\)"),
        ("cifar", ["--model", "resnet50", "--genotype", "PDARTS", "--auxiliary-weight", "0.4"],
         "--genotype, --init-channels, --layers, --auxiliary-weight only apply to the DARTS-family models"),
        ("imagenet", ["--model", "mobilenetv2_100", "--drop-path", "0.1"], "--init-channels, --layers, --drop-path only"),
        ("cifar", ["--genotype", "NO_SUCH_CELL"], "neither a published genotype"),
        ("cifar", ["--drop-path", "1"], r"--drop-path must be in \[0, 1\)"),
        ("cifar", ["--batch-size", "0"], "--batch-size must be > 0"),
        ("cifar", ["--amp"], "--amp needs a CUDA device"),
        ("cifar", ["--resume"], "--resume needs --out"),
        ("imagenet", ["--input-size", "48"], "multiple of 32"),
        ("imagenet", ["--auxiliary-weight", "0.4"], "add --auxiliary-weight 0"),
        ("imagenet", ["--data", "{tmp}/nothing"], "train/<class>/"),
        ("imagenet", ["--batch-size", "32"], "--batch-size 32 is more than the 24 training images"),
        ("cifar", ["--batch-size", "65"], "--batch-size 65 is more than the 64 training images"),
        # settings that crashed only once config.json was written, and again on --resume
        ("cifar", ["--momentum", "-1"], r"--momentum must be in \[0, 1\), got -1.0"),
        ("cifar", ["--lr-min", "-1"], "--lr-min must be finite and >= 0, got -1.0"),
        ("cifar", ["--seed", "-1"], r"--seed must be in \[0, 2\*\*32\), got -1"),
        ("cifar", ["--weight-decay", "-1"], "--weight-decay must be finite and >= 0, got -1.0"),
        # NaN and infinity passed `value <= 0` and `value < 0`: a traceback, or a run folder and a nan loss
        ("cifar", ["--lr-min", "nan"], r"^error: --lr-min must be finite and >= 0, got nan$"),
        ("cifar", ["--lr", "inf"], r"^error: --lr must be finite and > 0, got inf$"),
        ("cifar", ["--weight-decay", "nan"], r"^error: --weight-decay must be finite and >= 0, got nan$"),
        ("cifar", ["--grad-clip", "inf"], r"^error: --grad-clip must be finite and >= 0, got inf$"),
        ("cifar", ["--auxiliary-weight", "nan"], r"^error: --auxiliary-weight must be finite and >= 0, got nan$"),
        ("imagenet", ["--lr", "nan"], r"^error: --lr must be finite and > 0, got nan$"),
        ("imagenet", ["--weight-decay", "inf"], r"^error: --weight-decay must be finite and >= 0, got inf$"),
        ("cifar", ["--cutout", "-5"], r"--cutout must be >= 0 \(0 = off\), got -5"),
        ("imagenet", ["--color-jitter", "0.4", "-1", "0.4", "0.2"], r"B, C, S >= 0 and H in \[0, 0.5\], got \[0.4, -1"),
        ("imagenet", ["--color-jitter", "0.4", "0.4", "0.4", "0.6"], r"--color-jitter B C S H needs .*0.6\]"),
    ],
)
def test_bad_input_gives_one_line_and_exit_2(tool: str, args: list[str], message: str, tmp_path: Path,
                                             cifar_data: Path, imagenet_data: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    main, data = (train_cifar.main, cifar_data) if tool == "cifar" else (train_imagenet.main, imagenet_data)
    base = CIFAR if tool == "cifar" else IMAGENET
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    out = [] if "--resume" in args else ["--out", str(tmp_path / "x")]
    assert main([*base, "--data", str(data), *out, *args]) == 2
    assert re.search(message, one_error_line(capsys))
    assert not (tmp_path / "x").exists()


def test_a_run_that_cannot_start_leaves_no_run_folder(cifar_data: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """config.json is written once everything is built: a folder never holds settings that cannot start."""
    def cannot_start(*args: object) -> None:
        raise TrainError("cannot start")

    monkeypatch.setattr(train_cli, "Trainer", cannot_start)
    assert train_cifar.main([*CIFAR, "--data", str(cifar_data), "--out", str(tmp_path / "x")]) == 2
    assert one_error_line(capsys) == "error: cannot start" and not (tmp_path / "x").exists()


def test_resume_with_settings_that_cannot_work(cifar_run: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "edited"
    out.mkdir()
    config = json.loads((cifar_run / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**config, "momentum": -1.0}))
    assert train_cifar.main(["--resume", "--out", str(out)]) == 2
    assert one_error_line(capsys) == f"error: {out / 'config.json'}: --momentum must be in [0, 1), got -1.0"
    assert [p.name for p in out.iterdir()] == ["config.json"]


@pytest.mark.parametrize("tool, written_by, other", [
    ("imagenet", "train_cifar", "a train_cifar run"),
    ("imagenet", "train_cifar before runs recorded their tool", "another tool's run"),
    ("cifar", "search", "a search run"),
])
def test_run_folder_of_another_tool_is_refused(tool: str, written_by: str, other: str, cifar_run: Path,
                                               tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Neither resumed (the other tool's settings do not fit) nor offered to be resumed."""
    config = json.loads((cifar_run / "config.json").read_text())
    assert config["tool"] == "train_cifar"
    if written_by != "train_cifar":
        del config["tool"]
        # its own older runs, which may lack newer settings, still resume
        assert foreign_run({k: v for k, v in config.items() if k != "compile"}, "train_cifar",
                           vars(train_cifar.build_parser().parse_args([]))) is None
    if written_by == "search":
        config = dataclasses.asdict(SearchConfig())
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text(written := json.dumps(config))
    main, name = (train_cifar.main, "train_cifar") if tool == "cifar" else (train_imagenet.main, "train_imagenet")
    for resume in (["--resume"], []):
        assert main([*BASE, *resume, "--out", str(out)]) == 2
        assert one_error_line(capsys) == f"error: {out} holds {other}, not a {name} one; choose another --out"
    assert [p.name for p in out.iterdir()] == ["config.json"]
    assert (out / "config.json").read_text() == written


def test_resume_of_nothing_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert train_imagenet.main(["--resume", "--out", str(tmp_path / "none")]) == 2
    assert "nothing to resume" in one_error_line(capsys)
