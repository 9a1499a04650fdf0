#!/usr/bin/env python
"""Train a cell on CIFAR-10/100 with the papers' evaluation protocol (see README, "Training").

Examples:
  tools/train_cifar.py                                         # P-DARTS cell, CIFAR-10, 600 epochs
  tools/train_cifar.py --dataset cifar100                      # the CIFAR-100 network (pdarts_c100)
  tools/train_cifar.py --genotype runs/x/genotype.json         # your searched cell
  tools/train_cifar.py --out runs/c10 --resume                 # continue a killed training
  torchrun --nproc_per_node=2 tools/train_cifar.py --out runs/ddp   # DDP; --batch-size is split over the processes
"""
from __future__ import annotations

import argparse
import sys

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from backbones.train_cli import Defaults, run_training, training_parser
from backbones.training import Data, TrainError
from pdarts_wild.data import build_search_dataset, build_test_dataset
from pdarts_wild.distributed import Distributed

MODELS = {"cifar10": "pdarts_c10", "cifar100": "pdarts_c100"}
IMAGE_SIZE = (32, 32)


def default_model(config: argparse.Namespace) -> str:
    """pdarts_c10 or pdarts_c100 by --dataset"""
    return MODELS[config.dataset]


DEFAULTS: Defaults = {  # P-DARTS' CIFAR evaluation (its authors' train_cifar.py)
    "dataset": "cifar10", "data": "data", "cutout": 16, "seed": 0, "workers": 2,
    "model": default_model, "auxiliary_weight": 0.4, "drop_path": 0.3,
    "epochs": 600, "batch_size": 128, "lr": 0.025, "sched": "cosine", "lr_min": 0.0, "momentum": 0.9,
    "weight_decay": 3e-4, "label_smoothing": 0.0, "grad_clip": 5.0,
}


def build_parser() -> argparse.ArgumentParser:
    p = training_parser("tools/train_cifar.py", __doc__, DEFAULTS)
    d = p.add_argument_group("data")
    d.add_argument("--dataset", choices=sorted(MODELS), help=f"dataset (default: {DEFAULTS['dataset']})")
    d.add_argument("--data", help="folder with the official files, downloaded there by torchvision when missing "
                                  f"(default: {DEFAULTS['data']})")
    d.add_argument("--cutout", type=int, help=f"cutout length, 0 = off (default: {DEFAULTS['cutout']})")
    return p


def build_data(config: argparse.Namespace, ddp: Distributed) -> Data:
    """Training split with crop, flip and cutout; test split only normalised; loaders sharded under DDP."""
    if config.cutout < 0:
        raise TrainError(f"--cutout must be >= 0 (0 = off), got {config.cutout}")
    train, info = build_search_dataset(config.dataset, config.data, cutout=config.cutout)
    test, _ = build_test_dataset(config.dataset, config.data)
    return Data(_loader(train, config, ddp, True), _loader(test, config, ddp, False), info.num_classes,
                config.dataset, IMAGE_SIZE)


def _loader(dataset: Dataset, config: argparse.Namespace, ddp: Distributed, train: bool) -> DataLoader:
    """Training drops the last incomplete batch, as timm's ImageNet loader does: a last batch of one image breaks
    BatchNorm in the auxiliary head (50,000 images, --batch-size 78 on 2 processes). The authors' loader keeps it,
    harmless at their 50,000 / 128 (a last batch of 80); here at most batch - 1 shuffled images sit out an epoch."""
    sampler = DistributedSampler(dataset, ddp.world_size, ddp.rank, shuffle=train) if ddp.world_size > 1 else None
    return DataLoader(dataset, config.batch_size // ddp.world_size, shuffle=train and sampler is None,
                      sampler=sampler, num_workers=config.workers, pin_memory=torch.cuda.is_available(),
                      drop_last=train)


def main(argv: list[str] | None = None) -> int:
    return run_training(build_parser().parse_args(argv), DEFAULTS, build_data, "train_cifar")


if __name__ == "__main__":
    sys.exit(main())
