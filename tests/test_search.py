"""End-to-end searches through tools/search.py on tiny data: results, resume, DDP and bad input."""
from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Callable
from urllib.error import URLError

import pytest
import torch

from kill_at import assert_log_replays, assert_no_file_lost, run_killed
from pdarts_wild.genotype import read_genotype_file
from pdarts_wild.search import Search
from tolerance import sum_tolerance

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import search as search_tool  # noqa: E402  (tools/search.py)

TINY = ["--dataset", "digits", "--preset", "tiny", "--device", "cpu", "--no-progress"]


def run_tool(*args: str) -> int:
    return search_tool.main([*TINY, *args])


def load_result(out: Path) -> dict:
    return json.loads((out / "genotype.json").read_text())


@pytest.fixture(scope="module")
def pdarts_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pdarts") / "run"
    assert run_tool("--out", str(out)) == 0
    return out


def test_pdarts_run_folder_holds_everything(pdarts_run: Path) -> None:
    names = {p.name for p in pdarts_run.iterdir()}
    assert {"genotype.json", "genotype.txt", "config.json", "search.log", "checkpoint.pt", "tb",
            "cell_normal.png", "cell_normal.svg", "cell_reduce.png", "cell_reduce.svg", "alphas.png"} <= names
    assert list((pdarts_run / "tb").glob("events.out.tfevents.*"))
    genotype, record = read_genotype_file(pdarts_run / "genotype.json")
    assert record["algorithm"] == "pdarts" and record["dataset"] == "digits" and record["seed"] == 2
    assert record["space"] == "darts" and record["version"] == 1
    assert genotype.to_string() == (pdarts_run / "genotype.txt").read_text().strip() == record["genotype"]
    log = (pdarts_run / "search.log").read_text()
    assert "stage 3 epoch 2/2" in log and "genotype:" in log


