#!/usr/bin/env python
"""Time one full search step of our supernet against a straightforward baseline (issue 8).

One search step is what tools/search.py does per batch: a first-order architecture step on a
validation batch (forward, backward, Adam step on the alphas), then a weight step on a training
batch (forward, backward, gradient clipping, SGD step), with the optimizers and hyper-parameters of
the config's algorithm (pdarts_wild.config). Ours computes only the gradients each step uses (the
alphas' in the architecture step, the weights' in the weight step); the baseline, as the original
code, computes all of them in both backward passes. "ours" is pdarts_wild.supernet.Supernet in its default
layout for the device (channels-last on CPU, contiguous NCHW on CUDA, as the search); "baseline" is
benchmarks.baseline_supernet.BaselineSupernet in plain NCHW: one module per op and edge, ``none``
included (x * 0), every op computed and summed, plain nn.Conv2d, as the original DARTS / P-DARTS /
PC-DARTS code. Ours also recomputes its ops' activations in the backward pass (its default).

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
float32 misses 1e-5, the check is repeated in float64 and the table says so.

Timing and memory: each (config, variant) runs in a fresh process (multiprocessing spawn): build
the model, its optimizers and the two batches, then --warmup steps and --steps timed steps; step_ms
is the median step, img_per_s = batch / median step (training images per second, as search.log).
peak_mb is the memory the steps need on top of the built model and data (activations, gradients,
optimizer state, allocator caches): on CPU the peak resident set size during the steps (Linux
VmHWM, reset through /proc/self/clear_refs once the model is built) minus the resident set size
then; on CUDA torch.cuda.max_memory_allocated during the steps minus memory_allocated then.
speedup = ours img/s / baseline img/s; memory_ratio = ours peak_mb / baseline peak_mb.

Examples:
  tools/bench_search.py                                       # all configs, CPU, 1 thread, batch 64
  tools/bench_search.py --configs pdarts-s1,pc-darts --json bench.json
  tools/bench_search.py --device cuda --steps 20
  tools/bench_search.py --configs darts --channels 8 --layers 3 --batch 4 --warmup 0 --steps 1   # seconds
"""
from __future__ import annotations

import argparse
import json
import sys
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
from pdarts_wild.config import SearchConfig, resolve_config
from pdarts_wild.ops import UniformMaskDropout
from pdarts_wild.search import run_tool
from pdarts_wild.spaces import CELL_TYPES, DARTS_PRIMITIVES, get_space
from pdarts_wild.supernet import Supernet

TOLERANCE = 1e-5
NUM_CLASSES = 10
IMAGE_SIZE = 32
VARIANTS = ("ours", "baseline")


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
    return torch.channels_last if variant == "ours" and device.type == "cpu" else torch.contiguous_format


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
    torch.manual_seed(settings.seed)
    cls = Supernet if variant == "ours" else BaselineSupernet
    model = cls(**supernet_kwargs(name, settings))
    return model.to(device, memory_format=memory_format(variant, device)).train()


class SearchStep:
    """Ours: one step of tools/search.py. Architect.step (first order: the alphas' gradients only) on the
    valid batch, then the weight step with the architecture fixed (no alpha gradients)."""

    def __init__(self, model: nn.Module, config: SearchConfig) -> None:
        self.model = model
        self.lr = config.lr
        self.grad_clip = config.grad_clip
        self.arch_grad_clip = config.arch_grad_clip
        self.w_opt = torch.optim.SGD(model.weight_parameters(), config.lr, momentum=config.momentum,
                                     weight_decay=config.weight_decay)
        self.a_opt = torch.optim.Adam(model.arch_parameters(), config.arch_lr, betas=config.arch_betas,
                                      weight_decay=config.arch_weight_decay)
        self.architect = Architect(model, self.a_opt, grad_clip=self.arch_grad_clip)  # type: ignore[arg-type]

    def __call__(self, train: tuple[torch.Tensor, torch.Tensor], valid: tuple[torch.Tensor, torch.Tensor]) -> None:
        self.architect.step(train, valid, self.lr, self.w_opt)
        with self.model.gradients_only_for(self.model.weight_parameters()):
            self.weight_step(train)

    def weight_step(self, train: tuple[torch.Tensor, torch.Tensor]) -> None:
        self.w_opt.zero_grad(set_to_none=True)
        F.cross_entropy(self.model(train[0]), train[1]).backward()
        nn.utils.clip_grad_norm_(self.w_opt.param_groups[0]["params"], self.grad_clip)
        self.w_opt.step()


