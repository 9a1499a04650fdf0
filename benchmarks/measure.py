"""What the benchmark tools share: peak memory of a block, timed steps, a fresh process per measurement,
the device's name and a plain-text table."""
from __future__ import annotations

import argparse
import ctypes
import gc
import os
import platform
import re
import resource
import signal
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from typing import Any, Callable, Sequence

import torch


class BenchError(ValueError):
    """A bad option or environment; the message says which."""


def _proc_status_kb(field: str) -> int:
    match = re.search(rf"^{field}:\s+(\d+) kB", open("/proc/self/status").read(), re.MULTILINE)
    if match is None:
        raise BenchError(f"/proc/self/status has no {field}: CPU peak memory needs Linux")
    return int(match.group(1))


def _give_back_free_memory() -> None:
    """glibc's ``malloc_trim(0)``: freed heap pages go back to the system, so that the resident set size is what is
    in use (after warm-up steps, what they freed would otherwise stay resident and hide the next steps' need)."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None).malloc_trim(0)
        except (OSError, AttributeError):  # not glibc
            pass


class PeakMemory:
    """Memory a block needs above what is held when :meth:`start` is called: on CUDA max_memory_allocated
    minus memory_allocated then; on the CPU the peak resident set size (Linux VmHWM, reset through
    /proc/self/clear_refs) minus the resident set size then."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.hwm_reset = False

    def start(self) -> None:
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
            return
        _give_back_free_memory()
        try:  # "5" resets the peak resident set size (VmHWM) to the current one (Linux >= 4.0)
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self.hwm_reset = True
        except OSError:
            self.hwm_reset = False  # ru_maxrss is then the whole process' peak: fine once the steps exceed the build
        self.base = _proc_status_kb("VmRSS") * 1024

    def peak_mb(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            return (torch.cuda.max_memory_allocated(self.device) - self.base) / 2**20
        peak_kb = _proc_status_kb("VmHWM") if self.hwm_reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return (peak_kb * 1024 - self.base) / 2**20


def timed_steps(step: Callable[[], None], device: torch.device, warmup: int, steps: int, batch: int,
                label: str, warmup_memory: bool = True) -> dict[str, float]:
    """Run ``step`` ``warmup`` + ``steps`` times; the median timed step (ms), images/s, peak memory (MB) and the
    warm-up steps' total time (s; with torch.compile, the compilation). ``warmup_memory=False``: the peak memory of
    the timed steps alone (on the CPU, a compilation's own memory would count)."""
    memory = PeakMemory(device)
    memory.start()
    times, warmup_s = [], 0.0
    for i in range(warmup + steps):
        start = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        elapsed = time.perf_counter() - start
        if i >= warmup:
            times.append(elapsed)
        else:
            warmup_s += elapsed
        if i == warmup - 1 and not warmup_memory:
            memory.start()
        phase = f"warm-up {i + 1}/{warmup}" if i < warmup else f"step {i + 1 - warmup}/{steps}"
        progress(f"{label}: {phase} {elapsed:.2f} s")
    step_s = statistics.median(times)
    return {"step_ms": 1000 * step_s, "img_per_s": batch / step_s, "peak_mb": memory.peak_mb(),
            "warmup_s": warmup_s}


_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _die_with_parent(parent: int) -> None:
    """In a measuring child on Linux: be killed when the benchmark process ``parent`` dies (a SIGTERM to it
    included), instead of measuring on as an orphan that holds gigabytes and a core. A parent that died
    before this ran (while the spawned child was still importing torch) sends no signal: then exit now."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:
            os._exit(1)


def in_child(what: str, function: Callable[..., Any], *args: Any) -> Any:
    """``function(*args)`` in a fresh spawned process: its peak memory is its own, and what its allocator
    keeps after a full-size forward and backward is given back to the system when it ends. The child dies
    with this process."""
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn"), initializer=_die_with_parent,
                             initargs=(os.getpid(),)) as pool:
        try:
            return pool.submit(function, *args).result()
        except BrokenProcessPool:
            raise BenchError(f"{what}: the process died (out of memory? try a smaller --batch)") from None


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    try:
        match = re.search(r"^model name\s*:\s*(.+)$", open("/proc/cpuinfo").read(), re.MULTILINE)
    except OSError:
        match = None
    return f"{match.group(1).strip() if match else platform.processor() or 'CPU'} ({os.cpu_count()} cores)"


def format_table(rows: Sequence[Sequence[str]]) -> str:
    """Rows of text cells, the first column left-aligned, the others right-aligned."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
                     for row in rows)


def int_at_least(low: int) -> Callable[[str], int]:
    """An argparse type: an integer >= ``low``."""
    def parse(text: str) -> int:
        value = int(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"must be an integer >= {low}, got {text}")
        return value
    return parse
