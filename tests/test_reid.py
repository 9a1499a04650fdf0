"""torchreid models, checkpoints, the baselines' converted timm weights and tools/train_reid.py (metrics.json, run
folders) on tiny generated Market-1501 / DukeMTMC-reID / MSMT17."""
from __future__ import annotations

import collections
import io
import json
import os
import pickle
import re
import subprocess
import sys
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
import torchreid
from datagen import write_dukemtmcreid, write_market1501, write_msmt17
from kill_at import run_killed
from torchreid.reid.utils import load_checkpoint

import backbones  # noqa: F401  (timm models)
from backbones.complexity import count_macs
from backbones.timm_convert import ConversionError
from backbones.torchreid_pdarts import (
    MODEL_NAMES, PRETRAINED_ENV, PDARTSReID, ReIDModelError, build_baseline, build_pdarts_reid,
)
from pdarts_wild.checkpoints import CheckpointError
from pdarts_wild.networks import NetworkImageNet, count_parameters
from pdarts_wild.zoo import resolve_genotype

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import train_reid  # noqa: E402  (tools/train_reid.py)

CONFIGS = Path(__file__).resolve().parents[1] / "reid_configs"
TOOL = Path(__file__).resolve().parents[1] / "tools" / "train_reid.py"
TINY = dict(init_channels=8, layers=5)
RUN_OPTS = [
    "data.height", "64", "data.width", "32", "train.batch_size", "8", "train.max_epoch", "1", "test.ranks", "[1, 5]",
    "data.workers", "0", "train.print_freq", "1",
]
TINY_OPTS = ["model.pretrained", "False", "model.init_channels", "8", "model.layers", "5", *RUN_OPTS]


@pytest.fixture(scope="module")
def reid_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("reid-data")
    write_market1501(root)
    write_dukemtmcreid(root)
    write_msmt17(root)
    return root


def run_tool(*argv: str) -> tuple[int, str]:
    """tools/train_reid.py's exit code and what it printed."""
    out = io.StringIO()
    with redirect_stdout(out):
        code = train_reid.main(list(argv))
    return code, out.getvalue()


def metrics(output: str) -> tuple[float, float]:
    """The last rank-1 and mAP (fractions) torchreid printed."""
    rank1 = re.findall(r"Rank-1\s*: ([\d.]+)%", output)
    mean_ap = re.findall(r"mAP: ([\d.]+)%", output)
    assert rank1 and mean_ap, output[-2000:]
    return float(rank1[-1]) / 100, float(mean_ap[-1]) / 100


def contents(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative path -> bytes), to check that a refused run touched nothing."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def recorded(save_dir: Path) -> tuple[dict, dict[tuple[str, str], float]]:
    """metrics.json of a run and its values by (data set, name)."""
    record = json.loads((save_dir / "metrics.json").read_text())
    return record, {(m["dataset"], m["name"]): m["value"] for m in record["metrics"]}


# ------------------------------------------------------------------------------------------ models


def test_models_are_registered_with_torchreid(capsys: pytest.CaptureFixture) -> None:
    torchreid.models.show_avai_models()
    listed = capsys.readouterr().out
    for name in ("pdarts_reid", "darts_v2_reid", "pc_darts_image_reid"):
        assert name in MODEL_NAMES and f"'{name}'" in listed
    model = torchreid.models.build_model("darts_v2_reid", num_classes=7, loss="softmax", pretrained=False)
    reference = NetworkImageNet("DARTS_V2", num_classes=0)
    assert {k: v.shape for k, v in model.backbone.state_dict().items()} == {
        k: v.shape for k, v in reference.state_dict().items()
    }
    assert model.classifier.out_features == 7 and model.feature_dim == 768


def test_genotype_kwarg_picks_the_cell() -> None:
    ours = build_pdarts_reid(3, pretrained=False, genotype="DARTS_V1", **TINY)
    reference = NetworkImageNet("DARTS_V1", C=8, layers=5, num_classes=0)
    assert list(ours.backbone.state_dict()) == list(reference.state_dict())
    assert [type(op) for op in ours.backbone.cells[0].ops] == [type(op) for op in reference.cells[0].ops]


