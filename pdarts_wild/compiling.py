"""torch.compile of the supernet's search cells, and how many graphs it has compiled.

A search step at 16 channels and 32x32 images is thousands of small kernels; on a GPU its time goes to
launches and Python rather than arithmetic. Compiling fuses each chain (ReLU, convs, BatchNorm, the
weighted sums) into few kernels, and ``mode="reduce-overhead"`` replays them as CUDA graphs.

Each search cell is compiled in place (``nn.Module.compile``, regional compilation): cells of one structure
and shape share a graph, so a 17-cell stage traces about 9 cells, and the stem and classifier (a few kernels)
stay eager. A cell gets one graph per kind of pass it runs: the weight step (weights train, alphas fixed), the
architecture step (the other way round) and the evaluation; steps after the first of each kind compile nothing.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn

COMPILE_MODES = ("default", "reduce-overhead")  # torch.compile's modes: plain, and with CUDA graphs
BACKENDS = ("inductor", "aot_eager")  # aot_eager: trace and differentiate without generating kernels (quick checks)
RECOMPILE_LIMIT = 64  # graphs per stage: about 9 distinct cells x 3 kinds of pass; torch's default (8) is too few


def compile_cells(model: nn.Module, mode: str = "default", backend: str = "inductor") -> None:
    """Compile every search cell of ``model`` (a Supernet) in place, static shapes, with ``mode`` (inductor only)."""
    if mode not in COMPILE_MODES or backend not in BACKENDS:
        raise ValueError(f"compile mode {mode!r} / backend {backend!r}: choose from {COMPILE_MODES} / {BACKENDS}")
    torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, RECOMPILE_LIMIT)
    options = {"mode": mode} if backend == "inductor" else {}
    for cell in model.search_cells():
        cell.compile(backend=backend, dynamic=False, **options)


def forget_compiled() -> None:
    """Drop every compiled graph (and CUDA graph) of this process: a new supernet is about to replace the old."""
    torch._dynamo.reset()


def compiled_graphs() -> int:
    """Graphs torch.compile has compiled in this process so far (a step that compiled raises it)."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def step_marker(mode: str | None) -> None:
    """Before each step with CUDA graphs: tell torch that a new step begins, so that it may overwrite the memory of
    the last one's outputs (the step has read them: losses are ``.item()``-ed, gradients accumulated)."""
    if mode == "reduce-overhead":
        torch.compiler.cudagraph_mark_step_begin()


class CompileClock:
    """The time, graphs and images of the steps that compiled graphs, kept apart from the other steps' pace."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.graphs = 0
        self.images = 0

    @contextmanager
    def step(self, images: int) -> Iterator[None]:
        """Around one step (ending in a synchronising read, such as ``loss.item()``) of ``images`` images."""
        graphs, start = compiled_graphs(), time.perf_counter()
        yield
        new = compiled_graphs() - graphs
        if new:
            self.seconds += time.perf_counter() - start
            self.graphs += new
            self.images += images
