"""Presets and ``--set``: each task's settings in the study's shared terms, plus settings in its tool's own terms.

Shared keys (translated into each tool's syntax by ``studies.commands``/``studies.detection``): ``channels`` and
``cells`` of the network, ``input_size`` (H x W), ``epochs``, ``iters`` (detection: iteration-based training when
> 0), ``batch`` (images per step over all devices), ``batch_per_gpu`` (detection: MMDetection's convention, the
learning rate scaled to the total by ``--auto-scale-lr``) and ``workers``. Any other ``--set TASK.KEY=VALUE`` goes
to the tool as it is: ``--KEY VALUE`` for tools/train_*.py (``TASK.KEY`` alone: the switch ``--KEY``), ``KEY
VALUE`` for tools/train_reid.py, ``KEY=VALUE`` merged into the cell's MMEngine config for detection.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import StudyError, unknown
from .tasks import CLASSIFICATION, DETECTION, IMAGENET, REID, Task

SHARED_KEYS: dict[str, tuple[str, ...]] = {
    CLASSIFICATION: ("channels", "cells", "epochs", "batch", "workers"),
    IMAGENET: ("channels", "cells", "input_size", "epochs", "batch", "workers"),
    DETECTION: ("channels", "cells", "input_size", "epochs", "iters", "batch_per_gpu", "workers"),
    REID: ("channels", "cells", "input_size", "epochs", "batch", "workers"),
}
BACKBONE_KEYS = ("channels", "cells")  # COCO and ReID take them from the ImageNet network they start from
AT_LEAST_ZERO = ("workers", "iters")

# paper: the tools' own defaults (the papers' protocols); quick: minutes per cell on one GPU; tiny: seconds on a CPU.
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "paper": {
        CLASSIFICATION: dict(channels=36, cells=20, epochs=600, batch=128, workers=2),
        IMAGENET: dict(channels=48, cells=14, input_size=[224, 224], epochs=250, batch=256, workers=8),
        DETECTION: dict(input_size=[800, 1333], epochs=12, iters=0, batch_per_gpu=2, workers=2),
        REID: dict(input_size=[256, 128], epochs=60, batch=32, workers=4),
    },
    "quick": {
        CLASSIFICATION: dict(channels=16, cells=8, epochs=10, batch=128, workers=4),
        IMAGENET: dict(channels=16, cells=8, input_size=[64, 64], epochs=1, batch=256, workers=8),
        DETECTION: dict(input_size=[480, 640], epochs=12, iters=1000, batch_per_gpu=4, workers=4),
        REID: dict(input_size=[256, 128], epochs=5, batch=32, workers=4),
    },
    "tiny": {
        CLASSIFICATION: dict(channels=8, cells=5, epochs=1, batch=16, workers=0),
        IMAGENET: dict(channels=8, cells=5, input_size=[64, 64], epochs=1, batch=8, workers=0),
        DETECTION: dict(input_size=[96, 128], epochs=12, iters=4, batch_per_gpu=2, workers=0),
        REID: dict(input_size=[64, 32], epochs=1, batch=8, workers=0),
    },
}
# Settings in the tools' own terms that a preset adds (by detector or tool): tiny detectors are narrow and keep
# every box (an untrained one passes none through the 0.05 score threshold); a tiny gallery has < 10 images.
TINY_NECK = [("model.neck.out_channels", "32")]
EXTRAS: dict[str, dict[str, list[tuple[str, str | None]]]] = {
    "tiny": {
        "retinanet": [*TINY_NECK, ("model.bbox_head.in_channels", "32"), ("model.bbox_head.feat_channels", "32"),
                      ("model.bbox_head.stacked_convs", "1"), ("model.test_cfg.score_thr", "0.0")],
        "faster-rcnn": [*TINY_NECK, ("model.rpn_head.in_channels", "32"), ("model.rpn_head.feat_channels", "32"),
                        ("model.roi_head.bbox_roi_extractor.out_channels", "32"),
                        ("model.roi_head.bbox_head.in_channels", "32"),
                        ("model.roi_head.bbox_head.fc_out_channels", "64"), ("model.test_cfg.rcnn.score_thr", "0.0")],
        REID: [("test.ranks", "[1, 5]")],
    },
}


@dataclass
class TaskSettings:
    """One task's settings: shared ``values``, ``raw`` ones in the tool's terms (in order), which were ``--set``."""

    values: dict[str, Any]
    raw: list[tuple[str, str | None]] = field(default_factory=list)
    explicit: set[str] = field(default_factory=set)

    def record(self) -> dict[str, Any]:
        return {"settings": self.values, "tool_settings": [list(item) for item in self.raw]}


def resolve_settings(tasks: list[Task], preset: str, sets: list[str]) -> dict[str, TaskSettings]:
    """Every task's settings: the preset, then ``--set``; COCO and ReID take the ImageNet network's channels and
    cells unless set for them."""
    if preset not in PRESETS:
        raise unknown("preset", preset, PRESETS)
    overrides = _parse_sets(sets, tasks)
    result: dict[str, TaskSettings] = {}
    for task in tasks:
        extras = EXTRAS.get(preset, {}).get(task.detector or task.tool, [])
        s = TaskSettings(dict(PRESETS[preset][task.tool]), list(extras))
        for key, value in overrides.get(task.name, []):
            if key in SHARED_KEYS[task.tool]:
                s.values[key] = _typed(task, key, value)
                s.explicit.add(key)
            else:
                s.raw.append((key, value))
        result[task.name] = s
    imagenet = result["imagenet"].values if "imagenet" in result else PRESETS[preset][IMAGENET]
    for task in tasks:
        if task.needs_imagenet:
            s = result[task.name]
            s.values.update({k: imagenet[k] for k in BACKBONE_KEYS if k not in s.explicit})
    return result


def _parse_sets(sets: list[str], tasks: list[Task]) -> dict[str, list[tuple[str, str | None]]]:
    """``TASK.KEY=VALUE`` (or ``TASK.KEY``, a switch) per task, in the order given."""
    names = [task.name for task in tasks]
    parsed: dict[str, list[tuple[str, str | None]]] = {}
    for item in sets:
        target, has_value, value = item.partition("=")
        task, dot, key = target.partition(".")
        if not dot or not key.strip() or not task:
            raise StudyError(f"--set {item!r}: expected TASK.KEY=VALUE, e.g. imagenet.epochs=90 or "
                             "market1501.train.lr=0.00035")
        if task not in names:
            raise StudyError(f"--set {item!r}: {task!r} is not one of --tasks ({', '.join(names)})")
        parsed.setdefault(task, []).append((key.strip(), value if has_value else None))
    return parsed


def _typed(task: Task, key: str, value: str | None) -> Any:
    """A shared setting's value: ``input_size`` as [H, W] from ``S`` or ``HxW``, the others integers."""
    where = f"--set {task.name}.{key}"
    if value is None:
        raise StudyError(f"{where} needs a value ({where}=N)")
    try:
        if key == "input_size":
            sizes = [int(v) for v in value.lower().split("x")]
            size = sizes * 2 if len(sizes) == 1 else sizes
            if len(size) != 2 or min(size) < 1:
                raise ValueError
        number = size[0] if key == "input_size" else int(value)
    except ValueError:
        expected = "S or HxW, e.g. 256x128" if key == "input_size" else "an integer"
        raise StudyError(f"{where}={value}: expected {expected}") from None
    if key == "input_size":
        if task.tool == IMAGENET and size[0] != size[1]:
            raise StudyError(f"{where}={value}: tools/train_imagenet.py trains square crops (--input-size S)")
        return size
    if number < (0 if key in AT_LEAST_ZERO else 1):
        raise StudyError(f"{where}={value}: must be >= {0 if key in AT_LEAST_ZERO else 1}")
    return number
