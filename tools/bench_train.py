#!/usr/bin/env python
"""Training throughput of the evaluation networks with and without the speed options (issue 8).

One training step is what tools/train_cifar.py / train_imagenet.py do per batch: forward in train
mode (with the auxiliary head, weight 0.4, for the DARTS-family models; any other timm model, such as
resnet18, as the tools build it: its defaults), cross-entropy, backward, SGD step. Each variant is one
combination of the options the training tools offer, measured in a fresh process on the same
random batch; every variant is compared with "plain" (NCHW, float32, eager):

  plain          NCHW, float32, eager
  channels-last  --channels-last (the CPU default of the training tools)
  compile        torch.compile of the forward (--compile; compiling counts as warm-up, it takes minutes)
  amp            float16 autocast with loss scaling (--amp, CUDA only)
  Variants combine with "+", e.g. channels-last+compile, amp+channels-last.

step_ms is the median timed step, img_per_s = batch / step_ms, peak_mb the memory the steps need
above the built model and batch (CUDA max_memory_allocated; on the CPU the peak resident set size),
warmup_s the warm-up steps' time (with compile, mostly the compilation).

Examples:
  tools/bench_train.py                                          # pdarts_c10 (C=36, 20 cells), CPU, batch 32
  tools/bench_train.py --device cuda --batch 96 --variants plain,channels-last,amp,amp+channels-last,compile
  tools/bench_train.py --models pdarts_imagenet --device cuda --batch 128 --image-size 224
  tools/bench_train.py --channels 8 --layers 5 --batch 4 --warmup 0 --steps 1 --variants plain,channels-last
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from typing import Any

import timm
import torch
from torch import nn

import backbones  # noqa: F401  (registers the DARTS-family timm models)
from backbones.timm_pdarts import MODEL_NAMES as DARTS_MODELS
from backbones.training import AuxiliaryLoss
from benchmarks.measure import BenchError, device_name, format_table, in_child, int_at_least, progress, timed_steps
from pdarts_wild.cli import ToolParser
from pdarts_wild.messages import describe, unknown_name
from pdarts_wild.search import run_tool
from pdarts_wild.zoo import LISTING

OPTIONS = ("channels-last", "compile", "amp")
AUXILIARY_WEIGHT = 0.4


@dataclass(frozen=True)
class Settings:
    device: str = "cpu"
    batch: int = 32
    image_size: int | None = None  # None: the model's own (32 CIFAR, 224 ImageNet)
    channels: int | None = None
    layers: int | None = None
    threads: int = 1
    warmup: int = 2
    steps: int = 5


def variant_options(variant: str) -> set[str]:
    """The options of a variant name ("plain" or options joined by "+"); BenchError for unknown ones."""
    options = set() if variant == "plain" else set(variant.split("+"))
    unknown = options.difference(OPTIONS)
    if unknown:
        raise BenchError(f"unknown option(s) {', '.join(sorted(unknown))} in variant {variant!r}; "
                         f"options: {', '.join(OPTIONS)} (joined by '+'), or plain")
    return options


def build_model(model_name: str, settings: Settings) -> tuple[nn.Module, int]:
    """The model as the training tools build it (the DARTS family with its auxiliary head and --channels /
    --layers, other timm models with their defaults), and the image size: --image-size or the model's own."""
    sizes = {k: v for k, v in (("C", settings.channels), ("layers", settings.layers)) if v is not None}
    model = timm.create_model(model_name, **({"auxiliary": True, **sizes} if model_name in DARTS_MODELS else {}))
    return model, settings.image_size or model.pretrained_cfg["input_size"][-1]


def check_model(model_name: str, settings: Settings) -> None:
    """One forward on the meta device (nothing allocated or computed): an image size the network cannot take
    is one error line here, not a traceback from the measuring process."""
    with torch.device("meta"):
        model, size = build_model(model_name, settings)
        try:
            model.train()(torch.empty(2, 3, size, size))
        except (ValueError, RuntimeError) as e:
            raise BenchError(f"{model_name} cannot train at --image-size {size}: {describe(e)}") from None