def test_pdarts_stages_prune_ops_and_limit_skips(pdarts_run: Path) -> None:
    record = load_result(pdarts_run)
    assert len(record["stage_genotypes"]) == 3
    # the stored alphas are stage 3's: every edge holds the 3 ops that survived 8 -> 5 -> 3
    for cell in ("normal", "reduce"):
        assert len(record["alphas"][cell]) == 14
        assert all(len(edge) == 3 for edge in record["alphas"][cell])
        for edge in record["alphas"][cell]:
            assert sum(edge.values()) == pytest.approx(1.0, abs=sum_tolerance(2 * len(edge)))  # softmax, sum
    skips = sum(op == "skip_connect" for op, _ in record["normal"])
    assert skips <= 2 and record["skip_limit"] == 2
    # each chosen op is one its edge still held in stage 3
    genotype, _ = read_genotype_file(pdarts_run / "genotype.json")
    edge_of = {(node, j): e for e, (node, j) in enumerate((n, j) for n in range(4) for j in range(n + 2))}
    for k, (op, j) in enumerate(genotype.reduce):
        assert op in record["alphas"]["reduce"][edge_of[(k // 2, j)]]


def test_pdarts_history_has_a_finite_record_per_epoch(pdarts_run: Path) -> None:
    """Two epochs in each of the three stages, each with finite losses. (Whether the weights learn is
    test_supernet's fixed-batch test: each stage starts from fresh weights, and two epochs of 64 digits
    are too few for the loss to fall by more than its noise.)"""
    state = torch.load(pdarts_run / "checkpoint.pt", weights_only=True)
    history = state["history"]
    assert [(h["stage"], h["epoch"]) for h in history] == [(s, e) for s in (1, 2, 3) for e in (1, 2)]
    assert all(math.isfinite(h["train_loss"]) and math.isfinite(h["valid_loss"]) for h in history)
    # the alphas train from each stage's second epoch (arch_frozen_epochs=1): their loss is logged from then on
    assert [h["arch_loss"] is None for h in history] == [True, False] * 3
    assert all(math.isfinite(h["arch_loss"]) for h in history[1::2])


def test_darts_run_writes_valid_genotype(tmp_path: Path) -> None:
    out = tmp_path / "darts"
    assert run_tool("--algorithm", "darts", "--out", str(out)) == 0
    genotype, record = read_genotype_file(out / "genotype.json")
    assert record["algorithm"] == "darts" and len(record["stage_genotypes"]) == 1
    assert all(len(edge) == 8 for edge in record["alphas"]["normal"])
    assert len(genotype.normal) == 8 and genotype.normal_concat == (2, 3, 4, 5)


def test_second_order_search_runs(tmp_path: Path) -> None:
    out = tmp_path / "unrolled"
    assert run_tool("--algorithm", "darts", "--unrolled", "--epochs", "1", "--out", str(out)) == 0
    assert json.loads((out / "config.json").read_text())["unrolled"] is True


# ------------------------------------------------------------------------------------------- resume


def test_resume_after_ctrl_c_is_bit_identical(tmp_path: Path, pdarts_run: Path, monkeypatch: pytest.MonkeyPatch,
                                              interrupt_search: Callable[[int], None]) -> None:
    """Ctrl-C at the stage 1/2 boundary (exit 130), then --resume in the same process: the uninterrupted result.
    Kills at other moments: the next test."""
    out = tmp_path / "run"
    interrupt_search(2)
    assert run_tool("--out", str(out)) == 130
    assert not (out / "genotype.json").exists()
    monkeypatch.undo()
    written = (out / "config.json").stat().st_mtime_ns
    assert run_tool("--out", str(out), "--resume") == 0
    assert (out / "config.json").stat().st_mtime_ns == written  # read, never rewritten (a kill then would lose it)
    resumed, reference = load_result(out), load_result(pdarts_run)
    assert resumed["genotype"] == reference["genotype"]
    assert resumed["alphas"] == reference["alphas"]  # bit for bit: floats compared exactly


def test_killed_at_any_moment_resumes_bit_identical(tmp_path: Path, pdarts_run: Path) -> None:
    """kill -9 while stage 2's first checkpoint is half written; resumed at the stage 1/2 boundary, again in the first
    step of stage 3's second epoch; resumed mid-stage 3, again while the results are written; resumed after the
    last epoch: the uninterrupted run's genotype, alphas, files, TensorBoard scalars and log lines."""
    out = tmp_path / "killed"
    args = [*TINY, "--out", str(out)]
    resume = [*args, "--resume"]
    run_killed("search.py", [(args, "save:checkpoint.pt.tmp:3"),
                             # from the stage 1/2 boundary: stage 2 takes weight steps 1-4, stage 3 steps 5-6 and 7-8
                             (resume, "call:torch.optim:SGD.step:7"),
                             (resume, "call:pdarts_wild.viz:plot_alphas:1"),
                             (resume, None)], tmp_path)
    resumed, reference = load_result(out), load_result(pdarts_run)
    assert resumed["genotype"] == reference["genotype"]
    assert resumed["alphas"] == reference["alphas"]  # bit for bit: floats compared exactly
    assert resumed["stage_genotypes"] == reference["stage_genotypes"]
    assert_no_file_lost(out, pdarts_run)
    assert_log_replays(out, pdarts_run, "search.log")
    log = (out / "search.log").read_text()
    assert [line.split(" at ")[-1] for line in log.splitlines() if "resuming" in line] == \
        ["stage 2 epoch 1", "stage 3 epoch 2", "the end: writing the results"]


# --------------------------------------------------------------------------------------------- DDP


def test_torchrun_two_processes_write_one_genotype(tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29517",
           str(ROOT / "tools" / "search.py"), *TINY, "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    genotype, record = read_genotype_file(out / "genotype.json")
    assert done.stdout.strip().splitlines()[-1] == genotype.to_string()  # printed once, by rank 0
    assert done.stdout.count("Genotype(") == 1
    assert len(record["alphas"]["normal"]) == 14
    # each process trained on its own half of every batch list: the logged sample count covers both shards
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["history"][0]["img_per_s"] > 0


# ----------------------------------------------------------------------------------------- bad input


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(ROOT / "tools" / "search.py"), *args], capture_output=True,
                          text=True, cwd=cwd)


def test_help_explains_flags(tmp_path: Path) -> None:
    done = cli("--help", cwd=tmp_path)
    assert done.returncode == 0
    for flag in ("--algorithm", "--preset", "--resume", "--skip-dropout", "--unrolled", "--keep-ops", "--data"):
        assert flag in done.stdout


def test_finished_run_is_never_overwritten(pdarts_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = (pdarts_run / "genotype.json").read_bytes()
    assert run_tool("--out", str(pdarts_run)) == 2
    assert run_tool("--out", str(pdarts_run), "--resume") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and "finished search" in err[-1] and "another --out" in err[-1]
    assert (pdarts_run / "genotype.json").read_bytes() == before


@pytest.mark.parametrize(
    "args, message",
    [
        (["--resume", "--out", ""], "nothing to resume"),
        (["--layers", "5", "11"], r"^error: --layers 5 11 makes 2 stages, but --skip-dropout has 3 values \(0.0 0.4 0.7\): "
                                  "give it 1 or 2$"),
        (["--algorithm", "darts", "--skip-dropout", "0.5", "--skip-limit", "0", "--add-op-epochs", "3"],
         r"^error: --algorithm darts does not use --skip-dropout, --skip-limit, --add-op-epochs \(settings of opp-darts "
         r"and pdarts\): drop them$"),
        (["--channels", "7"], "--channels must be even"),
        (["--epochs", "2", "--arch-frozen-epochs", "2"], "leaves no epoch"),
        (["--skip-dropout", "1.5"], r"\[0, 1\)"),
        # settings torch refused only once config.json was written (and again on --resume), or took silently
        (["--lr", "-1"], r"^error: --lr must be finite and > 0, got -1.0$"),
        (["--lr", "nan"], r"^error: --lr must be finite and > 0, got nan$"),
        (["--arch-lr", "-1"], r"^error: --arch-lr must be finite and > 0, got -1.0$"),
        (["--grad-clip", "0"], r"^error: --grad-clip must be finite and > 0, got 0.0$"),
        (["--lr-min", "-1"], r"^error: --lr-min must be finite and >= 0, got -1.0$"),
        (["--weight-decay", "-1"], r"^error: --weight-decay must be finite and >= 0, got -1.0$"),
        (["--arch-weight-decay", "inf"], r"^error: --arch-weight-decay must be finite and >= 0, got inf$"),
        (["--momentum", "-1"], r"^error: --momentum must be in \[0, 1\), got -1.0$"),
        (["--nesterov", "--momentum", "0"], r"^error: --nesterov needs --momentum > 0 "),
        (["--arch-betas", "2", "2"], r"^error: --arch-betas must both be in \[0, 1\), got 2.0 2.0$"),
        (["--workers", "-1"], r"^error: --workers must be >= 0, got -1$"),
        (["--cutout", "-3"], r"^error: --cutout must be >= 0, got -3$"),
        (["--skip-limit", "-3"], r"^error: --skip-limit must be >= 0, got -3$"),
        (["--seed", "100000000000000000000000"], r"^error: --seed must be in \[0, 2\*\*32\), got 10{23}$"),
    ],
)
def test_bad_settings_give_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str],
                                               message: str) -> None:
    assert run_tool("--out", str(tmp_path / "x"), *args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")
    assert re.search(message, err[0])
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("algorithm", ["pdarts", "darts"])
def test_a_diverging_search_stops_with_one_line_and_no_result(algorithm: str, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """--lr 1e30 makes every loss NaN in the first epoch. P-DARTS used to finish with a genotype of '' ops, DARTS to
    crash deriving (and again on every --resume): now the epoch is not checkpointed and nothing is derived."""
    out = tmp_path / "run"
    for resume in ([], ["--resume"]):
        assert run_tool("--algorithm", algorithm, "--lr", "1e30", "--out", str(out), *resume) == 2
        err = capsys.readouterr().err
        line = err.strip().splitlines()[-1]
        assert "Traceback" not in err and len(line) <= 200
        assert line.startswith("error: stage 1 epoch 1: the search diverged (train loss nan, ")
        assert line.endswith("search again with a lower --lr (was 1e+30) or --arch-lr (was "
                             f"{'0.0006' if algorithm == 'pdarts' else '0.0003'})")
        assert sorted(p.name for p in out.iterdir()) == ["config.json", "search.log", "tb"]


def test_resume_needs_out(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_tool("--resume") == 2
    assert "--resume needs --out" in capsys.readouterr().err


def test_unfinished_run_needs_resume(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    monkeypatch.setattr(Search, "_run_epoch", lambda self, *a: (_ for _ in ()).throw(KeyboardInterrupt))
    assert run_tool("--out", str(out)) == 130
    assert run_tool("--out", str(out)) == 2
    assert "add --resume" in capsys.readouterr().err


def test_resume_names_every_setting_it_ignores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """The saved settings win; --algorithm, --dataset, --preset, --space and --data were dropped without a word."""
    out = tmp_path / "run"
    monkeypatch.setattr(Search, "_run_epoch", lambda self, *a: (_ for _ in ()).throw(KeyboardInterrupt))
    assert run_tool("--out", str(out)) == 130
    capsys.readouterr()
    assert search_tool.main(["--resume", "--out", str(out), "--device", "cpu", "--no-progress", "--algorithm", "darts",
                             "--space", "s2", "--dataset", "svhn", "--preset", "quick", "--data", "elsewhere",
                             "--lr", "0.1"]) == 130
    notes = [line for line in capsys.readouterr().err.splitlines() if line.startswith("note:")]
    assert notes == [f"note: --resume uses the settings saved in {out}; ignoring algorithm, data, dataset, lr, preset, "
                     "space"]
    assert json.loads((out / "config.json").read_text())["algorithm"] == "pdarts"


def test_missing_cifar_without_network_says_where_to_put_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise URLError("no network")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    start = time.time()
    code = search_tool.main(["--dataset", "cifar10", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "o")])
    assert code == 2 and time.time() - start < 30
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cifar-10-python.tar.gz" in err[0] and str(tmp_path / "data") in err[0]
    assert not (tmp_path / "o").exists()


def test_generated_cifar10_copy_is_searched(tmp_path: Path) -> None:
    """The real CIFAR-10 loader reads files in the official pickle format (a generated copy here)."""
    from datagen import write_cifar10

    write_cifar10(tmp_path / "data", n_train=64)
    out = tmp_path / "c10"
    code = search_tool.main(["--dataset", "cifar10", "--data", str(tmp_path / "data"), "--preset", "tiny",
                             "--algorithm", "darts", "--epochs", "1", "--device", "cpu", "--no-progress",
                             "--out", str(out)])
    assert code == 0
    assert read_genotype_file(out / "genotype.json")[1]["dataset"] == "cifar10"