@pytest.mark.parametrize("loss", ["softmax", "triplet"])
def test_model_contract(loss: str) -> None:
    model = PDARTSReID(5, loss=loss, **TINY)
    x = torch.randn(4, 3, 64, 32)
    out = model.train()(x)
    if loss == "triplet":
        logits, features = out
        assert features.shape == (4, model.feature_dim)
    else:
        logits = out
    assert logits.shape == (4, 5)
    assert model.eval()(x).shape == (4, model.feature_dim) == (4, 128)


def test_head_options() -> None:
    model = PDARTSReID(5, global_pool="max", feature_dim=64, bnneck=False, **TINY).eval()
    x = torch.randn(2, 3, 64, 32)
    assert model.feature_dim == 64 and model(x).shape == (2, 64)
    assert isinstance(model.global_pool, torch.nn.AdaptiveMaxPool2d) and model.classifier.bias is not None
    with pytest.raises(ReIDModelError, match="global_pool"):
        PDARTSReID(5, global_pool="gem", **TINY)
    with pytest.raises(ReIDModelError, match="last_stride"):
        PDARTSReID(5, last_stride=4, **TINY)


def test_last_stride_one_doubles_the_feature_map_with_the_same_weights() -> None:
    x = torch.randn(2, 3, 128, 64)
    strided, dense = PDARTSReID(5, last_stride=2, **TINY).eval(), PDARTSReID(5, last_stride=1, **TINY).eval()
    dense.load_state_dict(strided.state_dict())  # same keys and shapes
    assert strided.backbone.forward_features(x).shape[-2:] == (4, 2) and strided.feature_stride == 32
    assert dense.backbone.forward_features(x).shape[-2:] == (8, 4) and dense.feature_stride == 16
    assert dense(x).shape == strided(x).shape == (2, 128)
    # The cells before the last reduction cell are untouched: the same map at stride 16.
    before = strided.backbone.reduction_cells[-1] - 1
    torch.testing.assert_close(*(m.backbone.cell_outputs(x, [before])[0] for m in (strided, dense)))


def test_imagenet_weights_load_into_the_trunk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    imagenet = timm.create_model("pdarts_imagenet", C=8, layers=5, auxiliary=True)
    # The authors' layout: DataParallel's module. prefix and _ops.
    authors = {"module." + k.replace(".ops.", "._ops."): v for k, v in imagenet.state_dict().items()}
    path = tmp_path / "in1k.pth"
    torch.save({"state_dict": authors, "epoch": 250}, path)
    monkeypatch.setenv(PRETRAINED_ENV, str(path))
    for model in (build_pdarts_reid(4, pretrained=True, pretrained_path=path, **TINY),
                  build_pdarts_reid(4, pretrained=True, **TINY)):  # the path from the environment
        trunk = model.backbone.state_dict()
        for key, value in imagenet.state_dict().items():
            if not key.startswith(("classifier.", "auxiliary_head.")):
                torch.testing.assert_close(trunk[key], value)
    monkeypatch.delenv(PRETRAINED_ENV)
    with pytest.raises(ReIDModelError, match="pretrained_path"):
        torchreid.models.build_model("pdarts_reid", num_classes=4)  # torchreid's default pretrained=True
    with pytest.raises(CheckpointError, match="does not match"):
        build_pdarts_reid(4, pretrained=True, pretrained_path=path, genotype="DARTS_V2", **TINY)


# ------------------------------------------------------------------------------------------ baselines


