"""End-to-end searches through tools/search.py on tiny data: results, resume, DDP and bad input."""
from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Callable
from urllib.error import URLError

import pytest
import torch

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


@pytest.mark.parametrize("kill_after_epochs", [1, 2, 6])  # mid stage 1, at the stage 1/2 boundary, after the last
def test_resume_after_interrupt_is_bit_identical(tmp_path: Path, pdarts_run: Path, monkeypatch: pytest.MonkeyPatch,
                                                 interrupt_search: Callable[[int], None], kill_after_epochs: int) -> None:
    out = tmp_path / "run"

    def die_before_result(self: Search, *args: object) -> None:
        raise KeyboardInterrupt

    if kill_after_epochs == 6:
        monkeypatch.setattr(Search, "_write_result", die_before_result)
    else:
        interrupt_search(kill_after_epochs)
    assert run_tool("--out", str(out)) == 130
    assert not (out / "genotype.json").exists()
    monkeypatch.undo()
    assert run_tool("--out", str(out), "--resume") == 0
    resumed, reference = load_result(out), load_result(pdarts_run)
    assert resumed["genotype"] == reference["genotype"]
    assert resumed["alphas"] == reference["alphas"]  # bit for bit: floats compared exactly


def test_resume_after_sigkill(tmp_path: Path, pdarts_run: Path) -> None:
    """A real kill -9 while the process is running, then --resume, gives the uninterrupted result."""
    out = tmp_path / "killed"
    cmd = [sys.executable, str(ROOT / "tools" / "search.py"), *TINY, "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path)
    deadline = time.time() + 120
    while not (out / "checkpoint.pt").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.5)  # well into the next epoch
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "genotype.json").exists(), "the search finished before it could be killed"
    done = subprocess.run([*cmd, "--resume"], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert load_result(out)["alphas"] == load_result(pdarts_run)["alphas"]


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
        (["--layers", "5", "11"], "--skip-dropout needs 1 or 2 values"),
        (["--channels", "7"], "--channels must be even"),
        (["--epochs", "2", "--arch-frozen-epochs", "2"], "leaves no epoch"),
        (["--skip-dropout", "1.5"], r"\[0, 1\)"),
    ],
)
def test_bad_settings_give_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str],
                                               message: str) -> None:
    assert run_tool("--out", str(tmp_path / "x"), *args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")
    assert re.search(message, err[0])
    assert not (tmp_path / "x").exists()


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
