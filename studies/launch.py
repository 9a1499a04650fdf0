"""Driving a study: the lock, the local runner (cells one after another) and the Slurm submission (submitit).

Locally each cell runs its ``command.sh`` with ``--gpus N`` through its ecosystem's launcher (torchrun for the
train tools, ``mim --launcher pytorch`` for detection; tools/train_reid.py is one process on one device). On Slurm
each cell is one job running the same ``command.sh`` (through :func:`studies.cells.run_cell`), COCO and ReID jobs
``afterok`` their ImageNet job.
"""
from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .cells import BLOCKED, FAILED, FINISHED, QUEUED, RUNNING, now, read_status, run_cell, write_status
from .errors import StudyError
from .grid import Cell, Study

LOCK = ".lock"
SLURM_ALIVE = {"PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "SUSPENDED", "RESIZING", "UNKNOWN"}
Say = Callable[[str], None]


@contextmanager
def study_lock(out: Path) -> Iterator[int]:
    """Hold ``OUT/.lock`` (fcntl.flock) while driving the study; its descriptor, for the cells' commands to keep."""
    out.mkdir(parents=True, exist_ok=True)
    fd = os.open(out / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
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


def _skip(cell: Cell, retry_failed: bool) -> str | None:
    """Why ``cell`` is not run now (None: run it)."""
    status = read_status(cell.folder)
    if status.get("state") == FINISHED:
        return "finished"
    if status.get("state") == FAILED and not retry_failed:
        return f"failed earlier ({status.get('error')}); --retry-failed runs it again"
    return None


def _blocked(cell: Cell, submitted: dict[str, str]) -> str | None:
    """Why ``cell`` cannot start (its ImageNet cell did not finish and is not on its way), else None."""
    if cell.depends_on is None or cell.depends_on.key in submitted:
        return None
    status = read_status(cell.depends_on.folder)
    if status.get("state") == FINISHED:
        return None
    reason = f": {status['error']}" if status.get("error") else ""
    return f"waits for {cell.depends_on.key}, which is {status.get('state', 'missing')}{reason}"


def run_local(study: Study, lock_fd: int, retry_failed: bool, say: Say, after_cell: Callable[[], None]) -> int:
    """Run every cell that is not finished, in dependency order; the number of cells left unfinished."""
    for i, cell in enumerate(study.cells, 1):
        where = f"[{i}/{len(study.cells)}] {cell.key}"
        skip = _skip(cell, retry_failed)
        blocked = None if skip else _blocked(cell, {})
        if skip or blocked:
            if blocked:
                write_status(cell.folder, state=BLOCKED, error=blocked, end=now())
            say(f"{where}: {skip or 'blocked, ' + blocked}")
            continue
        state = read_status(cell.folder).get("state")
        say(f"{where}: {'resuming' if state in (RUNNING, FAILED) else 'running'} {cell.folder / 'command.sh'}")
        start = time.monotonic()
        status = run_cell(cell.folder, (lock_fd,))
        outcome = "finished" if status["state"] == FINISHED else f"failed: {status['error']}"
        say(f"{where}: {outcome} ({time.monotonic() - start:.0f} s)")
        after_cell()
    return sum(read_status(cell.folder).get("state") != FINISHED for cell in study.cells)


@dataclass(frozen=True)
class SlurmOptions:
    partition: str | None = None
    time_min: int = 4320
    cpus_per_task: int = 10


def submit_slurm(study: Study, retry_failed: bool, options: SlurmOptions, say: Say) -> int:
    """One Slurm job per unfinished cell (submitit), ``afterok`` on its ImageNet job; the number submitted."""
    import submitit  # only for --launcher slurm

    try:
        executor = submitit.SlurmExecutor(folder=study.out / "slurm" / "%j")
    except RuntimeError as e:
        raise StudyError(f"--launcher slurm: {e}") from None
    gpus = study.env.gpus
    executor.update_parameters(partition=options.partition, time=options.time_min, nodes=1, ntasks_per_node=1,
                               cpus_per_task=options.cpus_per_task, gpus_per_node=gpus or None,
                               additional_parameters={"kill-on-invalid-dep": "yes"})
    jobs: dict[str, str] = {}
    submitted = 0
    for cell in study.cells:
        if _skip(cell, retry_failed):
            continue
        status = read_status(cell.folder)
        if status.get("state") in (QUEUED, RUNNING) and _alive(submitit, study.out, status.get("job_id")):
            jobs[cell.key] = status["job_id"]
            say(f"{cell.key}: job {status['job_id']} is still in Slurm")
            continue
        blocked = _blocked(cell, jobs)
        if blocked:
            write_status(cell.folder, state=BLOCKED, error=blocked, end=now())
            say(f"{cell.key}: blocked, {blocked}")
            continue
        dependency = f"afterok:{jobs[cell.depends_on.key]}" if cell.depends_on and cell.depends_on.key in jobs else None
        executor.update_parameters(job_name=f"{cell.row.name}-{cell.task.folder}", dependency=dependency)
        job = executor.submit(run_cell, cell.folder)
        jobs[cell.key] = job.job_id
        write_status(cell.folder, state=QUEUED, job_id=job.job_id, submitted=now(), error=None)
        submitted += 1
        say(f"{cell.key}: job {job.job_id}" + (f" ({dependency})" if dependency else ""))
    return submitted


def _alive(submitit, out: Path, job_id: str | None) -> bool:  # noqa: ANN001 (the lazily imported module)
    """Whether Slurm still holds the job (queued or running): then it is not submitted again."""
    if not job_id:
        return False
    return submitit.SlurmJob(folder=out / "slurm" / "%j", job_id=job_id).state in SLURM_ALIVE
