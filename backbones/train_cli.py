"""Command-line pieces shared by tools/train_cifar.py and tools/train_imagenet.py: flags, run folder, model, main."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import timm
import torch
import torch.distributed as dist
from timm.utils import random_seed

from pdarts_wild.cli import ToolParser, range_problem
from pdarts_wild.data import DataError
from pdarts_wild.files import atomic_write
from pdarts_wild.genotype import GenotypeError
from pdarts_wild.messages import unknown_name
from pdarts_wild.distributed import Distributed, init_distributed
from pdarts_wild.search import SearchError, resolve_device, run_tool
from pdarts_wild.zoo import resolve_genotype

from .complexity import complexity
from .run_record import genotype_label
from .schedulers import SCHEDULES
from .timm_pdarts import MODEL_NAMES as DARTS_MODELS
from .timm_pdarts import PUBLISHED_GENOTYPES, SETTINGS, model_name
from .training import CONFIG, Data, Trainer, TrainError, prepare_run_dir

RUN_FLAGS = ("out", "resume", "device", "progress")
TIMM_LISTING = "timm.list_models() (ours: tools/model_info.py --list)"
# Settings of the DARTS-family models only; other timm models refuse them (the two losses' defaults become 0).
DARTS_ONLY = {"genotype": "--genotype", "init_channels": "--init-channels", "layers": "--layers",
              "auxiliary_weight": "--auxiliary-weight", "drop_path": "--drop-path"}
DARTS_DEFAULTS_IGNORED = ("auxiliary_weight", "drop_path")
PUBLISHED_CELL = {model_name(g, s): g for g in PUBLISHED_GENOTYPES for s in SETTINGS}  # pdarts_c10 -> PDARTS
DataBuilder = Callable[[argparse.Namespace, Distributed], Data]
# A tool's recipe: setting -> value, or a function of the settings filled in before it (dict order) whose
# docstring the help shows.
Defaults = dict[str, Any]


def training_parser(prog: str, doc: str | None, defaults: Defaults) -> argparse.ArgumentParser:
    """A parser with the flags both tools share, all None when left out (``defaults`` only shows in the help)."""
    p = ToolParser(prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Settings left out take the papers' values shown above.")
    d = {k: v.__doc__ if callable(v) else v for k, v in defaults.items()}
    run = p.add_argument_group("run")
    run.add_argument("--out", type=Path, help="run folder (default: runs/MODEL[-GENOTYPE]-seedN-TIME, GENOTYPE: the "
                                              "--genotype name, its search folder, or 'custom'); never overwritten")
    run.add_argument("--resume", action="store_true", help="continue the training in --out from its last epoch")
    run.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda if available)")
    run.add_argument("--no-progress", dest="progress", action="store_false", default=None, help="no progress bar")
    run.add_argument("--seed", type=int, help=f"random seed (default: {d['seed']})")
    run.add_argument("--workers", type=int, help=f"data-loader processes per process (default: {d['workers']})")
    run.add_argument("--amp", action="store_true", default=None,
                     help="mixed precision: float16 autocast and loss scaling (CUDA only)")
    run.add_argument("--channels-last", action=argparse.BooleanOptionalAction,
                     help="channels-last tensors (default: on for CPU, where it is several times faster; off for CUDA)")
    run.add_argument("--compile", action="store_true", default=None,
                     help="torch.compile the training forward (first steps slower while it compiles; see BENCHMARKS.md)")

    m = p.add_argument_group("model", "Any timm model trains (e.g. the baselines resnet50, mobilenetv2_100); the "
                                      "options below --model apply to the DARTS-family models (pdarts_c10, "
                                      "darts_v2_imagenet, ...) only: other models refuse them and train without an "
                                      "auxiliary head or drop path.")
    m.add_argument("--model", help=f"timm model name (default: {d['model']})")
    m.add_argument("--genotype", help="published genotype name (PDARTS, DARTS_V2, ...), genotype.json or DARTS string "
                                      "(default: the model's own)")
    m.add_argument("--init-channels", type=int,
                   help="channels of the first cells (default: the model's, 36 CIFAR / 48 ImageNet)")
    m.add_argument("--layers", type=int, help="number of cells (default: the model's, 20 CIFAR / 14 ImageNet)")
    m.add_argument("--auxiliary-weight", type=float, help=f"weight of the auxiliary head's loss; 0 builds no "
                                                           f"auxiliary head (default: {d['auxiliary_weight']})")
    m.add_argument("--drop-path", type=float,
                   help=f"final drop-path probability, ramped linearly from 0 (default: {d['drop_path']})")

    o = p.add_argument_group("optimisation")
    o.add_argument("--epochs", type=int, help=f"epochs (default: {d['epochs']})")
    o.add_argument("--batch-size", type=int, help=f"batch over all processes; each of N processes loads 1/N "
                                                  f"(default: {d['batch_size']})")
    o.add_argument("--lr", type=float, help=f"SGD learning rate (default: {d['lr']})")
    o.add_argument("--sched", choices=SCHEDULES,
                   help=f"lr schedule per epoch: linear = P-DARTS' ImageNet decay with a 5-epoch tail, cosine and poly "
                        f"(power 1) = timm's (default: {d['sched']})")
    o.add_argument("--lr-min", type=float, help=f"final lr of cosine / poly (default: {d['lr_min']})")
    o.add_argument("--warmup-epochs", type=int,
                   help="warm-up epochs (default: 5 when --batch-size exceeds 256, else 0)")
    o.add_argument("--momentum", type=float, help=f"SGD momentum (default: {d['momentum']})")
    o.add_argument("--weight-decay", type=float,
                   help=f"weight decay of every parameter (default: {d['weight_decay']})")
    o.add_argument("--label-smoothing", type=float,
                   help=f"label smoothing of both heads' loss (default: {d['label_smoothing']})")
    o.add_argument("--grad-clip", type=float, help=f"gradient-norm clip, 0 = off (default: {d['grad_clip']})")
    return p


def run_training(args: argparse.Namespace, defaults: Defaults, build_data: DataBuilder, tool: str) -> int:
    """The tools' main: settings, run folder, model, data and loop; ``error: ...`` and exit 2 on bad input.

    ``tool`` names the tool in metrics.json (``train_cifar``, ``train_imagenet``)."""
    run = {k: getattr(args, k) for k in RUN_FLAGS}
    config = argparse.Namespace(**{k: v for k, v in vars(args).items() if k not in RUN_FLAGS})

    def train() -> None:
        device = resolve_device(run["device"])
        settings = _settings(config, defaults, run, device, tool)
        ddp = init_distributed(device)
        if ddp.world_size > 1:
            dist.barrier()  # every process has checked the run folder before the first one writes to it
        _build_trainer(settings, run["out"], run["resume"], device, ddp, build_data, run["progress"], tool).run()

    return run_tool(train, (DataError, GenotypeError, SearchError, TrainError),
                    lambda: f"continue with the same command plus --resume --out {run['out']}")


def _settings(config: argparse.Namespace, defaults: Defaults, run: dict[str, Any], device: torch.device,
              tool: str) -> argparse.Namespace:
    """The checked settings of a new run or the saved ones of a resumed run; fills ``run['out']``."""
    config = _resumed(config, run, device, tool) if run["resume"] else _new(config, defaults, run, device, tool)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if config.batch_size % world_size:
        raise TrainError(f"--batch-size {config.batch_size} does not split evenly over {world_size} processes")
    return config


def _resumed(config: argparse.Namespace, run: dict[str, Any], device: torch.device, tool: str) -> argparse.Namespace:
    if run["out"] is None:
        raise TrainError("--resume needs --out RUN_FOLDER (the folder of the training to continue)")
    saved = prepare_run_dir(run["out"], True, tool, vars(config))
    saved.pop("tool", None)
    given = sorted(k for k, v in vars(config).items() if v is not None)
    if given:
        print(f"note: --resume uses the settings saved in {run['out']}; ignoring {', '.join(given)}", file=sys.stderr)
    resumed = argparse.Namespace(**saved)
    try:
        _check(resumed, device)  # a config.json edited by hand, or saved before a check existed
    except TrainError as e:
        raise TrainError(f"{run['out'] / CONFIG}: {e}") from None
    return resumed


def _new(config: argparse.Namespace, defaults: Defaults, run: dict[str, Any], device: torch.device,
         tool: str) -> argparse.Namespace:
    for key, value in defaults.items():  # --model is filled before the DARTS settings (dict order)
        if getattr(config, key) is None:
            if key in DARTS_DEFAULTS_IGNORED and config.model not in DARTS_MODELS:
                value = 0.0
            setattr(config, key, value(config) if callable(value) else value)
    if config.warmup_epochs is None:
        config.warmup_epochs = 5 if config.batch_size > 256 else 0  # the authors warm up only above batch 256
    if config.channels_last is None:
        config.channels_last = device.type == "cpu"
    config.amp = bool(config.amp)
    config.compile = bool(config.compile)
    label = f"-{genotype_label(config.genotype)}" if config.genotype else ""
    _check(config, device)
    if run["out"] is None:
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise TrainError("under torchrun, give --out so that every process writes to the same folder")
        run["out"] = Path("runs") / f"{config.model}{label}-seed{config.seed}-{time.strftime('%Y%m%d-%H%M%S')}"
    prepare_run_dir(run["out"], False, tool, vars(config))
    return config


def _check(c: argparse.Namespace, device: torch.device) -> None:
    """One-line errors for settings that cannot work, before config.json is written (a run folder whose saved
    settings fail would fail again on --resume)."""
    problem = range_problem(
        positive={"--lr": c.lr},
        non_negative={"--auxiliary-weight": c.auxiliary_weight, "--grad-clip": c.grad_clip, "--lr-min": c.lr_min,
                      "--weight-decay": c.weight_decay},
        fractions={"--drop-path": c.drop_path, "--label-smoothing": c.label_smoothing, "--momentum": c.momentum},
        positive_counts={"--epochs": c.epochs, "--batch-size": c.batch_size, "--init-channels": c.init_channels,
                         "--layers": c.layers},
        counts={"--warmup-epochs": c.warmup_epochs, "--workers": c.workers})
    if problem:
        raise TrainError(problem)
    if not 0 <= c.seed < 2**32:  # numpy's seeds
        raise TrainError(f"--seed must be in [0, 2**32), got {c.seed}")
    if c.amp and device.type != "cuda":
        raise TrainError("--amp needs a CUDA device")
    if not timm.is_model(c.model):
        raise TrainError(unknown_name("model", c.model, timm.list_models(), TIMM_LISTING))
    if c.model not in DARTS_MODELS:
        given = [flag for key, flag in DARTS_ONLY.items() if getattr(c, key)]  # unset, or 0 for the two weights
        if given:
            raise TrainError(f"{', '.join(given)} only apply to the DARTS-family models (pdarts_c10, ...): "
                             f"{c.model} is a plain timm model")
    if c.genotype is not None:
        c.genotype = resolve_genotype(c.genotype).to_string()  # names and files become the DARTS string


def model_args(config: argparse.Namespace, num_classes: int) -> dict[str, Any]:
    """Keyword arguments of ``timm.create_model(config.model, **model_args)``; unset sizes keep the model's.
    Models outside the DARTS family take only ``num_classes``."""
    if config.model not in DARTS_MODELS:
        return {"num_classes": num_classes}
    args: dict[str, Any] = {"num_classes": num_classes, "auxiliary": config.auxiliary_weight > 0,
                            "drop_path_rate": config.drop_path}
    optional = {"genotype": config.genotype, "C": config.init_channels, "layers": config.layers}
    args.update({k: v for k, v in optional.items() if v is not None})
    return args


def run_info(tool: str, config: argparse.Namespace, kwargs: dict[str, Any], data: Data) -> dict[str, Any]:
    """The fields of metrics.json known before training: the network, its genotype, data set, size and cost."""
    genotype = config.genotype
    if genotype is None and config.model in PUBLISHED_CELL:
        genotype = resolve_genotype(PUBLISHED_CELL[config.model]).to_string()
    with torch.device("meta"):  # counted without allocating anything; the auxiliary head is left out
        network = timm.create_model(config.model, **{k: v for k, v in kwargs.items() if k != "auxiliary"})
    return {"tool": tool, "model": config.model, "genotype": genotype, "dataset": data.dataset,
            "input_size": list(data.input_size), **complexity(network, data.input_size)}


def _build_trainer(config: argparse.Namespace, out: Path, resume: bool, device: torch.device, ddp: Distributed,
                   build_data: DataBuilder, progress: bool | None, tool: str) -> Trainer:
    random_seed(config.seed, ddp.rank)
    data = build_data(config, ddp)
    if len(data.train) == 0:  # both tools' training loaders drop the last, incomplete batch
        raise TrainError(f"--batch-size {config.batch_size} is more than the {len(data.train.dataset)} training images "
                         "(the last incomplete batch is dropped): lower --batch-size")
    kwargs = model_args(config, data.num_classes)
    model = timm.create_model(config.model, **kwargs)  # importing this package registered the DARTS models
    info = run_info(tool, config, kwargs, data) if ddp.main else {}
    trainer = Trainer(config, out, model, kwargs, data, device, ddp, progress, info)
    if ddp.main and not resume:  # once everything is built: a run folder holds only settings that work
        out.mkdir(parents=True, exist_ok=True)
        atomic_write(out / CONFIG, json.dumps({"tool": tool, **vars(config)}, indent=2) + "\n")
    return trainer