@pytest.mark.parametrize("name, arch", [("resnet50", "resnet50"), ("mobilenetv2_x1_0", "mobilenetv2_100")])
def test_baselines_load_timm_imagenet_weights(name: str, arch: str, timm_checkpoints: dict[str, Path]) -> None:
    """The converted weights compute timm's pooled features exactly (mobilenetv2's extra first 1x1 conv: identity)."""
    model = build_baseline(name, 4, pretrained=True, pretrained_path=timm_checkpoints[arch]).eval()
    imagenet = timm.create_model(arch, num_classes=3)
    imagenet.load_state_dict(torch.load(timm_checkpoints[arch], weights_only=True)["state_dict"])
    x = torch.randn(2, 3, 64, 32)
    torch.testing.assert_close(model(x), imagenet.eval().forward_head(imagenet.forward_features(x), pre_logits=True))
    other = "mobilenetv2_100" if arch == "resnet50" else "resnet50"
    with pytest.raises(ConversionError, match="does not fit"):
        build_baseline(name, 4, pretrained=True, pretrained_path=timm_checkpoints[other])
    with pytest.raises(ReIDModelError, match=f"timm {arch} ImageNet checkpoint"):
        build_baseline(name, 4, pretrained=True)  # never torchreid's download


def test_baseline_trains_with_the_tool(reid_root: Path, tmp_path: Path, timm_checkpoints: dict[str, Path]) -> None:
    save = tmp_path / "run"
    code, output = run_tool("--config", str(CONFIGS / "market1501_softmax.yaml"), "--root", str(reid_root),
                            *RUN_OPTS, "model.name", "mobilenetv2_x1_0",
                            "model.pretrained_path", str(timm_checkpoints["mobilenetv2_100"]), "data.save_dir", str(save))
    assert code == 0, output[-2000:]
    record, values = recorded(save)
    assert record["model"] == "mobilenetv2_x1_0" and record["genotype"] is None
    assert set(values) == {("market1501", name) for name in ("rank1", "rank5", "mAP")}
    assert record["params"] == count_parameters(torchreid.models.build_model("mobilenetv2_x1_0", 6, pretrained=False))


# ------------------------------------------------------------------------------------------ checkpoints


def test_torchreid_checkpoints_load_under_weights_only(tmp_path: Path) -> None:
    model = PDARTSReID(3, **TINY)
    optimizer = torch.optim.Adam(model.parameters())
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[40, 70])
    path = tmp_path / "model.pth.tar-1"
    torch.save({"state_dict": model.state_dict(), "epoch": 1, "rank1": np.float32(0.5), "optimizer":
                optimizer.state_dict(), "scheduler": scheduler.state_dict()}, path)
    checkpoint = load_checkpoint(str(path))  # torchreid's loader: torch.load's default weights_only=True
    assert checkpoint["rank1"] == np.float32(0.5) and checkpoint["scheduler"]["milestones"] == collections.Counter([40, 70])
    torch.save({"state_dict": model.state_dict(), "note": Path("x")}, path)  # an unrelated class stays refused
    with pytest.raises(pickle.UnpicklingError, match="PosixPath"):
        load_checkpoint(str(path))


# ------------------------------------------------------------------------------------------ data


@pytest.mark.parametrize("name,ids,train_images", [("market1501", 6, 36), ("dukemtmcreid", 6, 36), ("msmt17", 6, 36)])
def test_datasets_load_in_torchreid_layout(reid_root: Path, name: str, ids: int, train_images: int) -> None:
    cfg = train_reid.load_config(CONFIGS / f"{name}_softmax.yaml", ["data.root", str(reid_root), "data.workers", "0"])
    with redirect_stdout(io.StringIO()):
        dm = train_reid.build_datamanager(cfg)
    assert dm.num_train_pids == ids and len(dm.train_loader.dataset) == train_images
    q, g = dm.fetch_test_loaders(name)  # (path, pid, camid, dsetid) records
    assert len(q) == 4 and len(g) == 16
    assert all(any(gp == qp and gc != qc for _, gp, gc, *_ in g) for _, qp, qc, *_ in q)


# ------------------------------------------------------------------------------------------ tool


