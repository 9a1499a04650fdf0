"""Driving a study locally: the lock, and the cells one after another in dependency order.

Each cell runs its ``command.sh`` with ``--gpus N`` through its ecosystem's launcher (torchrun for the train tools,
``mim --launcher pytorch`` for detection; tools/train_reid.py is one process on one device). On a cluster:
:mod:`studies.slurm`.
"""
from __future__ import annotations

import fcntl
import importlib.util
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pdarts_wild.messages import problem

from .cells import BLOCKED, FAILED, FINISHED, QUEUED, RUNNING, now, read_status, run_cell, write_status
from .errors import StudyError
from .grid import Cell, Study

LOCK = ".lock"
Say = Callable[[str], None]


@contextmanager
def study_lock(out: Path) -> Iterator[int]:
    """Hold ``OUT/.lock`` (fcntl.flock) while driving the study; its descriptor, for the cells' commands to keep."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd = os.open(out / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise StudyError(f"cannot use {out} as the study folder: {problem(e)}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StudyError(f"{out} is being driven by another runner (or a tool it started still runs): wait for it "
                         "to end, or stop it") from None
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield fd
    finally:
        os.close(fd)


def is_driven(out: Path) -> bool:
    """Whether a runner (or a tool it started) holds the study's lock now."""
    try:
        fd = os.open(out / LOCK, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def skip_reason(cell: Cell, retry_failed: bool) -> str | None:
    """Why ``cell`` is not run now (None: run it)."""
    status = read_status(cell.folder)
    if status.get("state") == FINISHED:
        return "finished"
    if status.get("state") == FAILED and not retry_failed:
        return f"failed earlier ({status.get('error')}); --retry-failed runs it again"
    return None


def slurm_job_gone(out: Path, status: dict[str, Any]) -> bool:
    """Whether the Slurm job that a queued or running cell's status names is gone (cancelled, failed, lost with its
    node), as submitit's sacct watcher says; False while it is alive or unknown, or without submitit."""
    job = status.get("job_id")
    if status.get("state") not in (QUEUED, RUNNING) or not job or importlib.util.find_spec("submitit") is None:
        return False
    from .slurm import job_alive

    return not job_alive(out, str(job))


def _in_slurm(cell: Cell, out: Path) -> str | None:
    """Why a cell submitted to Slurm is left to its job; None when it was not, or when its job is gone: then this
    runner takes the cell over."""
    status = read_status(cell.folder)
    if slurm_job_gone(out, status):
        write_status(cell.folder, job_id=None)
    elif status.get("state") in (QUEUED, RUNNING) and status.get("job_id"):
        return f"{status['state']} in Slurm as job {status['job_id']} (scancel it to run the cell here)"
    return None


def blocked_reason(cell: Cell, submitted: dict[str, str]) -> str | None:
    """Why ``cell`` cannot start (its ImageNet cell did not finish and is not on its way), else None."""
    if cell.depends_on is None or cell.depends_on.key in submitted:
        return None
    status = read_status(cell.depends_on.folder)
    if status.get("state") == FINISHED:
        return None
    reason = f": {status['error']}" if status.get("error") else ""
    return f"waits for {cell.depends_on.key}, which is {status.get('state', 'missing')}{reason}"


def run_local(study: Study, lock_fd: int, retry_failed: bool, say: Say, after_cell: Callable[[], None]) -> int:
    """Run every cell that is not finished, in dependency order; the number of cells left unfinished. Cells
    submitted to Slurm (queued or running there) are left to their job."""
    for i, cell in enumerate(study.cells, 1):
        where = f"[{i}/{len(study.cells)}] {cell.key}"
        skip = skip_reason(cell, retry_failed) or _in_slurm(cell, study.out)
        blocked = None if skip else blocked_reason(cell, {})
        if skip or blocked:
            if blocked:
                write_status(cell.folder, state=BLOCKED, error=blocked, end=now())
            say(f"{where}: {skip or 'blocked, ' + blocked}")
            continue
        attempt = read_status(cell.folder).get("attempts", 0) + 1
        again = f", attempt {attempt}" if attempt > 1 else ""
        say(f"{where}: running {cell.folder / 'command.sh'} (output: stdout.log, stderr.log{again})")
        start = time.monotonic()
        status = run_cell(cell.folder, (lock_fd,))
        outcome = "finished" if status["state"] == FINISHED else f"failed: {status['error']}"
        say(f"{where}: {outcome} ({time.monotonic() - start:.0f} s)")
        after_cell()
    return sum(read_status(cell.folder).get("state") != FINISHED for cell in study.cells)
