"""A study on a Slurm cluster: one job per unfinished cell through submitit, COCO and ReID jobs ``afterok`` their
ImageNet job. Each job runs the cell's own ``command.sh`` (:func:`studies.cells.run_cell`); a job that times out
or is preempted is requeued by submitit and its tool resumes. Imported only for ``--launcher slurm``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import submitit

from .cells import BLOCKED, QUEUED, RUNNING, now, read_status, run_cell, write_status
from .errors import StudyError
from .grid import Study
from .launch import Say, blocked_reason, skip_reason

ALIVE = {"PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "SUSPENDED", "RESIZING", "UNKNOWN"}


@dataclass(frozen=True)
class SlurmOptions:
    partition: str | None = None
    time_min: int = 4320
    cpus_per_task: int = 10


class CellJob(submitit.helpers.Checkpointable):
    """The job's function: run the cell; on a time-out or preemption submitit requeues it (the tool resumes)."""

    def __call__(self, folder: Path) -> dict[str, Any]:
        return run_cell(folder)


def submit(study: Study, retry_failed: bool, options: SlurmOptions, say: Say) -> int:
    """Submit every unfinished cell not already in Slurm; the number of jobs submitted."""
    try:
        executor = submitit.SlurmExecutor(folder=study.out / "slurm" / "%j")
    except RuntimeError as e:  # no srun here
        raise StudyError(f"--launcher slurm: {e}") from None
    executor.update_parameters(partition=options.partition, time=options.time_min, nodes=1, ntasks_per_node=1,
                               cpus_per_task=options.cpus_per_task, gpus_per_node=study.env.gpus or None,
                               additional_parameters={"kill-on-invalid-dep": "yes"})
    jobs: dict[str, str] = {}
    for cell in study.cells:
        if skip_reason(cell, retry_failed):
            continue
        status = read_status(cell.folder)
        if status.get("state") in (QUEUED, RUNNING) and job_alive(study.out, status.get("job_id")):
            jobs[cell.key] = status["job_id"]
            say(f"{cell.key}: job {status['job_id']} is still in Slurm")
            continue
        blocked = blocked_reason(cell, jobs)
        if blocked:
            write_status(cell.folder, state=BLOCKED, error=blocked, end=now())
            say(f"{cell.key}: blocked, {blocked}")
            continue
        dependency = f"afterok:{jobs[cell.depends_on.key]}" if cell.depends_on and cell.depends_on.key in jobs else None
        executor.update_parameters(job_name=f"{cell.row.name}-{cell.task.folder}", dependency=dependency)
        job = executor.submit(CellJob(), cell.folder)
        jobs[cell.key] = job.job_id
        write_status(cell.folder, state=QUEUED, job_id=job.job_id, submitted=now(), error=None)
        say(f"{cell.key}: job {job.job_id}" + (f" ({dependency})" if dependency else ""))
    return sum(read_status(cell.folder).get("state") == QUEUED for cell in study.cells)


def job_alive(out: Path, job_id: str | None) -> bool:
    """Whether Slurm still holds the job (queued or running): then it is not submitted again."""
    return bool(job_id) and submitit.SlurmJob(folder=out / "slurm" / "%j", job_id=job_id).state in ALIVE