def test_train_then_test_only_on_market1501(reid_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture) -> None:
    """Default run folders name the genotype; metrics.json holds torchreid's own numbers; a folder holding a run is
    refused; --test-only writes its own run folder and metrics.json."""
    monkeypatch.chdir(tmp_path)
    config = ["--config", str(CONFIGS / "market1501_softmax.yaml"), "--root", str(reid_root)]
    tiny = [*TINY_OPTS, "model.genotype", "darts_v2"]
    code, output = run_tool(*config, *tiny)
    assert code == 0, output[-2000:]
    (save,) = (tmp_path / "log").iterdir()
    assert re.fullmatch(r"pdarts_reid-DARTS_V2-market1501-softmax-\d{8}-\d{6}", save.name)
    rank1, mean_ap = metrics(output)
    assert 0.5 <= rank1 <= 1 and 0.5 <= mean_ap <= 1  # colour-coded identities: easy after one epoch
    checkpoint = save / "model" / "model.pth.tar-1"
    assert checkpoint.is_file() and list(save.glob("events.out.tfevents.*"))
    (log,) = save.glob("train.log-*")
    assert "Rank-1" in log.read_text() and "Building train transforms" in log.read_text()  # the set-up is logged too
    saved = load_checkpoint(str(checkpoint))
    assert saved["epoch"] == 1 and saved["rank1"] == pytest.approx(rank1, abs=1e-3)

    record, values = recorded(save)
    assert values[("market1501", "rank1")] == pytest.approx(100 * rank1, abs=0.05)  # printed to 0.1%
    assert values[("market1501", "mAP")] == pytest.approx(100 * mean_ap, abs=0.05)
    assert rank1 <= values[("market1501", "rank5")] / 100 <= 1
    model = build_pdarts_reid(6, pretrained=False, genotype="DARTS_V2", **TINY)
    expected = {"tool": "train_reid", "model": "pdarts_reid", "genotype": resolve_genotype("DARTS_V2").to_string(),
                "dataset": "market1501", "epochs": 1, "input_size": [64, 32], "params": count_parameters(model),
                "macs": count_macs(model, (64, 32)), "source": log.name}
    assert {k: record[k] for k in expected} == expected

    before = sorted(p.name for p in save.rglob("*"))
    assert run_tool(*config, *tiny, "data.save_dir", str(save))[0] == 2
    assert "holds another run (config.yaml)" in capsys.readouterr().err
    assert sorted(p.name for p in save.rglob("*")) == before

    assert tiny[:2] == ["model.pretrained", "False"]  # tested without: the config's pretrained True needs no path
    code, output = run_tool(*config, "--test-only", *tiny[2:], "model.load_weights", str(checkpoint))
    assert code == 0, output[-2000:]
    assert "Successfully loaded pretrained weights" in output and "=> Start training" not in output
    assert metrics(output) == pytest.approx((rank1, mean_ap), abs=1e-3)
    (tested,) = (tmp_path / "log").glob("*-test-*")
    assert re.fullmatch(r"pdarts_reid-DARTS_V2-test-market1501-\d{8}-\d{6}", tested.name)
    test_record, test_values = recorded(tested)
    assert test_values == values and test_record["epochs"] == 1 and test_record["source"].startswith("test.log-")


