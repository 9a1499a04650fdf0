#!/usr/bin/env python
"""Time one full search step of our supernet against a straightforward baseline (issue 8).

One search step is what tools/search.py does per batch: a first-order architecture step on a
validation batch (forward, backward, Adam step on the alphas), then a weight step on a training
batch (forward, backward, gradient clipping, SGD step), with the optimizers and hyper-parameters of
the config's algorithm (pdarts_wild.config). Ours computes only the gradients each step uses (the
alphas' in the architecture step, the weights' in the weight step); the baseline, as the original
code, computes all of them in both backward passes. Ours is pdarts_wild.supernet.Supernet in its default
layout for the device (channels-last on CPU, contiguous NCHW on CUDA, as the search), stepped as
tools/search.py steps it (foreach SGD, Adam and clipping); "baseline" is
benchmarks.baseline_supernet.BaselineSupernet in plain NCHW: one module per op and edge, ``none``
included (x * 0), every op computed and summed, plain nn.Conv2d and the optimizers' default kernels, as
the original DARTS / P-DARTS / PC-DARTS code. Ours also recomputes its ops' activations in the backward
pass (its default).

Variants of ours (--variants), each timed against the same baseline:
  eager         as tools/search.py runs it by default
  no-recompute  eager, the ops' activations stored instead of recomputed (--no-recompute)
  compile       the search cells compiled (tools/search.py --compile): compile_s is the warm-up steps' time
                above that of as many timed steps, i.e. the compilation
  cudagraph     compiled and replayed as CUDA graphs (--compile reduce-overhead; CUDA only)
  compile-no-recompute, cudagraph-no-recompute
                the compiled variants with the activations stored: the compiler then decides what to keep for the
                backward pass and recomputes only cheap elementwise ops (does recomputation pay with the compiler?)
Compiled variants take at least 2 warm-up steps (the compilation; the CUDA graphs' recording).

Configs (16 initial channels, 32x32 random images, 10 classes):
  pdarts-s1  P-DARTS stage 1: 5 cells, the 8 DARTS ops on every edge, skip dropout 0.0
  pdarts-s2  P-DARTS stage 2: 11 cells, 5 ops on every edge (none, max_pool_3x3, skip_connect,
             sep_conv_3x3, sep_conv_5x5), skip dropout 0.4
  pdarts-s3  P-DARTS stage 3: 17 cells, 3 ops on every edge (none, skip_connect, sep_conv_3x3), skip dropout 0.7
  darts      DARTS (first order): 8 cells, 8 ops
  pc-darts   PC-DARTS: 8 cells, 8 ops, 1/4 of the channels through the ops, edge normalisation
The stage-2/3 op sets are fixed stand-ins for what pruning keeps (the same on every edge).

Before timing, each config is checked side by side in one process: ours, and the baseline built
from it by baseline_from() (identical weights, alphas set to N(0, 1) so that the op weights differ),
on the same batch and the same dropout seed (the baseline's dropout drawing its masks as ours,
UniformMaskDropout, for the check only), both in ours' layout, in float32: the loss and every
gradient (weights, alphas, betas) must agree within 1e-5, else the tool stops with exit code 1. If
float32 misses 1e-5, the check is repeated in float64 and the table says so. The other variants are
checked after their timed steps, in their own process (compiled: on the graphs their steps compiled), as
their steps compute gradients (a weight pass and an architecture pass, float32, skip dropout off:
compiled, the dropout draws other random numbers) against baseline_from() of their weights. Fused
kernels add in another order, and in a deep supernet BatchNorm amplifies float32 rounding (the
baseline's own float32 gradients differ from its float64 ones by ~1e-3 on pdarts-s1 and ~7e-2 on
pdarts-s3 at batch 64), so a variant must agree within 4x that difference, measured on the same
weights and batch (and at least within 1e-5); a float64 check would compile everything again.

Timing and memory: each (config, variant) runs in a fresh process (multiprocessing spawn): build
the model, its optimizers and the two batches, then --warmup steps and --steps timed steps; step_ms
is the median step, img_per_s = batch / median step (training images per second, as search.log).
peak_mb is the memory the steps need on top of the built model and data (activations, gradients,
optimizer state, allocator caches): on CPU the peak resident set size during the steps (Linux VmHWM,
reset through /proc/self/clear_refs once the model is built) minus the resident set size then; on
CUDA torch.cuda.max_memory_allocated during the steps minus memory_allocated then. Compiled on the CPU,
the compiler's own memory would count, so there it is measured over the timed steps alone, from the end
of the warm-up (free heap memory given back to the system first, glibc's malloc_trim).
speedup = ours img/s / baseline img/s; memory_ratio = ours peak_mb / baseline peak_mb.
cudagraph_skips: graphs that torch left out of CUDA graphs (then replayed as plain compiled kernels).

Examples:
  tools/bench_search.py                                       # all configs, CPU, 1 thread, batch 64
  tools/bench_search.py --configs pdarts-s1,pc-darts --json bench.json
  tools/bench_search.py --device cuda --batch 96 --variants eager,compile,cudagraph --json bench.json
  tools/bench_search.py --configs darts --channels 8 --layers 3 --batch 4 --warmup 0 --steps 1   # seconds
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from benchmarks.baseline_supernet import (
    BaselineSupernet,
    baseline_from,
    compact_alphas,
    state_key_map,
)
from benchmarks.measure import (
    BenchError,
    device_name,
    format_table,
    in_child,
    int_at_least,
    progress,
    timed_steps,
)
from pdarts_wild.architect import Architect
from pdarts_wild.cli import ToolParser
from pdarts_wild.compiling import BACKENDS, compile_cells, step_marker
from pdarts_wild.config import SearchConfig, resolve_config
from pdarts_wild.ops import UniformMaskDropout
from pdarts_wild.search import run_tool, search_optimizers
from pdarts_wild.spaces import CELL_TYPES, DARTS_PRIMITIVES, get_space
from pdarts_wild.supernet import Supernet

TOLERANCE = 1e-5
ROUNDING_FACTOR = 4  # a float32 variant may differ from the baseline by 4x the baseline's own float32 rounding
NUM_CLASSES = 10
IMAGE_SIZE = 32
VARIANT_MODES = {"eager": None, "no-recompute": None, "compile": "default", "cudagraph": "reduce-overhead",
                 "compile-no-recompute": "default", "cudagraph-no-recompute": "reduce-overhead"}  # ours: compile mode
BASELINE = "baseline"


class CheckFailed(Exception):
    """Ours and the baseline disagree on a config."""


@dataclass(frozen=True)
class BenchConfig:
    algorithm: str  # the strategy whose paper settings (layers, dropout, optimizers) apply
    stage: int  # its stage (0-based): layers and skip dropout of that stage
    ops: tuple[str, ...]  # the ops on every edge of both cell types


CONFIGS: dict[str, BenchConfig] = {
    "pdarts-s1": BenchConfig("pdarts", 0, DARTS_PRIMITIVES),
    "pdarts-s2": BenchConfig("pdarts", 1, ("none", "max_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5")),
    "pdarts-s3": BenchConfig("pdarts", 2, ("none", "skip_connect", "sep_conv_3x3")),
    "darts": BenchConfig("darts", 0, DARTS_PRIMITIVES),
    "pc-darts": BenchConfig("pc-darts", 0, DARTS_PRIMITIVES),
}


@dataclass(frozen=True)
class Settings:
    """What every measurement of one run shares."""

    device: str = "cpu"
    batch: int = 64
    channels: int = 16
    layers: int | None = None  # None: each config's own
    threads: int = 1
    warmup: int = 2
    steps: int = 5
    seed: int = 0
    compile_backend: str = "inductor"


# ------------------------------------------------------------------------------------------ building


def search_config(name: str) -> SearchConfig:
    """The paper settings of config ``name``'s algorithm on CIFAR-10 (optimizers, stages, PC-DARTS' K)."""
    return resolve_config(CONFIGS[name].algorithm, "cifar10")


def supernet_kwargs(name: str, settings: Settings) -> dict[str, Any]:
    """Constructor arguments shared by :class:`Supernet` and :class:`BaselineSupernet` for config ``name``."""
    bench, config = CONFIGS[name], search_config(name)
    space = get_space("darts")
    return {
        "space": space,
        "candidates": {cell: [bench.ops] * space.num_edges for cell in CELL_TYPES},
        "num_classes": NUM_CLASSES,
        "channels": settings.channels,
        "layers": settings.layers or config.layers[bench.stage],
        "skip_dropout": config.skip_dropout[bench.stage],
        "partial_channels": config.partial_channels,
        "edge_normalization": config.edge_normalization,
    }


def memory_format(variant: str, device: torch.device) -> torch.memory_format:
    """Ours: channels-last on CPU, NCHW on CUDA (tools/search.py's default); the baseline: always NCHW."""
    return torch.channels_last if variant != BASELINE and device.type == "cpu" else torch.contiguous_format


def batches(settings: Settings, device: torch.device, fmt: torch.memory_format,
            dtype: torch.dtype = torch.float32) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """A training and a validation batch of random images and labels (the same for every variant)."""
    gen = torch.Generator().manual_seed(settings.seed + 1)
    out = []
    for _ in range(2):
        x = torch.randn(settings.batch, 3, IMAGE_SIZE, IMAGE_SIZE, generator=gen, dtype=dtype)
        y = torch.randint(0, NUM_CLASSES, (settings.batch,), generator=gen)
        out.append((x.to(device, memory_format=fmt), y.to(device)))
    return out


def build_model(name: str, variant: str, settings: Settings, device: torch.device) -> nn.Module:
    """The baseline, or ours with ``variant``'s search cells compiled."""
    torch.manual_seed(settings.seed)
    cls = BaselineSupernet if variant == BASELINE else Supernet
    model = cls(**supernet_kwargs(name, settings)).to(device, memory_format=memory_format(variant, device)).train()
    if variant.endswith("no-recompute"):
        model.set_recompute(False)
    if VARIANT_MODES.get(variant) is not None:
        compile_cells(model, VARIANT_MODES[variant], settings.compile_backend)
    return model


class SearchStep:
    """Ours: one step of tools/search.py. Architect.step (first order: the alphas' gradients only) on the
    valid batch, then the weight step with the architecture fixed (no alpha gradients); with CUDA graphs,
    each pass marked as a new step."""

    def __init__(self, model: nn.Module, config: SearchConfig, compile_mode: str | None = None) -> None:
        self.model = model
        self.lr = config.lr
        self.grad_clip = config.grad_clip
        self.arch_grad_clip = config.arch_grad_clip
        self.compile_mode = compile_mode
        self.w_opt, self.a_opt = self.optimizers(model, config)
        self.architect = Architect(model, self.a_opt, grad_clip=self.arch_grad_clip)  # type: ignore[arg-type]

    def optimizers(self, model: nn.Module, config: SearchConfig) -> tuple[torch.optim.SGD, torch.optim.Adam]:
        return search_optimizers(model, config, config.lr)  # type: ignore[arg-type]

    def __call__(self, train: tuple[torch.Tensor, torch.Tensor], valid: tuple[torch.Tensor, torch.Tensor]) -> None:
        step_marker(self.compile_mode)
        self.architect.step(train, valid, self.lr, self.w_opt)
        step_marker(self.compile_mode)
        with self.model.gradients_only_for(self.model.weight_parameters()):
            self.weight_step(train, foreach=True)

    def weight_step(self, train: tuple[torch.Tensor, torch.Tensor], foreach: bool | None = None) -> None:
        self.w_opt.zero_grad(set_to_none=True)
        F.cross_entropy(self.model(train[0]), train[1]).backward()
        nn.utils.clip_grad_norm_(self.w_opt.param_groups[0]["params"], self.grad_clip, foreach=foreach)
        self.w_opt.step()


class OriginalSearchStep(SearchStep):
    """The baseline: the same step as the original DARTS code takes it, each backward pass computing every
    gradient (the weights' in the architecture step, the alphas' in the weight step) and dropping half, with
    the optimizers' and clipping's default kernels."""

    def optimizers(self, model: nn.Module, config: SearchConfig) -> tuple[torch.optim.SGD, torch.optim.Adam]:
        return (torch.optim.SGD(model.weight_parameters(), config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay),
                torch.optim.Adam(model.arch_parameters(), config.arch_lr, betas=config.arch_betas,
                                 weight_decay=config.arch_weight_decay))

    def __call__(self, train: tuple[torch.Tensor, torch.Tensor], valid: tuple[torch.Tensor, torch.Tensor]) -> None:
        self.a_opt.zero_grad(set_to_none=True)
        F.cross_entropy(self.model(valid[0]), valid[1]).backward()
        if self.arch_grad_clip > 0:
            nn.utils.clip_grad_norm_(self.model.arch_parameters(), self.arch_grad_clip)
        self.a_opt.step()
        self.weight_step(train)


# ------------------------------------------------------------------------------------------ checking


def compare(ours: Supernet, baseline: BaselineSupernet, batch: tuple[torch.Tensor, torch.Tensor],
            seed: int, by_step: bool = False, compile_mode: str | None = None) -> tuple[float, float]:
    """(|loss difference|, max |gradient difference|) of a forward and backward pass of both on ``batch``.

    Every parameter of ours is compared with its baseline counterpart; an alpha gradient of ours is
    compared over the full (edges x primitives) matrix, the baseline's scattered into it (zeros where
    an edge lacks the op). ``by_step``: ours computes its gradients as its two steps do, the weights' in
    one pass (alphas fixed) and the architecture's in another (weights fixed), reusing what a compiled
    supernet compiled for its steps (each pass marked as a new step with CUDA graphs, ``compile_mode``)."""
    baseline.zero_grad(set_to_none=True)
    torch.manual_seed(seed)  # the same skip-dropout masks: both run their dropouts in the same order
    loss = F.cross_entropy(baseline(batch[0]), batch[1])
    loss.backward()
    losses = [loss.item()]
    groups = [list(ours.weight_parameters()), ours.arch_parameters()] if by_step else [list(ours.parameters())]
    mine: dict[str, torch.Tensor | None] = dict.fromkeys(name for name, _ in ours.named_parameters())
    for group in groups:
        ours.zero_grad(set_to_none=True)
        torch.manual_seed(seed)
        step_marker(compile_mode)
        with ours.gradients_only_for(group) if by_step else nullcontext():
            loss = F.cross_entropy(ours(batch[0]), batch[1])
            loss.backward()
        losses.append(loss.item())
        # copied at once: a CUDA graph's next replay may reuse the memory of the gradients it returned
        mine.update({name: p.grad.clone() for name, p in ours.named_parameters() if p.grad is not None})
    key_map = state_key_map(ours)
    theirs = dict(baseline.named_parameters())
    worst = 0.0
    for name, param in ours.named_parameters():
        if name.startswith("alphas."):
            cell = name.split(".", 1)[1]
            expanded = torch.zeros_like(param)
            for e, ops in enumerate(ours.candidates[cell]):
                for k, op in enumerate(ops):
                    expanded[e, ours.space.primitives.index(op)] = theirs[name].grad[e, k]
            other = expanded
            if not torch.equal(compact_alphas(ours, cell, expanded), theirs[name].grad):
                raise AssertionError("alpha gradient layout")  # scatter and gather disagree: a bug here
        else:
            other = theirs[key_map[name]].grad
        grad = mine[name]
        if grad is None and other is None:
            continue
        if grad is None or other is None:
            return max(abs(loss - losses[0]) for loss in losses[1:]), float("inf")
        worst = max(worst, (grad - other).abs().max().item())
    return max(abs(loss - losses[0]) for loss in losses[1:]), worst


def float32_rounding(baseline: BaselineSupernet, batch: tuple[torch.Tensor, torch.Tensor], seed: int
                     ) -> tuple[float, float]:
    """(|loss difference|, max |gradient difference|) of the baseline in float32 against a float64 copy of it on
    ``batch``: how far float32 rounding alone moves this computation, the scale for a variant's check."""
    exact = copy.deepcopy(baseline).double()
    runs = []
    for model in (baseline, exact):
        model.zero_grad(set_to_none=True)
        torch.manual_seed(seed)
        loss = F.cross_entropy(model(batch[0].to(next(model.parameters()).dtype)), batch[1])
        loss.backward()
        runs.append((loss.item(), dict(model.named_parameters())))
    (loss32, params32), (loss64, params64) = runs
    worst = max(((params32[name].grad.double() - p.grad).abs().max().item()
                 for name, p in params64.items() if p.grad is not None), default=0.0)
    return abs(loss32 - loss64), worst


def variant_disagreement(name: str, check: dict[str, Any]) -> str | None:
    """Why a variant's check (:func:`check_variant`) fails, or None: each difference from the float32 baseline must
    lie within ROUNDING_FACTOR times the baseline's own float32 rounding, or within TOLERANCE."""
    for key, what in (("loss_diff", "loss difference"), ("max_abs_grad_diff", "max |gradient difference|")):
        rounding = check["float32_rounding"][key]
        if check[key] > max(TOLERANCE, ROUNDING_FACTOR * rounding):
            return (f"{name}: ours and the baseline disagree beyond float32 rounding: {what} {check[key]:.3g} > "
                    f"{ROUNDING_FACTOR} x {rounding:.3g} (the baseline's float32 against float64) and > {TOLERANCE:g}")
    return None


def check_config(name: str, settings: Settings) -> dict[str, Any]:
    """Ours vs baseline_from(ours) on identical weights and batch, float32 then (if needed) float64."""
    device = torch.device(settings.device)
    fmt = memory_format("ours", device)
    for dtype in (torch.float32, torch.float64):
        ours = build_model(name, "ours", settings, device).to(dtype)
        with torch.no_grad():  # distinct op and edge weights, so that a mix-up of ops would show
            gen = torch.Generator().manual_seed(settings.seed + 2)
            for p in ours.arch_parameters():
                p.copy_(torch.randn(p.shape, generator=gen, dtype=dtype))
        baseline = baseline_from(ours).to(memory_format=fmt)
        draw_dropout_masks_as_ours(baseline)
        train, _ = batches(settings, device, fmt, dtype)
        loss_diff, grad_diff = compare(ours, baseline, train, settings.seed + 3)
        result = {"dtype": str(dtype).removeprefix("torch."), "memory_format": _format_name(fmt),
                  "loss_diff": loss_diff, "max_abs_grad_diff": grad_diff}
        del ours, baseline
        if grad_diff <= TOLERANCE and loss_diff <= TOLERANCE:
            return result
    raise CheckFailed(f"{name}: ours and the baseline disagree even in float64: loss difference {loss_diff:.3g}, "
                      f"max |gradient difference| {grad_diff:.3g} > {TOLERANCE:g}")


def draw_dropout_masks_as_ours(baseline: BaselineSupernet) -> None:
    """For the check only: the baseline's skip dropouts (nn.Dropout) draw their masks as ours do
    (UniformMaskDropout: the same distribution from other random numbers), so that with one seed both drop
    the same elements. Timing runs the baseline with nn.Dropout, as the original code."""
    for module in baseline.modules():
        for name, child in module.named_children():
            if type(child) is nn.Dropout:
                setattr(module, name, UniformMaskDropout(child.p))


def _format_name(fmt: torch.memory_format) -> str:
    return "channels_last" if fmt == torch.channels_last else "nchw"


# ------------------------------------------------------------------------------------------ measuring


def measure(name: str, variant: str, settings: Settings) -> dict[str, Any]:
    """Median step time, images/s and peak step memory of ``variant`` on config ``name``, in this process; for a
    compiled variant also its compile time, the check of its graphs and the graphs left out of CUDA graphs."""
    torch.set_num_threads(settings.threads)
    device = torch.device(settings.device)
    model = build_model(name, variant, settings, device)
    mode = VARIANT_MODES.get(variant)
    step = OriginalSearchStep(model, search_config(name)) if variant == BASELINE else \
        SearchStep(model, search_config(name), mode)
    train, valid = batches(settings, device, memory_format(variant, device))
    warmup = settings.warmup if mode is None else max(settings.warmup, 2)
    # on the CPU the compiler's own memory (traced graphs, generated code) would count: the timed steps' peak
    result: dict[str, Any] = timed_steps(lambda: step(train, valid), device, warmup, settings.steps, settings.batch,
                                         f"{name} {variant}", warmup_memory=mode is None or device.type == "cuda")
    warmup_s = result.pop("warmup_s")
    if variant in (BASELINE, "eager"):  # eager is checked before the timing, in float64 if need be
        return result
    if mode is not None:
        from torch._dynamo.utils import counters

        result["compile_s"] = max(warmup_s - warmup * result["step_ms"] / 1000, 0.0)
        result["cudagraph_skips"] = int(counters["inductor"]["cudagraph_skips"])
    result["check"] = check_variant(model, settings, mode)  # type: ignore[arg-type]
    return result


def check_variant(ours: Supernet, settings: Settings, mode: str | None) -> dict[str, Any]:
    """A variant of ours after its steps against baseline_from() of its weights (alphas set to N(0, 1)), computing
    its gradients as its steps do (compiled: on the graphs they compiled), skip dropout off, float32."""
    device = torch.device(settings.device)
    with torch.no_grad():
        gen = torch.Generator().manual_seed(settings.seed + 2)
        for p in ours.arch_parameters():
            p.copy_(torch.randn(p.shape, generator=gen))
    ours.set_skip_dropout(0.0)  # the rate is a tensor under compile: the same graphs
    baseline = baseline_from(ours).to(memory_format=memory_format("eager", device))
    train, _ = batches(settings, device, memory_format("eager", device))
    loss_diff, grad_diff = compare(ours, baseline, train, settings.seed + 3, by_step=True, compile_mode=mode)
    loss_rounding, grad_rounding = float32_rounding(baseline, train, settings.seed + 3)
    return {"dtype": "float32", "memory_format": _format_name(memory_format("eager", device)), "loss_diff": loss_diff,
            "max_abs_grad_diff": grad_diff, "skip_dropout": 0.0,
            "float32_rounding": {"loss_diff": loss_rounding, "max_abs_grad_diff": grad_rounding}}


def measure_in_child(name: str, variant: str, settings: Settings) -> dict[str, Any]:
    """:func:`measure` in a fresh process."""
    return in_child(f"{name} {variant}", measure, name, variant, settings)


def _check_child(name: str, settings: Settings) -> dict[str, Any]:
    torch.set_num_threads(settings.threads)
    return check_config(name, settings)


def run_benchmark(names: list[str], variants: list[str], settings: Settings) -> dict[str, dict[str, Any]]:
    """Check, then time the baseline and each variant of ours on each config; the --json record."""
    results: dict[str, dict[str, Any]] = {}
    for n, name in enumerate(names, 1):
        progress(f"[{n}/{len(names)}] {name}: checking ours against the baseline on identical weights and batch")
        check = in_child(f"{name} check", _check_child, name, settings)  # ours and baseline in one process
        progress(f"{name}: check {check['dtype']} {check['memory_format']}: max |grad diff| "
                 f"{check['max_abs_grad_diff']:.2e}, |loss diff| {check['loss_diff']:.2e}")
        record: dict[str, Any] = {BASELINE: (base := measure_in_child(name, BASELINE, settings))}
        progress(f"{name} baseline: {base['step_ms']:.0f} ms/step, {base['img_per_s']:.2f} img/s, "
                 f"peak {base['peak_mb']:.0f} MB")
        for variant in variants:
            r = measure_in_child(name, variant, settings)
            if variant == "eager":
                r["check"] = {k: check[k] for k in ("dtype", "memory_format", "loss_diff", "max_abs_grad_diff")}
            elif problem := variant_disagreement(f"{name} {variant}", r["check"]):
                raise CheckFailed(problem)
            r["speedup"] = r["img_per_s"] / base["img_per_s"]
            r["memory_ratio"] = r["peak_mb"] / base["peak_mb"] if base["peak_mb"] > 0 else float("nan")
            r["max_abs_grad_diff"] = r["check"]["max_abs_grad_diff"]
            record[variant] = r
            compiled = f", compiled in {r['compile_s']:.0f} s" if "compile_s" in r else ""
            progress(f"{name} {variant}: {r['step_ms']:.0f} ms/step, {r['img_per_s']:.2f} img/s, peak "
                     f"{r['peak_mb']:.0f} MB, {r['speedup']:.2f}x the baseline{compiled}")
        results[name] = record
    return results


# ------------------------------------------------------------------------------------------ output


def header(settings: Settings) -> str:
    layout = "ours channels-last, baseline NCHW" if settings.device == "cpu" else "both NCHW"
    return (f"device {device_name(settings.device)} | torch {torch.__version__} | threads {settings.threads} | "
            f"batch {settings.batch} | channels {settings.channels} | {settings.warmup} warm-up + {settings.steps} "
            f"timed steps (median) | {layout}\n"
            "peak_mb: memory the steps need above the built model and data "
            f"({'peak RSS - RSS before' if settings.device == 'cpu' else 'max_memory_allocated - allocated before'})")


def table(results: dict[str, dict[str, Any]]) -> str:
    columns = ("config", "variant", "ms/step", "img/s", "peak MB", "compile s", "speedup", "mem ratio",
               "max|grad diff|", "checked in")
    rows = [columns]
    for name, record in results.items():
        for variant, r in record.items():
            check = r.get("check")
            rows.append((name, variant, f"{r['step_ms']:.0f}", f"{r['img_per_s']:.2f}", f"{r['peak_mb']:.0f}",
                         f"{r['compile_s']:.0f}" if "compile_s" in r else "-",
                         f"{r['speedup']:.2f}x" if "speedup" in r else "-",
                         f"{r['memory_ratio']:.2f}" if "memory_ratio" in r else "-",
                         f"{r['max_abs_grad_diff']:.1e}" if "max_abs_grad_diff" in r else "-",
                         f"{check['dtype']} {check['memory_format']}" if check else "-"))
    return format_table(rows)


# ------------------------------------------------------------------------------------------ command line


def config_names(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in CONFIGS]
    if unknown or not names:
        raise BenchError(f"unknown config {', '.join(map(repr, unknown)) or '(none given)'}; known: {', '.join(CONFIGS)}")
    return names


def variant_names(text: str, device: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in VARIANT_MODES]
    if unknown or not names:
        raise BenchError(f"unknown variant {', '.join(map(repr, unknown)) or '(none given)'}; known: "
                         f"{', '.join(VARIANT_MODES)}")
    if device != "cuda" and (graphed := [n for n in names if VARIANT_MODES[n] == "reduce-overhead"]):
        raise BenchError(f"variant {graphed[0]} records CUDA graphs: it needs --device cuda")
    return names


def build_parser() -> argparse.ArgumentParser:
    p = ToolParser(prog="tools/bench_search.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated configs (default: all: {','.join(CONFIGS)})")
    p.add_argument("--variants", default="eager",
                   help=f"comma-separated variants of ours: {', '.join(VARIANT_MODES)} (default: eager)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="default: cpu")
    p.add_argument("--batch", type=int_at_least(2), default=64, help="images per batch, training and validation (default: 64)")
    p.add_argument("--threads", type=int_at_least(1), default=1, help="torch.set_num_threads (default: 1)")
    p.add_argument("--warmup", type=int_at_least(0), default=2, help="untimed steps first (default: 2)")
    p.add_argument("--steps", type=int_at_least(1), default=5, help="timed steps; the median is reported (default: 5)")
    p.add_argument("--channels", type=int_at_least(2), default=16,
                   help="initial channels (default: 16, the papers'; pc-darts needs a multiple of 8)")
    p.add_argument("--layers", type=int_at_least(3), help="cells of every config instead of its own (for quick tests)")
    p.add_argument("--seed", type=int, default=0, help="seed of the weights and batches (default: 0)")
    p.add_argument("--compile-backend", choices=BACKENDS, default="inductor",
                   help="of the compiled variants: inductor generates kernels, aot_eager only traces (quick checks of "
                        "the tool; its times say nothing) (default: inductor)")
    p.add_argument("--json", metavar="FILE",
                   help='write {config: {"baseline": {"step_ms", "img_per_s", "peak_mb"}, VARIANT: {"step_ms", '
                        '"img_per_s", "peak_mb", "speedup", "memory_ratio", "max_abs_grad_diff", "check": {"dtype", '
                        '"memory_format", "loss_diff", "max_abs_grad_diff", not eager: "float32_rounding"}, '
                        'compiled: "compile_s", "cudagraph_skips"}, ...}}')
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    failed = []

    def body() -> None:
        names = config_names(args.configs)
        variants = variant_names(args.variants, args.device)
        if args.device == "cuda" and not torch.cuda.is_available():
            raise BenchError("--device cuda: no CUDA GPU is visible to PyTorch; use --device cpu")
        settings = Settings(args.device, args.batch, args.channels, args.layers, args.threads, args.warmup, args.steps,
                            args.seed, args.compile_backend)
        try:
            results = run_benchmark(names, variants, settings)
        except CheckFailed as e:
            print(f"error: {e}", file=sys.stderr)
            failed.append(e)
            return
        print(header(settings))
        print(table(results))
        if args.json:
            with open(args.json, "w") as f:
                json.dump(results, f, indent=2)
                f.write("\n")
            print(f"wrote {args.json}")

    code = run_tool(body, (BenchError, ValueError), lambda: "nothing was written")
    return 1 if failed else code


if __name__ == "__main__":
    sys.exit(main())