class OriginalSearchStep(SearchStep):
    """The baseline: the same step as the original DARTS code takes it, each backward pass computing every
    gradient (the weights' in the architecture step, the alphas' in the weight step) and dropping half."""

    def __call__(self, train: tuple[torch.Tensor, torch.Tensor], valid: tuple[torch.Tensor, torch.Tensor]) -> None:
        self.a_opt.zero_grad(set_to_none=True)
        F.cross_entropy(self.model(valid[0]), valid[1]).backward()
        if self.arch_grad_clip > 0:
            nn.utils.clip_grad_norm_(self.model.arch_parameters(), self.arch_grad_clip)
        self.a_opt.step()
        self.weight_step(train)


# ------------------------------------------------------------------------------------------ checking


def compare(ours: Supernet, baseline: BaselineSupernet, batch: tuple[torch.Tensor, torch.Tensor],
            seed: int) -> tuple[float, float]:
    """(|loss difference|, max |gradient difference|) of one forward and backward of both on ``batch``.

    Every parameter of ours is compared with its baseline counterpart; an alpha gradient of ours is
    compared over the full (edges x primitives) matrix, the baseline's scattered into it (zeros where
    an edge lacks the op)."""
    losses = []
    for model in (ours, baseline):
        model.zero_grad(set_to_none=True)
        torch.manual_seed(seed)  # the same skip-dropout masks: both run their dropouts in the same order
        loss = F.cross_entropy(model(batch[0]), batch[1])
        loss.backward()
        losses.append(loss.item())
    key_map = state_key_map(ours)
    theirs = dict(baseline.named_parameters())
    worst = 0.0
    for name, param in ours.named_parameters():
        if name.startswith("alphas."):
            cell = name.split(".", 1)[1]
            expanded = torch.zeros_like(param.grad)
            for e, ops in enumerate(ours.candidates[cell]):
                for k, op in enumerate(ops):
                    expanded[e, ours.space.primitives.index(op)] = theirs[name].grad[e, k]
            other = expanded
            if not torch.equal(compact_alphas(ours, cell, expanded), theirs[name].grad):
                raise AssertionError("alpha gradient layout")  # scatter and gather disagree: a bug here
        else:
            other = theirs[key_map[name]].grad
        mine = param.grad
        if mine is None and other is None:
            continue
        if mine is None or other is None:
            return abs(losses[0] - losses[1]), float("inf")
        worst = max(worst, (mine - other).abs().max().item())
    return abs(losses[0] - losses[1]), worst


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


def measure(name: str, variant: str, settings: Settings) -> dict[str, float]:
    """Median step time, images/s and peak step memory of ``variant`` on config ``name``, in this process."""
    torch.set_num_threads(settings.threads)
    device = torch.device(settings.device)
    model = build_model(name, variant, settings, device)
    step = (SearchStep if variant == "ours" else OriginalSearchStep)(model, search_config(name))
    train, valid = batches(settings, device, memory_format(variant, device))
    return timed_steps(lambda: step(train, valid), device, settings.warmup, settings.steps, settings.batch,
                       f"{name} {variant}")


def measure_in_child(name: str, variant: str, settings: Settings) -> dict[str, float]:
    """:func:`measure` in a fresh process."""
    return in_child(f"{name} {variant}", measure, name, variant, settings)


def _check_child(name: str, settings: Settings) -> dict[str, Any]:
    torch.set_num_threads(settings.threads)
    return check_config(name, settings)