def test_triplet_on_msmt17_resumes_and_tests_on_dukemtmcreid(reid_root: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture) -> None:
    save = tmp_path / "run"
    base = ["--config", str(CONFIGS / "msmt17_triplet.yaml"), "--root", str(reid_root), *TINY_OPTS,
            "data.save_dir", str(save)]
    code, output = run_tool(*base)
    assert code == 0, output[-2000:]
    assert "loss_t" in output and "loss_x" in output  # softmax + triplet
    metrics(output)
    code, output = run_tool(*base, "train.max_epoch", "2", "model.resume", str(save / "model" / "model.pth.tar-1"),
                            "data.targets", "['dukemtmcreid']")
    assert code == 0, output[-2000:]
    assert "Last epoch = 1" in output and "Evaluating dukemtmcreid (target)" in output
    assert load_checkpoint(str(save / "model" / "model.pth.tar-2"))["epoch"] == 2
    rank1, _ = metrics(output)
    record, values = recorded(save)  # the resumed run's: its targets, all its epochs
    assert set(values) == {("dukemtmcreid", name) for name in ("rank1", "rank5", "mAP")} and record["epochs"] == 2
    assert values[("dukemtmcreid", "rank1")] == pytest.approx(100 * rank1, abs=0.05) and record["dataset"] == "msmt17"
    # A finished run: torchreid would test it again and save epoch 2's weights as model.pth.tar-1.
    before = contents(save)
    code, _ = run_tool(*base, "train.max_epoch", "2", "model.resume", str(save / "model" / "model.pth.tar-2"))
    assert code == 2 and "model.pth.tar-2 is already finished (epoch 2 of 2)" in capsys.readouterr().err
    assert contents(save) == before
    code, _ = run_tool(*base, "train.max_epoch", "3", "model.resume", str(save / "model" / "model.pth.tar-2"),
                       "model.genotype", "DARTS_V1")
    assert code == 2 and "holds a run of another model or genotype" in capsys.readouterr().err
    # An older checkpoint: torchreid would train epoch 2 again and save it over model.pth.tar-2.
    code, _ = run_tool(*base, "train.max_epoch", "3", "model.resume", str(save / "model" / "model.pth.tar-1"))
    assert code == 2 and contents(save) == before
    assert capsys.readouterr().err.strip() == ("error: model.resume would overwrite later checkpoints: set a new "
                                               f"data.save_dir, or resume from {save / 'model' / 'model.pth.tar-2'}")


