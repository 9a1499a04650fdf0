"""tools/transfer.py end to end on generated data under one --data-root (tiny preset, CPU): two genotypes (PDARTS
and a tiny search run) and a baseline x CIFAR-10, ImageNet, COCO RetinaNet and Market-1501; a study killed and run
again; broken data failing alone; --retry-failed; bad input; the pivot's ranks and Kendall's tau; Slurm submission
through submitit with a stand-in sbatch (no cluster here).

Cost: ~205 s of CPU in all, ~3.5 min on 2 idle cores (the shared study's 12 cells are 12 fresh tool processes, 4
of them per detection cell; the tiny search runs beside the tests that need no search).
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import pytest
from datagen import write_cifar10, write_coco, write_imagenet_folder, write_market1501

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT / "tools" / "transfer.py"
sys.path.insert(0, str(ROOT / "tools"))
import transfer  # noqa: E402  (tools/transfer.py)

from pdarts_wild.zoo import resolve_genotype  # noqa: E402
from studies import report  # noqa: E402

BASELINE, BASELINE_TIMM = "mobilenetv2", "mobilenetv2_100"
TASKS = "cifar10,imagenet,coco-retinanet,market1501"
HEADLINE = {"cifar10": ["top1"], "imagenet": ["top1"], "coco-retinanet": ["bbox_mAP"], "market1501": ["rank1", "mAP"]}


@dataclass
class Done:
    returncode: int
    stdout: str
    stderr: str


def transfer_cli(*args: str) -> Done:
    """tools/transfer.py's main, in this process (the tools it runs are processes of their own): exit code, output."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = transfer.main(list(args))
    return Done(code, out.getvalue(), err.getvalue())


def run_args(data_root: Path, out: Path, genotypes: str, tasks: str, *extra: str) -> list[str]:
    return ["run", "--genotypes", genotypes, "--tasks", tasks, "--data-root", str(data_root), "--out", str(out),
            "--preset", "tiny", "--gpus", "0", *extra]


def state(out: Path, cell: str) -> dict:
    path = out / cell / "status.json"
    return json.loads(path.read_text()) if path.exists() else {}


def results(out: Path) -> list[dict]:
    with open(out / "results.csv") as f:
        return list(csv.DictReader(f))


