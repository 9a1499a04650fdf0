"""benchmarks/gpu_check.sh --tiny: the GPU check's steps run on the CPU, a failed or hung step is named and the
next one runs, and the report holds every result. ~50 s: a subset of --tiny (its compiled steps trace for two minutes
on a CPU; tests/test_compile.py and test_bench_search.py cover them)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"


def _python_that(tmp_path: Path, *, fails_on: str = "", hangs_on: str = "", lacks: str = "") -> Path:
    """A python3 for the script that exits 3 when its arguments hold ``fails_on``, sleeps when they hold ``hangs_on``,
    says module ``lacks`` is not installed, and is this interpreter otherwise."""
    wrapper = tmp_path / "python"
    wrapper.write_text(f"""#!/bin/bash
[[ -n "{lacks}" && " $* " == *find_spec*" {lacks} "* ]] && {{ echo "{lacks}"; exit 0; }}
[[ -n "{fails_on}" && " $* " == *" {fails_on} "* ]] && {{ echo "planted failure" >&2; exit 3; }}
[[ -n "{hangs_on}" && " $* " == *" {hangs_on} "* ]] && exec sleep 600
exec {sys.executable} "$@"
""")
    wrapper.chmod(0o755)
    return wrapper


def _run(tmp_path: Path, python: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHON": str(python), "TMPDIR": str(tmp_path)}
    env.pop("OUT", None)
    return subprocess.run(["bash", str(SCRIPT), "--tiny", "--out", str(tmp_path / "out"), *args], capture_output=True,
                          text=True, timeout=timeout, env=env, cwd=tmp_path)


def test_tiny_steps_report_and_a_failed_step_does_not_stop_the_rest(tmp_path: Path) -> None:
    done = _run(tmp_path, _python_that(tmp_path, fails_on="optimizers"),
                "--only", "env,optimizers,bench_pdarts-s3,data,search_eager")
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]  # a step failed
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == ["gpu_check.json", "gpu_check.log", "gpu_check.txt"]
    result = json.loads((out / "gpu_check.json").read_text())
    steps = result["steps"]
    assert list(steps) == ["env", "optimizers", "bench_pdarts-s3", "data", "search_eager"]
    assert steps["optimizers"].startswith("FAILED (exit 3 after") and steps["optimizers"].endswith("planted failure")
    assert all(steps[name].startswith("ok (") for name in ("env", "bench_pdarts-s3", "data", "search_eager"))
    bench = result["bench_search"]["pdarts-s3"]
    assert list(bench) == ["baseline", "eager", "no-recompute"]
    assert bench["eager"]["max_abs_grad_diff"] <= 1e-5 and bench["no-recompute"]["max_abs_grad_diff"] <= 1e-4
    assert [r["stage"] for r in result["search"]["eager"]] == [1, 2, 3]
    assert all(r["img_per_s"] > 0 for r in result["search"]["eager"])
    assert result["search"]["eager"][-1]["eta_s"] == 0
    table = (out / "gpu_check.txt").read_text()
    assert re.search(r"\noptimizers +FAILED \(exit 3", table)
    assert re.search(r"\npdarts-s3 +eager +\d", table) and "search (one epoch per stage)" in table
    assert done.stdout.endswith(table + f"wrote {out}/gpu_check.txt, gpu_check.json and gpu_check.log; work files in "
                                f"{next(tmp_path.glob('gpu_check.*'))}\n")
    log = (out / "gpu_check.log").read_text()
    assert "stage 3 epoch 1/1" in log and "planted failure" in log  # every step's output, search.log included


def test_a_hung_step_is_cut_at_the_budget_and_the_rest_skipped(tmp_path: Path) -> None:
    done = _run(tmp_path, _python_that(tmp_path, hangs_on="env"), "--budget", "40", "--only", "env,data", timeout=120)
    assert done.returncode == 1
    steps = json.loads((tmp_path / "out" / "gpu_check.json").read_text())["steps"]
    assert steps == {"env": "TIMED OUT after 15 s (a bigger budget, or --only env)",
                     "data": "skipped: the 40 s budget is spent (run it with --only data)"}


def test_a_step_whose_module_is_missing_is_named_and_skipped(tmp_path: Path) -> None:
    done = _run(tmp_path, _python_that(tmp_path, lacks="tensorboard"), "--only", "data,search_eager,search_bf16")
    assert done.returncode == 0
    steps = json.loads((tmp_path / "out" / "gpu_check.json").read_text())["steps"]
    assert steps == {"data": steps["data"], "search_eager": "skipped: the Python module tensorboard is not installed here",
                     "search_bf16": "skipped: the Python module tensorboard is not installed here"}
    assert steps["data"].startswith("ok (")


def test_unknown_option_is_one_line(tmp_path: Path) -> None:
    done = _run(tmp_path, Path(sys.executable), "--fast")
    assert done.returncode == 2 and done.stderr == "error: unknown option --fast (see --help)\n"


def test_help_is_the_header_comment(tmp_path: Path) -> None:
    done = _run(tmp_path, Path(sys.executable), "--help")
    assert done.returncode == 0 and done.stdout.startswith("The GPU figures of issue 18 in one call")
    assert done.stdout.endswith("  bash benchmarks/gpu_check.sh --skip search_bf16 --budget 300\n")