def test_a_kill_while_saving_leaves_no_torn_checkpoint(reid_root: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    """Killed while torchreid writes epoch 2's checkpoint: epoch 1's is whole and no model.pth.tar-2 exists, only its
    torn temporary file, which model.resume refuses in one line; the run resumes from epoch 1."""
    save = tmp_path / "run"
    base = ["--config", str(CONFIGS / "market1501_softmax.yaml"), "--root", str(reid_root), *TINY_OPTS,
            "data.save_dir", str(save), "train.max_epoch", "2", "test.eval_freq", "1"]
    run_killed("train_reid.py", [(base, "save:model.pth.tar-2.tmp:1")], cwd=tmp_path)
    first, torn = save / "model" / "model.pth.tar-1", save / "model" / "model.pth.tar-2.tmp"
    assert sorted(p.name for p in (save / "model").iterdir()) == [first.name, torn.name]
    assert load_checkpoint(str(first))["epoch"] == 1
    assert run_tool(*base, "model.resume", str(torn))[0] == 2
    err = capsys.readouterr().err.strip()  # then torch's reason, which its versions word differently
    assert err.startswith(f"error: {torn} is truncated, corrupt or no PyTorch torchreid checkpoint (")
    assert "\n" not in err
    code, output = run_tool(*base, "model.resume", str(first))
    assert code == 0, output[-2000:]
    assert sorted(p.name for p in (save / "model").iterdir()) == [first.name, "model.pth.tar-2"]
    assert load_checkpoint(str(save / "model" / "model.pth.tar-2"))["epoch"] == 2


@pytest.mark.parametrize("flags,opts,message", [
    (["--config", "reid_configs/nope.yaml"], [], "config file"),
    (["--root", "{empty}"], [], "dataset 'market1501' not found"),
    ([], ["train.no_such_key", "1"], "unknown config key 'train.no_such_key'"),
    (["--test-only"], [], "model.load_weights"),
    ([], ["model.genotype", "NOT_A_CELL"], "NOT_A_CELL"),
    ([], ["model.name", "resnet5O"], "unknown model.name 'resnet5O' (closest: resnet50"),
    ([], ["model.name", "resnet50"], "model.init_channels, model.layers only apply to the DARTS models"),
    ([], ["train.max_epochs", "2"], "unknown config key 'train.max_epochs' (closest: train.max_epoch,"),
    # settings torchreid would trip over only after training, when nothing is saved yet
    ([], ["test.dist_metric", "cosin"], "unknown test.dist_metric 'cosin' (closest: cosine; all: euclidean, cosine)"),
    ([], ["train.optim", "adamm"], "unknown train.optim 'adamm' (closest: adam, radam; all: adam, amsgrad, sgd,"),
    ([], ["train.lr_scheduler", "cosin"], "unknown train.lr_scheduler 'cosin' (closest: cosine; all: single_step"),
    ([], ["sampler.train_sampler", "RandomIdentitySamper"], "unknown sampler.train_sampler 'RandomIdentitySamper' "
                                                           "(closest: RandomIdentitySampler"),
    ([], ["data.transforms", "['random_flp']"], "unknown data.transforms 'random_flp' (closest: random_flip"),
    ([], ["data.targets", "[]"], "data.targets must be a non-empty list of dataset names, got []"),
    ([], ["data.sources", "[1]"], "data.sources must be a non-empty list of dataset names, got [1]"),
    ([], ["test.visrank", "True"], "test.visrank True only works with --test-only"),
    ([], ["data.height", "100"], "data.height and data.width must be multiples of 32 for the DARTS models, got 100x32"),
    ([], ["data.height", "-64"], "data.height must be >= 1, got -64"),
    ([], ["train.batch_size", "0"], "train.batch_size must be >= 1, got 0"),
    ([], ["train.max_epoch", "0"], "train.max_epoch must be >= 1, got 0"),
    # torchreid would print cmc[-1] as rank 0, or crash on a rank past its CMC after training, the checkpoint unsaved
    *(([], ["test.ranks", ranks], f"test.ranks must be increasing whole numbers from 1 to 50 (torchreid's CMC stops "
                                  f"there), got {ranks}")
      for ranks in ("[0, 1]", "[1, -5]", "[5, 1]", "[1, 1]", "[1, 51]")),
    ([], ["test.ranks", "[1, 20]"], "test.ranks go up to 20, but the market1501 gallery holds 16 images (its CMC stops "
                                    "at rank 16): lower test.ranks"),
])
def test_user_errors(reid_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture, flags: list[str],
                     opts: list[str], message: str) -> None:
    options = {"--config": str(CONFIGS / "market1501_softmax.yaml"), "--root": str(reid_root)}
    switches = [f for f in flags if f == "--test-only"]
    options.update(zip(flags[::2], flags[1::2])) if not switches else None
    argv = [*(x for kv in options.items() for x in kv), *switches, *TINY_OPTS, "data.save_dir", str(tmp_path / "run"), *opts]
    argv = [a.replace("{empty}", str(tmp_path)) for a in argv]
    assert train_reid.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and message in err[-1]
    assert not (tmp_path / "run").exists()
    if "not found" in message:
        assert "Market-1501-v15.09.15/{bounding_box_train" in err[-1] and not (tmp_path / "market1501").exists()


def test_save_dir_with_other_files_is_refused(reid_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A folder with files but no ReID run (another tool's run folder, say) is never written into."""
    save = tmp_path / "cifar-run"
    save.mkdir()
    (save / "metrics.json").write_text('{"tool": "train_cifar"}')
    before = contents(save)
    code, _ = run_tool("--config", str(CONFIGS / "market1501_softmax.yaml"), "--root", str(reid_root), *TINY_OPTS,
                       "data.save_dir", str(save))
    assert code == 2 and contents(save) == before
    assert capsys.readouterr().err.strip() == (f"error: data.save_dir {save} is not empty and holds no ReID run "
                                               "(config.yaml): choose another one (or leave it empty)")


def test_tool_runs_as_a_script(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(TOOL), "--config", str(tmp_path / "none.yaml")], capture_output=True,
                          text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=120)
    assert done.returncode == 2 and done.stderr.strip().splitlines()[-1].startswith("error: config file")
