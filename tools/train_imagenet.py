#!/usr/bin/env python
"""Train a cell on ImageNet in the mobile setting with the P-DARTS authors' recipe (see README, "Training").

Reads DATA/train/<class>/*.JPEG and DATA/val/<class>/*.JPEG with timm's dataset and loader.

Examples:
  torchrun --nproc_per_node=8 tools/train_imagenet.py --data /data/imagenet --out runs/in1k   # 250 epochs, batch 256
  tools/train_imagenet.py --data /data/imagenet --genotype runs/x/genotype.json --sched cosine
  torchrun --nproc_per_node=8 tools/train_imagenet.py --out runs/in1k --resume                # continue a killed run
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from timm.data import create_dataset, create_loader
from torch.utils.data import Dataset

from backbones.train_cli import Defaults, run_training, training_parser
from backbones.training import Data, TrainError
from pdarts_wild.distributed import Distributed

DEFAULTS: Defaults = {  # P-DARTS' ImageNet mobile setting (its paper and authors' code)
    "data": "data/imagenet", "input_size": 224, "color_jitter": [0.4, 0.4, 0.4, 0.2], "seed": 0, "workers": 8,
    "model": "pdarts_imagenet", "auxiliary_weight": 0.4, "drop_path": 0.0,
    "epochs": 250, "batch_size": 256, "lr": 0.1, "sched": "linear", "lr_min": 0.0, "momentum": 0.9,
    "weight_decay": 3e-5, "label_smoothing": 0.1, "grad_clip": 5.0,
}
CROP_PCT = 224 / 256  # evaluation: resize to size / CROP_PCT (256), centre-crop size (224)
AUX_SIZES = (224, 256)  # the auxiliary head pools the 7x7 (or 8x8) map of the last reduction cell to 2x2


def build_parser() -> argparse.ArgumentParser:
    p = training_parser("tools/train_imagenet.py", __doc__, DEFAULTS)
    d = p.add_argument_group("data")
    d.add_argument("--data", help=f"folder with train/ and val/ class folders (default: {DEFAULTS['data']})")
    d.add_argument("--input-size", type=int, help=f"training and evaluation crop, a multiple of 32 "
                                                  f"(default: {DEFAULTS['input_size']})")
    d.add_argument("--color-jitter", type=float, nargs=4, metavar=("B", "C", "S", "H"),
                   help=f"brightness, contrast, saturation, hue jitter (default: {DEFAULTS['color_jitter']})")
    return p


def build_data(config: argparse.Namespace, ddp: Distributed) -> Data:
    """RandomResizedCrop + flip + colour jitter for training, resize + centre crop for validation (timm's)."""
    size = config.input_size
    if size < 32 or size % 32:
        raise TrainError(f"--input-size must be a multiple of 32 (the network's total stride), got {size}")
    if config.auxiliary_weight > 0 and size not in AUX_SIZES:
        raise TrainError(f"the auxiliary head needs --input-size 224 or 256, got {size}: add --auxiliary-weight 0")
    *bcs, hue = config.color_jitter
    if min(bcs) < 0 or not 0 <= hue <= 0.5:  # torchvision's ColorJitter
        raise TrainError(f"--color-jitter B C S H needs B, C, S >= 0 and H in [0, 0.5], got {config.color_jitter}")
    train_set, val_set = _datasets(Path(config.data).expanduser())
    loader_args = dict(input_size=(3, size, size), batch_size=config.batch_size // ddp.world_size,
                       interpolation="bilinear", crop_pct=CROP_PCT, num_workers=config.workers,
                       distributed=ddp.world_size > 1, pin_memory=torch.cuda.is_available(), use_prefetcher=False,
                       persistent_workers=False)  # fresh workers each epoch, seeded from the restored RNG on resume
    train = create_loader(train_set, is_training=True, color_jitter=tuple(config.color_jitter), **loader_args)
    val = create_loader(val_set, **loader_args)
    return Data(train, val, len(train_set.reader.class_to_idx), "imagenet", (size, size))


def _datasets(root: Path) -> tuple[Dataset, Dataset]:
    """The train and val folders, with the training split's class indices for both."""
    for split in ("train", "val"):
        if not (root / split).is_dir():
            raise TrainError(f"no {root / split}: --data needs train/<class>/*.JPEG and val/<class>/*.JPEG folders")
    try:
        train = create_dataset("", root=str(root), split="train", is_training=True)
        classes = train.reader.class_to_idx
        unknown = sorted({p.name for p in (root / "val").iterdir() if p.is_dir()} - set(classes))
        if unknown:
            raise TrainError(f"{root / 'val'} has classes that {root / 'train'} lacks: {', '.join(unknown[:5])}")
        return train, create_dataset("", root=str(root), split="val", class_map=classes)
    except RuntimeError as err:  # timm: no images found
        raise TrainError(" ".join(str(err).split())) from err


def main(argv: list[str] | None = None) -> int:
    return run_training(build_parser().parse_args(argv), DEFAULTS, build_data, "train_imagenet")


if __name__ == "__main__":
    sys.exit(main())