def files_of(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``folder``: (modification time in ns, size)."""
    files = [p for p in folder.rglob("*") if p.is_file()]
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.stat().st_size) for p in files}


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """The tools the study starts inherit OMP_NUM_THREADS=1 (two threads are far slower on 2-core machines)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OMP_NUM_THREADS", "1")
        yield


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One --data-root in the real layouts: cifar-10-batches-py, imagenet/{train,val}, coco/, market1501/."""
    root = tmp_path_factory.mktemp("data")
    write_cifar10(root, n_train=64, n_test=32)
    write_imagenet_folder(root / "imagenet", per_class=4)
    write_coco(root / "coco", n_images=6)
    write_market1501(root)
    return root


@pytest.fixture(scope="module", autouse=True)
def search_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, subprocess.Popen]]:
    """``tools/search.py --dataset digits --preset tiny``, started with the module: the tests that need no search
    (placed first) run beside it on the second core."""
    folder = tmp_path_factory.mktemp("search")
    out = folder / "pdarts-digits-tiny"
    with open(folder / "search.out", "w") as log:
        search = subprocess.Popen([sys.executable, str(ROOT / "tools" / "search.py"), "--dataset", "digits", "--preset",
                                   "tiny", "--out", str(out), "--device", "cpu", "--no-progress"], stdout=log,
                                  stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    yield out, search
    if search.poll() is None:
        search.kill()
        search.wait()


@pytest.fixture(scope="module")
def search_run(search_process: tuple[Path, subprocess.Popen]) -> Path:
    out, search = search_process
    assert search.wait(timeout=300) == 0, (out.parent / "search.out").read_text()[-3000:]
    return out


@pytest.fixture(scope="module")
def study(data_root: Path, search_run: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The shared study: (its folder, the runner's output)."""
    out = tmp_path_factory.mktemp("studies") / "wild"
    done = transfer_cli(*run_args(data_root, out, f"PDARTS,{search_run}", TASKS, "--baselines", BASELINE))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out, done.stdout


# ------------------------------------------------------------------------------ no search needed: run beside it


@pytest.mark.parametrize("change, message", [
    (["--genotypes", "PDART"], "unknown genotype (registry name, genotype file or search run folder) 'PDART' "
                               "(closest: PDARTS, PCDARTS, DARTS; all: tools/transfer.py list)"),
    (["--tasks", "cifar11"], "unknown task 'cifar11' (closest: cifar10, cifar100; all: tools/transfer.py list)"),
    (["--baselines", "resnet5"], "unknown baseline 'resnet5' (closest: resnet50; all: tools/transfer.py list)"),
    (["--tasks", "market1501>market1501"], "cross-dataset task 'market1501>market1501': source and target are the "
                                           "same; use the task 'market1501'"),
    (["--tasks", "coco-retinanet"], "coco-retinanet starts from ImageNet weights of PDARTS: add imagenet to --tasks "
                                    "or give --pretrained PDARTS=FILE"),
    (["--pretrained", "PDARTS=missing.pth"], "--pretrained PDARTS=missing.pth: no such file"),
    (["--set", "imagenet.epochs=ten"], "--set imagenet.epochs=ten: expected an integer"),
    (["--set", "imagenet.input_size=64x32"], "--set imagenet.input_size=64x32: tools/train_imagenet.py trains square "
                                             "crops (--input-size S)"),
    (["--set", "coco.lr=1"], "--set 'coco.lr=1': 'coco' is not one of --tasks (imagenet)"),
    (["--set", "imagenet.lrr=0.1"], "--set imagenet.lrr=0.1: no option --lrr in tools/train_imagenet.py (closest: "
                                    "lr; all: tools/train_imagenet.py --help)"),
    (["--set", "imagenet.lr=fast"], "--set imagenet.lr=fast: --lr takes a number (could not convert string to "
                                    "float: 'fast')"),
    (["--set", "imagenet.batch-size=4"], "--set imagenet.batch-size=4: the study sets this itself; use the shared "
                                         "key imagenet.batch"),
], ids=["genotype", "task", "baseline", "cross-dataset", "no-imagenet-weights", "pretrained-file", "set-value",
        "set-size", "set-task", "set-tool-option", "set-tool-value", "set-study-flag"])
def test_bad_input_stops_before_anything_runs(data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                              change: list[str], message: str) -> None:
    args = run_args(data_root, tmp_path / "study", "PDARTS", "imagenet")
    flag, value = change
    args = [*args[:args.index(flag) + 1], value, *args[args.index(flag) + 2:]] if flag in args else [*args, *change]
    assert transfer.main(args) == 2
    assert capsys.readouterr().err == f"error: {message}\n"
    assert not (tmp_path / "study").exists()


@pytest.mark.parametrize("setting, message", [
    ("market1501.train.lrr=1", "no config key train.lrr in tools/train_reid.py (closest: train.lr, train.staged_lr, "
                               "train.lr_scheduler; all: "
                               "tools/train_reid.py DEFAULTS)"),
    ("market1501.train.lr=fast", "train.lr: expected float, got 'fast'"),
    ("market1501.data.save_dir=x", "the study sets this itself"),
    ("coco-retinanet.exec(print(1));x=1", "a detection setting is a dotted config key of Python names, e.g. "
                                          "optim_wrapper.optimizer.lr"),
    ("coco-retinanet.train-cfg.max_epochs=2", "a detection setting is a dotted config key of Python names, e.g. "
                                              "optim_wrapper.optimizer.lr"),
], ids=["reid-key", "reid-value", "reid-study-key", "detection-code", "detection-name"])
def test_tool_settings_are_checked_before_anything_runs(data_root: Path, tmp_path: Path, setting: str, message: str,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """A typo in a tool's own terms stops the study at once, not when its cell runs (maybe days later)."""
    args = run_args(data_root, tmp_path / "study", "PDARTS", "imagenet,coco-retinanet,market1501", "--set", setting)
    assert transfer.main(args) == 2
    assert capsys.readouterr().err == f"error: --set {setting}: {message}\n"
    assert not (tmp_path / "study").exists()


def test_rows_are_named_after_their_real_folders(data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """A row's name names its cell folders and enters command.sh: ``..`` is the folder it stands for, a control
    character is refused, and a DARTS string (commas and all) is a row of its own."""
    genotype = resolve_genotype("PDARTS").to_string()
    record = json.dumps({"version": 1, "genotype": genotype})
    for name in ("my run", "evil\necho injected"):
        (tmp_path / "runs" / name / "sub").mkdir(parents=True)
        (tmp_path / "runs" / name / "genotype.json").write_text(record)
    monkeypatch.chdir(tmp_path / "runs" / "my run" / "sub")
    assert transfer.main(run_args(data_root, tmp_path / "a", f"..,{genotype},DARTS_V2", "cifar10", "--dry-run")) == 0
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == [".lock", "DARTS_V2", "custom-9b5afe42", "my run",
                                                                  "study.json"]
    assert (tmp_path / "a" / "my run" / "cifar10" / "command.sh").read_text().splitlines()[1].startswith(
        "# my run x cifar10: a cell")
    capsys.readouterr()
    evil = tmp_path / "runs" / "evil\necho injected"
    assert transfer.main(run_args(data_root, tmp_path / "b", str(evil), "cifar10", "--dry-run")) == 2
    assert capsys.readouterr().err == ("error: row name 'evil\\necho injected', from its folder or file name, is "
                                       "empty or holds a control character: rename it\n")
    assert not (tmp_path / "b").exists()


def test_missing_data_and_foreign_folders_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = write_cifar10(tmp_path / "data", n_train=10, n_test=10)
    assert transfer.main(run_args(root, tmp_path / "a", "PDARTS", "cifar10,market1501")) == 2
    assert capsys.readouterr().err == (f"error: no market1501 data in {root}: market1501 is missing (expected "
                                       "torchreid's root holding market1501/Market-1501-v15.09.15/)\n")
    assert transfer.main(run_args(root, tmp_path / "b", "PDARTS", "imagenet")) == 2
    assert capsys.readouterr().err == (f"error: no imagenet data at {root}/imagenet (expected "
                                       "train/<class>/*.JPEG and val/<class>/*.JPEG; ROOT/imagenet or --data "
                                       "imagenet=PATH)\n")
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "notes.txt").write_text("mine")
    assert transfer.main(run_args(root, tmp_path / "c", "PDARTS", "cifar10")) == 2
    assert capsys.readouterr().err == (f"error: {tmp_path / 'c'} is not empty and holds no study (study.json): "
                                       "choose another --out\n")
    assert [p.name for p in (tmp_path / "c").iterdir()] == ["notes.txt"]  # refused before the lock file is made
    assert transfer.main(run_args(root, tmp_path / "c" / "notes.txt", "PDARTS", "cifar10")) == 2
    assert capsys.readouterr().err == f"error: --out {tmp_path / 'c' / 'notes.txt'} is a file, not a folder\n"


def test_pivot_ranks_and_kendall_tau(tmp_path: Path) -> None:
    """Three genotypes in proxy order on ImageNet (tau 1), reversed on Market-1501 (tau -1); a baseline ranks too."""
    saved = {"tasks": ["cifar10", "imagenet", "market1501"],
             "rows": [{"name": n, "kind": "genotype"} for n in "abc"] + [{"name": "base", "kind": "baseline"}]}
    lines = [dict(genotype=g, task=t, dataset=d, metric=m, value=v, higher_is_better=True)
             for g, c10, imnet, rank1 in (("a", 90, 70, 50), ("b", 92, 72, 40), ("c", 94, 74, 30), ("base", 93, 74, 60))
             for t, d, m, v in (("cifar10", "cifar10", "top1", c10), ("imagenet", "imagenet", "top1", imnet),
                                ("market1501", "market1501", "rank1", rank1), ("market1501", "market1501", "mAP", 1))]
    header, rows = report.pivot(lines, saved)
    assert header == ["genotype", "cifar10 top1", "imagenet top1", "market1501 rank1", "market1501 mAP", "mean rank"]
    assert rows[2] == ["c", "94.00 (1)", "74.00 (1)", "30.00 (4)", "1.00 (1)", "1.75"]
    assert rows[3] == ["base", "93.00 (2)", "74.00 (1)", "60.00 (1)", "1.00 (1)", "1.25"]
    taus = report.plot(lines, saved, tmp_path / "p.svg")
    assert taus == {("imagenet", "top1"): pytest.approx(1.0), ("market1501", "rank1"): pytest.approx(-1.0)}
    assert "Kendall" in (tmp_path / "p.svg").read_text()


def test_slurm_jobs_wait_for_their_imagenet_job(data_root: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Through submitit, with a stand-in sbatch that records each job script (no cluster here)."""
    pytest.importorskip("submitit")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "sbatch").write_text('#!/bin/bash\nn=$(ls "$(dirname "$0")"/job*.sh 2>/dev/null | wc -l)\n'
                                    'cp "$1" "$(dirname "$0")/job$((n + 1)).sh"\n'
                                    'echo "Submitted batch job $((n + 1))"\n')
    for tool in ("srun", "sbatch"):
        (bin_dir / tool).chmod(0o755)
    out = tmp_path / "slurm-study"
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    done = transfer_cli(*run_args(data_root, out, "PDARTS", "imagenet,market1501"), "--launcher", "slurm",
                        "--partition", "gpu")
    assert done.returncode == 0, done.stdout + done.stderr
    assert state(out, "PDARTS/imagenet")["state"] == "queued" and state(out, "PDARTS/imagenet")["job_id"] == "1"
    assert state(out, "PDARTS/market1501")["job_id"] == "2"
    first, second = (bin_dir / "job1.sh").read_text(), (bin_dir / "job2.sh").read_text()
    assert "#SBATCH --partition=gpu" in first and "--dependency" not in first
    assert "#SBATCH --dependency=afterok:1" in second and "#SBATCH --kill-on-invalid-dep=yes" in second
    # Job 1 cancelled, job 2 pending (a stand-in sacct): the local runner takes the cancelled job's cell over.
    (bin_dir / "sacct").write_text('#!/bin/sh\nprintf "JobID|State|NodeList\\n1|CANCELLED by 0|\\n2|PENDING|\\n"\n')
    (bin_dir / "sacct").chmod(0o755)
    shown = transfer_cli("status", str(out)).stdout
    assert re.search(r"^PDARTS/imagenet +gone +0 .* its Slurm job 1 is gone: run the study again", shown, re.M)
    assert re.search(r"^PDARTS/market1501 +queued ", shown, re.M)
    done = transfer_cli(*run_args(data_root, out, "PDARTS", "imagenet,market1501"))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "[1/2] PDARTS/imagenet: finished (" in done.stdout
    assert "[2/2] PDARTS/market1501: queued in Slurm as job 2 (scancel it to run the cell here)" in done.stdout
    assert state(out, "PDARTS/imagenet")["state"] == "finished" and state(out, "PDARTS/imagenet")["job_id"] is None


def test_dry_run_writes_the_papers_commands(data_root: Path, tmp_path: Path) -> None:
    """--preset paper --gpus 8 --dry-run: every cell's command at the tools' own defaults, launched per GPU; nothing
    runs."""
    out = tmp_path / "paper"
    done = transfer_cli("run", "--genotypes", "PDARTS", "--baselines", "resnet50", "--tasks",
                        "imagenet,coco-retinanet,market1501", "--data-root", str(data_root), "--out", str(out),
                        "--gpus", "8", "--dry-run")
    assert done.returncode == 0, done.stderr
    imagenet = (out / "PDARTS/imagenet/command.sh").read_text()
    assert "torchrun --standalone --nproc_per_node=8" in imagenet and "--input-size 224" in imagenet
    assert "--epochs 250" in imagenet and "--auxiliary-weight" not in imagenet  # the paper's auxiliary head stays
    detection = (out / "PDARTS/coco-retinanet/command.sh").read_text()
    assert "--launcher pytorch --gpus 8" in detection and "--checkpoint run/epoch_12.pth" in detection
    config = (out / "PDARTS/coco-retinanet/config.py").read_text()
    assert "pipeline" not in config and "train_cfg" not in config and "param_scheduler" not in config  # 1x as shipped
    assert "init_channels=48" in config and "in_channels=[192, 384, 768]" in config
    baseline = (out / "resnet50/coco-retinanet/config.py").read_text()
    assert "retinanet_r50_fpn_1x_coco.py" in baseline and "init_channels" not in baseline
    reid = (out / "resnet50/market1501/command.sh").read_text()
    assert "one device" in reid and "model.name resnet50" in reid and "train.max_epoch 60" in reid
    model = tmp_path / "cell/run/model"  # a kill while torchreid wrote epoch 11 left its temporary file
    model.mkdir(parents=True)
    for name in ("model.pth.tar-1", "model.pth.tar-2", "model.pth.tar-10", "model.pth.tar-11.tmp"):
        (model / name).touch()
    pick = next(line for line in reid.splitlines() if "last=$(" in line)
    picked = subprocess.run(["bash", "-c", f'{pick}; echo "$last"'], cwd=model.parents[1], capture_output=True, text=True)
    assert picked.stdout == "run/model/model.pth.tar-10\n"
    assert {state(out, f"{r}/{t}")["state"] for r in ("PDARTS", "resnet50") for t in ("imagenet", "market1501")} == {
        "pending"}
    assert not list(out.glob("*/*/run"))


def test_broken_data_fails_its_cell_alone(tmp_path: Path) -> None:
    """An ImageNet folder without val/: that cell fails with its tool's error line, the ReID cell waiting for it is
    blocked with the reason, CIFAR-10 finishes. Run again, the failed cell stays failed; with --retry-failed (the
    data fixed) it runs, and so does the cell that waited for it."""
    root = tmp_path / "data"
    write_cifar10(root, n_train=32, n_test=16)
    write_imagenet_folder(root / "imagenet", per_class=4)
    shutil.rmtree(root / "imagenet" / "val")
    write_market1501(root)
    out = tmp_path / "broken"
    done = transfer_cli(*run_args(root, out, "PDARTS", "cifar10,imagenet,market1501"))
    assert done.returncode == 1, done.stdout + done.stderr
    reason = f"error: no {root}/imagenet/val: --data needs train/<class>/*.JPEG and val/<class>/*.JPEG folders"
    assert state(out, "PDARTS/imagenet")["state"] == "failed" and state(out, "PDARTS/imagenet")["exit_code"] == 2
    assert state(out, "PDARTS/imagenet")["error"] == reason
    assert state(out, "PDARTS/market1501")["state"] == "blocked"
    assert state(out, "PDARTS/market1501")["error"] == f"waits for PDARTS/imagenet, which is failed: {reason}"
    assert state(out, "PDARTS/cifar10")["state"] == "finished"
    assert {(r["genotype"], r["task"]) for r in results(out)} == {("PDARTS", "cifar10")}
    assert f"2 cells did not finish: tools/transfer.py status {out} says why" in done.stdout
    again = transfer_cli(*run_args(root, out, "PDARTS", "cifar10,imagenet,market1501"))
    assert again.returncode == 1
    assert f"PDARTS/imagenet: failed earlier ({reason}); --retry-failed runs it again" in again.stdout
    write_imagenet_folder(root / "imagenet", per_class=4)  # the data fixed: the failed cell and its dependant run
    cifar = files_of(out / "PDARTS/cifar10")
    retried = transfer_cli(*run_args(root, out, "PDARTS", "cifar10,imagenet,market1501", "--retry-failed"))
    assert retried.returncode == 0, retried.stdout + retried.stderr
    assert [state(out, f"PDARTS/{t}")["state"] for t in ("imagenet", "market1501")] == ["finished", "finished"]
    assert state(out, "PDARTS/imagenet")["attempts"] == 2 and files_of(out / "PDARTS/cifar10") == cifar


# ---------------------------------------------------------------------------------------------- the shared study


ROWS = ("PDARTS", "pdarts-digits-tiny", BASELINE)


def test_every_cell_finishes_in_its_own_folder(study: tuple[Path, str]) -> None:
    out, output = study
    for row in ROWS:
        for task in HEADLINE:
            cell = out / row / task
            status = state(out, f"{row}/{task}")
            assert status["state"] == "finished" and status["exit_code"] == 0 and status["attempts"] == 1, status
            assert {"command.sh", "status.json", "metrics.json", "run"} <= {p.name for p in cell.iterdir()}
            assert f"{row}/{task}: finished" in output
    assert (out / "PDARTS/imagenet/run/model_final.pth").is_file()          # the tools' own run folders
    assert (out / "PDARTS/coco-retinanet/run/iter_4.pth").is_file()
    assert (out / "PDARTS/coco-retinanet/run/test/metrics.json").is_file()
    assert list((out / "PDARTS/market1501/run/model").glob("model.pth.tar-*"))


def test_results_hold_a_finite_headline_value_per_cell(study: tuple[Path, str], search_run: Path) -> None:
    out, _ = study
    lines = results(out)
    assert list(lines[0]) == ["genotype", "task", "dataset", "metric", "value", "higher_is_better", "params", "macs",
                              "epochs", "iters", "input_size", "source_file"]
    for row in ROWS:
        for task, metrics in HEADLINE.items():
            for metric in metrics:
                found = [x for x in lines if (x["genotype"], x["task"], x["metric"]) == (row, task, metric)]
                assert len(found) == 1 and math.isfinite(float(found[0]["value"])), (row, task, metric)
                assert int(found[0]["params"]) > 0 and found[0]["source_file"] == f"{row}/{task}/metrics.json"
    search = [line for line in lines if line["task"] == "search"]
    recorded = json.loads((search_run / "genotype.json").read_text())["final_valid_acc"]
    assert [(s["genotype"], s["metric"], s["dataset"]) for s in search] == [
        ("pdarts-digits-tiny", "valid_acc", "digits")]
    assert float(search[0]["value"]) == pytest.approx(100 * recorded)
    assert json.loads((out / "results.json").read_text())[0]["genotype"] == lines[0]["genotype"]


def test_report_prints_the_pivot_and_plots(study: tuple[Path, str], tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    out, _ = study
    assert transfer.main(["report", str(out), "--markdown", "--plot", str(tmp_path / "wild.png")]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0] == ("| genotype | cifar10 top1 | imagenet top1 | coco-retinanet bbox_mAP | market1501 rank1 | "
                        "market1501 mAP | mean rank |")
    assert [line.split(" | ")[0] for line in table[2:5]] == [f"| {row}" for row in ROWS]
    assert all(line.count("(") == 5 for line in table[2:5])  # a value and its rank in every column
    assert (tmp_path / "wild.png").stat().st_size > 1000


def test_study_json_records_grid_settings_and_versions(study: tuple[Path, str], search_run: Path) -> None:
    out, _ = study
    saved = json.loads((out / "study.json").read_text())
    assert [r["name"] for r in saved["rows"]] == list(ROWS) and saved["tasks"] == TASKS.split(",")
    assert saved["rows"][0]["genotype"].startswith("Genotype(normal=[('skip_connect', 0)")
    assert saved["rows"][1]["spec"] == str(search_run / "genotype.json")
    assert saved["settings"]["imagenet"]["settings"] == dict(channels=8, cells=5, input_size=[64, 64], epochs=1,
                                                             batch=8, workers=0)
    assert saved["settings"]["market1501"]["settings"]["channels"] == 8  # from the ImageNet network it starts from
    assert saved["versions"]["torch"] and saved["versions"]["mmdet"]
    cell = next(c for c in saved["cells"] if c["folder"] == "PDARTS/coco-retinanet")
    assert cell["depends_on"] == "PDARTS/imagenet"
    assert cell["weights"] == str(out / "PDARTS/imagenet/run/model_final.pth")


def test_cell_commands_are_the_tools_own(study: tuple[Path, str]) -> None:
    out, _ = study
    imagenet = (out / "PDARTS/imagenet/command.sh").read_text()
    for flags in ("tools/train_imagenet.py", "--genotype PDARTS", "--init-channels 8", "--layers 5",
                  "--auxiliary-weight 0", "--input-size 64", "--out run"):
        assert flags in imagenet
    assert f"--model {BASELINE_TIMM}" in (out / BASELINE / "imagenet/command.sh").read_text()
    reid = (out / "PDARTS/market1501/command.sh").read_text()
    assert f"model.pretrained_path {out}/PDARTS/imagenet/run/model_final.pth" in reid and "model.layers 5" in reid
    config = (out / "PDARTS/coco-retinanet/config.py").read_text()
    assert "classes=('a', 'b', 'c')" in config and "num_classes=3" in config and "in_channels=[32, 64, 128]" in config


def test_the_same_command_again_runs_nothing(study: tuple[Path, str], data_root: Path, search_run: Path) -> None:
    out, _ = study
    before = {k: v for k, v in files_of(out).items() if k not in ("results.csv", "results.json", ".lock")}
    again = transfer_cli(*run_args(data_root, out, f"PDARTS,{search_run}", TASKS, "--baselines", BASELINE))
    assert again.returncode == 0 and again.stdout.count(": finished\n") == 12, again.stdout + again.stderr
    assert {k: v for k, v in files_of(out).items() if k not in ("results.csv", "results.json", ".lock")} == before


def test_status_names_every_cell(study: tuple[Path, str], capsys: pytest.CaptureFixture[str]) -> None:
    out, _ = study
    assert transfer.main(["status", str(out)]) == 0
    shown = capsys.readouterr().out
    assert shown.splitlines()[-1] == "12 cells: 12 finished"
    assert re.search(r"^PDARTS/coco-retinanet +finished +1 ", shown, re.M)


def test_another_study_in_the_same_folder_is_refused(study: tuple[Path, str], data_root: Path, search_run: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    out, _ = study
    assert transfer.main(run_args(data_root, out, "PDARTS", "cifar10")) == 2
    assert capsys.readouterr().err == (
        f"error: {out} holds another study: rows PDARTS,pdarts-digits-tiny,{BASELINE} there, PDARTS now; tasks "
        f"{TASKS} there, cifar10 now (the same arguments continue it)\n")
    assert transfer.main(run_args(data_root, out, f"PDARTS,{search_run}", TASKS, "--baselines", BASELINE,
                                  "--set", "imagenet.epochs=2")) == 2
    assert capsys.readouterr().err == (f"error: {out} holds another study: settings of imagenet differ (the same "
                                       "arguments continue it)\n")


def test_damaged_study_files_are_named_not_tracebacks(study: tuple[Path, str], tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """A copy of the finished study with one file damaged at a time: status and report name the file; the report
    writes the results files again (a Slurm study gets them there) and checks the plot's file name first."""
    copy = tmp_path / "copy"
    shutil.copytree(study[0], copy)
    cell = copy / "PDARTS" / "cifar10"
    (copy / "results.csv").unlink()
    assert transfer.main(["report", str(copy)]) == 0
    assert (copy / "results.csv").read_text() == (study[0] / "results.csv").read_text()
    assert transfer.main(["report", str(copy), "--plot", str(tmp_path / "plot.txt")]) == 2
    capsys.readouterr()
    for text, command, message in [
        ("[]", "status", f"{cell / 'status.json'}: not a cell status (a list, not a mapping); delete it to run the "
                         "cell anew"),
        ('{"state": "finished", "error": 5}', "status", f"{cell / 'status.json'}: not a cell status (error 5); "
                                                        "delete it to run the cell anew"),
    ]:
        saved = (cell / "status.json").read_text()
        (cell / "status.json").write_text(text)
        assert transfer.main([command, str(copy)]) == 2
        assert capsys.readouterr().err == f"error: {message}\n"
        (cell / "status.json").write_text(saved)
    (cell / "metrics.json").write_text('{"metrics": [{"name": "top1", "value": "abc"}]}')
    assert transfer.main(["report", str(copy)]) == 2
    assert capsys.readouterr().err.startswith(f"error: {cell}: finished, but metrics.json is not a tool's metrics "
                                              "file: ValueError")
    (copy / "study.json").write_text('{"version": 1}')
    assert transfer.main(["status", str(copy)]) == 2
    assert capsys.readouterr().err == f"error: {copy / 'study.json'} is damaged: KeyError: 'rows'\n"


# ---------------------------------------------------------------------------------------------- a killed study


def test_a_killed_study_continues_with_the_same_results(study: tuple[Path, str], data_root: Path,
                                                        tmp_path: Path) -> None:
    """SIGKILL to the runner and its tools when the first cell turns finished; the same command again skips that
    cell (its files untouched) and gives the numbers of the uninterrupted study."""
    out = tmp_path / "killed"
    args = run_args(data_root, out, "PDARTS", "imagenet,cifar10")
    runner = subprocess.Popen([sys.executable, str(TOOL), *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 300
    while state(out, "PDARTS/imagenet").get("state") != "finished":
        assert runner.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    os.killpg(runner.pid, signal.SIGKILL)
    runner.wait()
    assert state(out, "PDARTS/cifar10")["state"] in ("pending", "running")
    finished = files_of(out / "PDARTS/imagenet")
    again = transfer_cli(*args)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "[1/2] PDARTS/imagenet: finished\n" in again.stdout
    assert files_of(out / "PDARTS/imagenet") == finished
    mine = {(r["task"], r["metric"]): r["value"] for r in results(out)}
    uninterrupted = {(r["task"], r["metric"]): r["value"] for r in results(study[0])
                     if r["genotype"] == "PDARTS" and r["task"] in ("imagenet", "cifar10")}
    assert mine == uninterrupted and len(mine) == 8
