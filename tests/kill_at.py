"""Run a tool several times on one run folder, each run killed (SIGKILL) at a chosen, deterministic point.

``python tests/kill_at.py TOOL RUNS``, RUNS a JSON list of ``[args, kill]``: each run is ``TOOL args`` in a
process of its own, forked from this fresh interpreter after it imported TOOL (so that the runs do not each
pay the imports), and must die at ``kill``, or with ``kill`` null run to the end and exit 0. ``kill``:

- ``call:torch.optim:SGD.step:5`` dies on entering the 5th call of ``torch.optim.SGD.step`` (the 5th weight step);
- ``save:checkpoint.pt.tmp:3``: the 3rd write of a file named ``checkpoint.pt.tmp`` (the temporary file of
  :func:`pdarts_wild.files.atomic_write`) puts half of its bytes on disk, then the process dies: a kill in the
  middle of writing a checkpoint.

A kill is a real ``kill -9`` of the tool's process, chosen by call counts rather than by time, so it happens at the
same point on a fast and a loaded machine. Runs use one thread, as the tests' own runs (conftest.py). The test
side: :func:`run_killed`, and the checks that a resumed run folder holds what the uninterrupted one holds.
"""
from __future__ import annotations

import functools
import importlib
import json
import multiprocessing
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
TIMINGS = ("img_per_s", "seconds", "peak_mem_mb", "eta_s", "compile_s")  # scalars that differ between any two runs


def _die() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def kill_on_call(module: str, function: str, k: int) -> None:
    """Die on entering the ``k``-th call of ``function`` (a dotted path in ``module``)."""
    *owner_path, name = function.split(".")
    owner: Any = importlib.import_module(module)
    for part in owner_path:
        owner = getattr(owner, part)
    real, calls = getattr(owner, name), [0]

    @functools.wraps(real)
    def counted(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if calls[0] == k:
            _die()
        return real(*args, **kwargs)

    setattr(owner, name, counted)


class _TornWrite:
    """A file whose first ``write`` puts half of its bytes on disk, then kills the process."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle

    def __enter__(self) -> "_TornWrite":
        return self

    def __exit__(self, *exc: object) -> None:
        self.handle.close()

    def write(self, data: bytes) -> None:
        self.handle.write(bytes(data)[: len(data) // 2])
        self.handle.flush()
        os.fsync(self.handle.fileno())
        _die()


def kill_mid_save(name: str, k: int) -> None:
    """The ``k``-th opening for writing of a file named ``name`` by :func:`pdarts_wild.files.atomic_write` (every
    checkpoint goes through it) writes half of its bytes, then the process dies."""
    from pdarts_wild import files

    calls = [0]

    def open_for(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        handle = open(file, mode, *args, **kwargs)
        if "w" in mode and Path(file).name == name:
            calls[0] += 1
            if calls[0] == k:
                return _TornWrite(handle)
        return handle

    files.open = open_for  # the module's own name lookup finds this before the builtin


def _run(main: Callable[[list[str]], int], args: list[str], kill: str | None) -> None:
    if kill is not None:
        kind, *where, k = kill.split(":")
        (kill_on_call if kind == "call" else kill_mid_save)(*where, int(k))
    sys.exit(main(args))


def main() -> None:
    tool, runs = Path(sys.argv[1]), json.loads(sys.argv[2])
    import torch

    torch.set_num_threads(1)
    sys.path.insert(0, str(tool.parent))
    tool_main = importlib.import_module(tool.stem).main
    for i, (args, kill) in enumerate(runs, 1):
        run = multiprocessing.get_context("fork").Process(target=_run, args=(tool_main, args, kill))
        run.start()
        run.join()
        expected = 0 if kill is None else -signal.SIGKILL
        if run.exitcode != expected:
            sys.exit(f"run {i} ({kill or 'to the end'}) exited with {run.exitcode}, not {expected}")


# ------------------------------------------------------------------------------------------ test side


def run_killed(tool: str, runs: list[tuple[list[str], str | None]], cwd: Path) -> None:
    """``tools/TOOL`` run after run as ``python tests/kill_at.py`` does (see the module's docstring)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    done = subprocess.run([sys.executable, __file__, str(ROOT / "tools" / tool), json.dumps(runs)],
                          capture_output=True, text=True, cwd=cwd, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]


def assert_no_file_lost(out: Path, reference: Path) -> None:
    """Every file of the uninterrupted run is there, no half-written ``.tmp`` is left, and TensorBoard shows the
    same scalars at the same steps (timings aside): what a killed run logged past its checkpoint was purged."""
    names = {p.relative_to(out).as_posix() for p in out.rglob("*") if not p.match("events.out.tfevents.*")}
    expected = {p.relative_to(reference).as_posix() for p in reference.rglob("*")
                if not p.match("events.out.tfevents.*")}
    assert expected <= names and not [n for n in names if n.endswith(".tmp")], sorted(names ^ expected)
    assert tensorboard_scalars(out) == tensorboard_scalars(reference)


def tensorboard_scalars(run: Path) -> dict[str, list[tuple[int, float]]]:
    """``tag: [(step, value), ...]`` as TensorBoard shows the run's ``tb`` folder: every event file in the order the
    runs wrote them, each resumed run's start (SessionLog START at its purge step) voiding what was logged at that
    step and later. (TensorBoard orders the files by name, whose clock has whole seconds: too coarse for runs
    killed within a second.)"""
    from tensorboard.backend.event_processing.event_file_loader import LegacyEventFileLoader
    from tensorboard.compat.proto.event_pb2 import SessionLog

    files = [list(LegacyEventFileLoader(str(path)).Load()) for path in (run / "tb").glob("events.out.tfevents.*")]
    scalars: dict[str, list[tuple[int, float]]] = {}
    for events in sorted(files, key=lambda events: events[0].wall_time):
        for event in events:
            if event.session_log.status == SessionLog.START:
                scalars = {tag: [(s, v) for s, v in points if s < event.step] for tag, points in scalars.items()}
            for value in event.summary.value:
                if not value.tag.endswith(TIMINGS):
                    scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
    return scalars


def assert_log_replays(out: Path, reference: Path, name: str) -> None:
    """Each line the uninterrupted run logged appears, in order, in the resumed run's log (after its own timestamp,
    run folder and speed are taken out): the resumed runs appended to the log and printed the same numbers."""

    def lines(run: Path) -> list[str]:
        text = (run / name).read_text().replace(str(run), "RUN")
        return [re.sub(r"\| [\d.]+ img/s.*", "", line[20:]) for line in text.splitlines()]

    resumed = iter(lines(out))
    missing = [line for line in lines(reference) if not any(line == other for other in resumed)]
    assert not missing, missing[:3]


if __name__ == "__main__":
    main()