def run_benchmark(names: list[str], settings: Settings) -> dict[str, dict[str, Any]]:
    """Check, then time both variants of each config; the --json record."""
    results: dict[str, dict[str, Any]] = {}
    for n, name in enumerate(names, 1):
        progress(f"[{n}/{len(names)}] {name}: checking ours against the baseline on identical weights and batch")
        check = in_child(f"{name} check", _check_child, name, settings)  # ours and baseline in one process
        progress(f"{name}: check {check['dtype']} {check['memory_format']}: max |grad diff| "
                 f"{check['max_abs_grad_diff']:.2e}, |loss diff| {check['loss_diff']:.2e}")
        record: dict[str, Any] = {}
        for variant in VARIANTS:
            record[variant] = r = measure_in_child(name, variant, settings)
            progress(f"{name} {variant}: {r['step_ms']:.0f} ms/step, {r['img_per_s']:.2f} img/s, peak {r['peak_mb']:.0f} MB")
        ours, base = record["ours"], record["baseline"]
        record["speedup"] = ours["img_per_s"] / base["img_per_s"]
        record["memory_ratio"] = ours["peak_mb"] / base["peak_mb"] if base["peak_mb"] > 0 else float("nan")
        record["max_abs_grad_diff"] = check["max_abs_grad_diff"]
        record["check"] = {k: check[k] for k in ("dtype", "memory_format", "loss_diff")}
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
    columns = ("config", "ours ms", "ours img/s", "ours MB", "base ms", "base img/s", "base MB", "speedup",
               "mem ratio", "max|grad diff|", "checked in")
    rows = [columns]
    for name, r in results.items():
        o, b = r["ours"], r["baseline"]
        rows.append((name, f"{o['step_ms']:.0f}", f"{o['img_per_s']:.2f}", f"{o['peak_mb']:.0f}", f"{b['step_ms']:.0f}",
                     f"{b['img_per_s']:.2f}", f"{b['peak_mb']:.0f}", f"{r['speedup']:.2f}x", f"{r['memory_ratio']:.2f}",
                     f"{r['max_abs_grad_diff']:.1e}", f"{r['check']['dtype']} {r['check']['memory_format']}"))
    return format_table(rows)


# ------------------------------------------------------------------------------------------ command line


def config_names(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in CONFIGS]
    if unknown or not names:
        raise BenchError(f"unknown config {', '.join(map(repr, unknown)) or '(none given)'}; known: {', '.join(CONFIGS)}")
    return names


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tools/bench_search.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated configs (default: all: {','.join(CONFIGS)})")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="default: cpu")
    p.add_argument("--batch", type=int_at_least(2), default=64, help="images per batch, training and validation (default: 64)")
    p.add_argument("--threads", type=int_at_least(1), default=1, help="torch.set_num_threads (default: 1)")
    p.add_argument("--warmup", type=int_at_least(0), default=2, help="untimed steps first (default: 2)")
    p.add_argument("--steps", type=int_at_least(1), default=5, help="timed steps; the median is reported (default: 5)")
    p.add_argument("--channels", type=int_at_least(2), default=16,
                   help="initial channels (default: 16, the papers'; pc-darts needs a multiple of 8)")
    p.add_argument("--layers", type=int_at_least(3), help="cells of every config instead of its own (for quick tests)")
    p.add_argument("--seed", type=int, default=0, help="seed of the weights and batches (default: 0)")
    p.add_argument("--json", metavar="FILE",
                   help='write {config: {"ours": {"step_ms", "img_per_s", "peak_mb"}, "baseline": {...}, "speedup", '
                        '"memory_ratio", "max_abs_grad_diff", "check": {"dtype", "memory_format", "loss_diff"}}}')
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    failed = []

    def body() -> None:
        names = config_names(args.configs)
        if args.device == "cuda" and not torch.cuda.is_available():
            raise BenchError("--device cuda: no CUDA GPU is visible to PyTorch; use --device cpu")
        settings = Settings(args.device, args.batch, args.channels, args.layers, args.threads, args.warmup, args.steps,
                            args.seed)
        try:
            results = run_benchmark(names, settings)
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
