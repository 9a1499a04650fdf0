"""One cell: its ``status.json`` and one run of its ``command.sh`` (locally, or as the body of a Slurm job).

``status.json``: ``state`` (pending, queued, running, finished, failed, blocked), ``start``/``end`` times, the
exit code, ``error`` (the tool's last ``error:`` line, or its last exception or stderr line), ``attempts``.
The command's output is appended to the cell's ``stdout.log`` and ``stderr.log``, one header per attempt.
"""
from __future__ import annotations

import json
import math
import os
import re
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from pdarts_wild.messages import describe, one_line

from .errors import StudyError
from .grid import Cell

STATUS, METRICS, STDOUT, STDERR = "status.json", "metrics.json", "stdout.log", "stderr.log"
PENDING, QUEUED, RUNNING, FINISHED, FAILED, BLOCKED = "pending", "queued", "running", "finished", "failed", "blocked"
STATES = (PENDING, QUEUED, RUNNING, FINISHED, FAILED, BLOCKED)
FIELDS: dict[str, tuple[type, ...]] = {  # what status.json's fields hold (None: not yet, or none)
    "row": (str,), "task": (str,), "depends_on": (str,), "state": (str,), "attempts": (int,), "start": (str,),
    "end": (str,), "exit_code": (int,), "error": (str,), "host": (str,), "pid": (int,), "job_id": (str, int),
    "submitted": (str,)}
ERROR_LINE = re.compile(r"(^|: )error: ")  # ours (error: ...) and argparse's (prog: error: ...)
EXCEPTION_LINE = re.compile(r"^\s*([\w.]+(Error|Exception)|KeyboardInterrupt)\b")
NOT_THE_CAUSE = ("subprocess.CalledProcessError",)  # mim's own traceback after its tool failed


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def new_status(cell: Cell) -> dict[str, Any]:
    return {"row": cell.row.name, "task": cell.task.name, "state": PENDING, "attempts": 0,
            "depends_on": cell.depends_on.key if cell.depends_on else None}


def read_status(folder: Path) -> dict[str, Any]:
    """The cell's status (empty when it has none yet); a ``StudyError`` for a file that is not one (ours are
    written atomically, so that is someone else's doing)."""
    path = folder / STATUS
    try:
        status = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise StudyError(f"cannot read {path}: {describe(e)}; delete it to run the cell anew") from None
    problem = _status_problem(status)
    if problem:
        raise StudyError(f"{path}: not a cell status ({problem}); delete it to run the cell anew")
    return status


def _status_problem(status: Any) -> str | None:
    if not isinstance(status, dict):
        return f"a {type(status).__name__}, not a mapping"
    for key, kinds in FIELDS.items():
        value = status.get(key)
        if value is not None and (not isinstance(value, kinds) or isinstance(value, bool)):
            return f"{key} {one_line(repr(value), 40)}"
    if status.get("state", PENDING) not in STATES:
        return f"unknown state {one_line(repr(status['state']), 40)}"
    return None


def write_status(folder: Path, **fields: Any) -> dict[str, Any]:
    """Merge ``fields`` into ``status.json``, atomically."""
    status = {**read_status(folder), **fields}
    tmp = folder / (STATUS + ".tmp")
    tmp.write_text(json.dumps(status, indent=2) + "\n")
    os.replace(tmp, folder / STATUS)
    return status


def run_cell(folder: Path, keep_fds: tuple[int, ...] = ()) -> dict[str, Any]:
    """Run ``command.sh`` once (it resumes what an earlier attempt left) and record the outcome in ``status.json``.

    ``keep_fds`` (the study's lock) stay open in the command, so no second runner drives the study while a tool
    it started still runs.
    """
    attempt = read_status(folder).get("attempts", 0) + 1
    write_status(folder, state=RUNNING, start=now(), end=None, exit_code=None, error=None, attempts=attempt,
                 host=socket.gethostname(), pid=os.getpid())
    with open(folder / STDOUT, "ab") as out, open(folder / STDERR, "ab") as err:
        header = f"=== attempt {attempt}, {now()}, {socket.gethostname()}\n".encode()
        out.write(header)
        err.write(header)
        out.flush()
        err.flush()
        offset = err.tell()
        code = subprocess.run(["bash", str(folder / "command.sh")], stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                              pass_fds=keep_fds).returncode
    if code != 0:
        return write_status(folder, state=FAILED, end=now(), exit_code=code, error=error_line(folder / STDERR, offset))
    problem = metrics_problem(folder / METRICS)
    if problem:
        return write_status(folder, state=FAILED, end=now(), exit_code=code, error=problem)
    return write_status(folder, state=FINISHED, end=now(), exit_code=0, error=None)


def metrics_problem(path: Path) -> str | None:
    """Why ``metrics.json`` cannot be used (None when it can): each metric has a name and a finite value or null
    (not defined, e.g. COCO's AP of large objects where there are none), at least one a value."""
    try:
        metrics = json.loads(path.read_text())["metrics"]
        values = [m["value"] for m in metrics if isinstance(m["name"], str)]
        if len(values) != len(metrics) or not any(v is not None for v in values):
            return f"{path.name} holds no metric"
        if not all(v is None or math.isfinite(float(v)) for v in values):
            return f"{path.name} holds a metric that is not a finite number: {values}"
    except (OSError, ValueError, KeyError, TypeError) as e:
        return f"{path.name} is not a tool's metrics file: {type(e).__name__}: {e}"
    return None


def error_line(path: Path, offset: int = 0) -> str:
    """The reason a command failed: its last ``error:`` line, else its last exception line (a traceback's
    message), else its last line on stderr; from ``offset`` on."""
    with open(path, "rb") as f:
        f.seek(offset)
        lines = [line.strip() for line in f.read().decode(errors="replace").splitlines() if line.strip()]
    errors = [line for line in lines if ERROR_LINE.search(line)]
    exceptions = [line for line in lines if EXCEPTION_LINE.match(line) and not line.startswith(NOT_THE_CAUSE)]
    found = (errors or exceptions or lines or ["(no output on stderr)"])[-1]
    return found[:300]