def measure(model_name: str, variant: str, settings: Settings) -> dict[str, float]:
    """Median training step, images/s and peak memory of ``model_name`` with ``variant``'s options."""
    torch.set_num_threads(settings.threads)
    torch.manual_seed(0)
    device = torch.device(settings.device)
    options = variant_options(variant)
    model, size = build_model(model_name, settings)
    fmt = torch.channels_last if "channels-last" in options else torch.contiguous_format
    model = model.to(device, memory_format=fmt).train()
    x = torch.randn(settings.batch, 3, size, size, device=device).to(memory_format=fmt)
    y = torch.randint(0, model.num_classes, (settings.batch,), device=device)
    forward: nn.Module = torch.compile(model) if "compile" in options else model
    optimizer = torch.optim.SGD(model.parameters(), lr=0.025, momentum=0.9, weight_decay=3e-4)
    criterion = AuxiliaryLoss(weight=AUXILIARY_WEIGHT)
    scaler = torch.amp.GradScaler(device.type, enabled="amp" in options)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, enabled="amp" in options):
            loss = criterion(forward(x), y)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    return timed_steps(step, device, settings.warmup, settings.steps, settings.batch, f"{model_name} {variant}")


def run_benchmark(models: list[str], variants: list[str], settings: Settings) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    for model_name in models:
        record: dict[str, Any] = {}
        for variant in ["plain", *[v for v in variants if v != "plain"]]:
            record[variant] = r = in_child(f"{model_name} {variant}", measure, model_name, variant, settings)
            r["speedup"] = r["img_per_s"] / record["plain"]["img_per_s"]
            progress(f"{model_name} {variant}: {r['step_ms']:.0f} ms/step, {r['img_per_s']:.1f} img/s, "
                     f"peak {r['peak_mb']:.0f} MB, {r['speedup']:.2f}x plain")
        results[model_name] = record
    return results


def table(results: dict[str, dict[str, Any]]) -> str:
    rows = [("model", "variant", "ms/step", "img/s", "peak MB", "vs plain")]
    for model_name, record in results.items():
        rows += [(model_name, variant, f"{r['step_ms']:.0f}", f"{r['img_per_s']:.1f}", f"{r['peak_mb']:.0f}",
                  f"{r['speedup']:.2f}x") for variant, r in record.items()]
    return format_table(rows)


def build_parser() -> argparse.ArgumentParser:
    p = ToolParser(prog="tools/bench_train.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="pdarts_c10", help="comma-separated timm model names (default: pdarts_c10)")
    p.add_argument("--variants", default="plain,channels-last",
                   help="comma-separated variants, see above; plain is always measured (default: plain,channels-last)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="default: cpu")
    p.add_argument("--batch", type=int_at_least(2), default=32, help="images per step (default: 32)")
    p.add_argument("--image-size", type=int_at_least(8), help="input size (default: the model's, 32 or 224)")
    p.add_argument("--channels", type=int_at_least(2), help="initial channels C (default: the model's)")
    p.add_argument("--layers", type=int_at_least(3), help="cells (default: the model's)")
    p.add_argument("--threads", type=int_at_least(1), default=1, help="torch.set_num_threads (default: 1)")
    p.add_argument("--warmup", type=int_at_least(0), default=2, help="untimed steps first (default: 2)")
    p.add_argument("--steps", type=int_at_least(1), default=5, help="timed steps; the median is reported (default: 5)")
    p.add_argument("--json", metavar="FILE",
                   help='write {model: {variant: {"step_ms", "img_per_s", "peak_mb", "warmup_s", "speedup"}}}')
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def body() -> None:
        models = [m.strip() for m in args.models.split(",") if m.strip()]
        unknown = [m for m in models if not timm.is_model(m)]
        if not models:
            raise BenchError("--models: give at least one model name")
        if unknown:
            raise BenchError(unknown_name("model", unknown[0], timm.list_models("*darts*"), LISTING))
        plain = [m for m in models if m not in DARTS_MODELS]
        if plain and (args.channels or args.layers):
            raise BenchError(f"--channels and --layers only apply to the DARTS-family models (pdarts_c10, ...): "
                             f"{plain[0]} is a plain timm model")
        variants = [v.strip() for v in args.variants.split(",") if v.strip()]
        for variant in variants:
            if "amp" in variant_options(variant) and args.device != "cuda":
                raise BenchError(f"variant {variant!r}: amp needs --device cuda")
        if args.device == "cuda" and not torch.cuda.is_available():
            raise BenchError("--device cuda: no CUDA GPU is visible to PyTorch; use --device cpu")
        settings = Settings(args.device, args.batch, args.image_size, args.channels, args.layers, args.threads,
                            args.warmup, args.steps)
        for model_name in models:
            check_model(model_name, settings)
        results = run_benchmark(models, variants, settings)
        print(f"device {device_name(args.device)} | torch {torch.__version__} | threads {args.threads} | batch "
              f"{args.batch} | {args.warmup} warm-up + {args.steps} timed steps (median)")
        print(table(results))
        if args.json:
            with open(args.json, "w") as f:
                json.dump(results, f, indent=2)

    return run_tool(body, (BenchError,), lambda: "nothing was written")


if __name__ == "__main__":
    sys.exit(main())
