"""Each detection cell's ``config.py``: a shipped config (``_base_``) with the study's data, classes, sizes and
schedule.

Every value is written as a plain literal; the class names come from the COCO-format annotation file, so any
COCO-format dataset works. ``--set coco-retinanet.KEY=VALUE`` merges ``KEY`` (dotted) into the same file.
"""
from __future__ import annotations

import ast
import functools
import json
from pathlib import Path
from typing import Any

from .errors import StudyError
from .grid import Cell, Env
from .rows import BASELINES, GENOTYPE
from .settings import TaskSettings

CONFIG = "config.py"
OUT_INDICES = {"retinanet": (1, 2, 3), "faster-rcnn": (0, 1, 2, 3)}
NUM_CLASSES = {"retinanet": "model.bbox_head.num_classes", "faster-rcnn": "model.roi_head.bbox_head.num_classes"}
BASE_SCALE = [800, 1333]   # H, W of the 1x configs' Resize (scale=(1333, 800), keep_ratio)
BASE_EPOCHS = 12
ANNOTATIONS = {"train": "annotations/instances_train2017.json", "val": "annotations/instances_val2017.json"}
IMAGES = {"train": "train2017/", "val": "val2017/"}


def final_checkpoint(values: dict[str, Any]) -> str:
    """The checkpoint MMEngine writes last: ``iter_N.pth`` (iteration-based) or ``epoch_N.pth``."""
    return f"iter_{values['iters']}.pth" if values["iters"] else f"epoch_{values['epochs']}.pth"


@functools.lru_cache(maxsize=None)
def coco_classes(root: Path) -> tuple[str, ...]:
    """The category names of the validation annotation file, in category-id order."""
    path = root / ANNOTATIONS["val"]
    try:
        categories = json.loads(path.read_text())["categories"]
        names = tuple(str(c["name"]) for c in sorted(categories, key=lambda c: c["id"]))
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise StudyError(f"cannot read the categories of {path}: {type(e).__name__}: {e}") from None
    if not names:
        raise StudyError(f"{path} lists no categories")
    return names


def config_text(cell: Cell, s: TaskSettings, root: Path, env: Env) -> str:
    """The cell's config file: ``_base_`` the shipped config, then this cell's settings, then ``--set``."""
    detector, v = cell.task.detector, s.values
    classes = coco_classes(root)
    cfg: dict[str, Any] = {}
    backbone = "pdarts" if cell.row.kind == GENOTYPE else BASELINES[cell.row.name]["mmdet"]
    base = env.repo / "detection_configs" / f"{detector}_{backbone}_fpn_1x_coco.py"  # the shipped configs
    _put(cfg, "model.backbone.init_cfg", dict(type="Pretrained", checkpoint=str(cell.weights)))
    if cell.row.kind == GENOTYPE:
        _put(cfg, "model.backbone", dict(genotype=cell.row.spec, init_channels=v["channels"], layers=v["cells"]))
        _put(cfg, "model.neck.in_channels", _level_channels(cell.row.spec, v["channels"], v["cells"], detector))
    _put(cfg, NUM_CLASSES[detector], len(classes))
    _data(cfg, str(root) + "/", classes, v)
    _schedule(cfg, v)
    for key, value in s.raw:
        _put(cfg, key, _literal(value))
    header = [f"# {cell.row.name} x {cell.task.name}, written by tools/transfer.py: the shipped config with this",
              "# study's data, classes, sizes and schedule.", f"_base_ = {str(base)!r}", ""]
    return "\n".join(header + [f"{key} = {_render(value)}" for key, value in cfg.items()]) + "\n"


def _level_channels(genotype: str | None, channels: int, cells: int, detector: str) -> list[int]:
    """The FPN's input channels: the backbone's levels for this genotype and size (PDARTSNet says which)."""
    from backbones.mmdet_pdarts import PDARTSNet  # imports MMDetection: only for detection cells

    backbone = PDARTSNet(genotype, init_channels=channels, layers=cells, out_indices=OUT_INDICES[detector])
    return list(backbone.out_channels)


def _data(cfg: dict[str, Any], root: str, classes: tuple[str, ...], v: dict[str, Any]) -> None:
    """Data roots, class names, images per GPU, workers; pipelines resized unless at the 1x configs' scale."""
    pipelines: dict[str, list[dict[str, Any]]] = {}
    if v["input_size"] != BASE_SCALE:
        scale = (v["input_size"][1], v["input_size"][0])  # MMDetection's (W, H)
        resize = dict(type="Resize", scale=scale, keep_ratio=True)
        load, boxes = dict(type="LoadImageFromFile"), dict(type="LoadAnnotations", with_bbox=True)
        pipelines = {
            "train": [load, boxes, resize, dict(type="RandomFlip", prob=0.5), dict(type="PackDetInputs")],
            "val": [load, resize, boxes, dict(type="PackDetInputs", meta_keys=(
                "img_id", "img_path", "ori_shape", "img_shape", "scale_factor"))],
        }
    for loader, split in (("train_dataloader", "train"), ("val_dataloader", "val"), ("test_dataloader", "val")):
        dataset = dict(data_root=root, metainfo=dict(classes=classes), ann_file=ANNOTATIONS[split],
                       data_prefix=dict(img=IMAGES[split]))
        if pipelines:
            dataset["pipeline"] = pipelines[split]
        _put(cfg, loader, dict(num_workers=v["workers"], persistent_workers=v["workers"] > 0, dataset=dataset))
    _put(cfg, "train_dataloader.batch_size", v["batch_per_gpu"])
    for evaluator in ("val_evaluator", "test_evaluator"):
        _put(cfg, f"{evaluator}.ann_file", root + ANNOTATIONS["val"])


def _schedule(cfg: dict[str, Any], v: dict[str, Any]) -> None:
    """The 1x schedule scaled to ``epochs``, or iteration-based (``iters``: no validation before the test)."""
    if v["iters"]:
        n = v["iters"]
        _put(cfg, "train_cfg", {"_delete_": True, "type": "IterBasedTrainLoop", "max_iters": n, "val_interval": n})
        for key in ("val_cfg", "val_dataloader", "val_evaluator"):
            cfg[key] = None
        _put(cfg, "default_hooks.checkpoint", dict(by_epoch=False, interval=max(n // 4, min(n, 50)), max_keep_ckpts=2))
        _put(cfg, "log_processor", dict(by_epoch=False))
        _put(cfg, "param_scheduler", _steps(n, by_epoch=False, warmup=max(1, min(500, n // 10))))
    elif v["epochs"] != BASE_EPOCHS:
        _put(cfg, "train_cfg.max_epochs", v["epochs"])
        _put(cfg, "param_scheduler", _steps(v["epochs"], by_epoch=True, warmup=500))


def _steps(length: int, by_epoch: bool, warmup: int) -> list[dict[str, Any]]:
    """The 1x schedule's shape: linear warm-up over ``warmup`` iterations, x0.1 at 8/12 and 11/12 of ``length``."""
    milestones = sorted({m for m in (round(length * 8 / 12), round(length * 11 / 12)) if 0 < m < length})
    return [dict(type="LinearLR", start_factor=0.001, by_epoch=False, begin=0, end=warmup),
            dict(type="MultiStepLR", begin=0, end=length, by_epoch=by_epoch, milestones=milestones, gamma=0.1)]


def _put(cfg: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``a.b.c`` in nested dicts; dict values merge into what is there (as MMEngine merges configs)."""
    *parents, leaf = dotted.split(".")
    node = cfg
    for key in parents:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise StudyError(f"detection setting {dotted!r}: {key!r} is not a mapping in the cell's config")
    if isinstance(value, dict) and isinstance(node.get(leaf), dict):
        for key, item in value.items():
            _put(node[leaf], key, item)
    else:
        node[leaf] = value


def _literal(text: str | None) -> Any:
    """A ``--set`` value as MMEngine's ``--cfg-options`` reads it: a Python literal, else the string."""
    if text is None:
        return True
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _render(value: Any, indent: int = 0) -> str:
    """A plain literal as config text: ``dict(key=...)``, on one line when it fits, else one item per line."""
    if isinstance(value, dict) and all(isinstance(k, str) and k.isidentifier() for k in value):
        items = [f"{k}={_render(v, indent + 4)}" for k, v in value.items()]
        return _fit("dict(", items, ")", indent)
    if isinstance(value, list):
        return _fit("[", [_render(v, indent + 4) for v in value], "]", indent)
    return repr(value)


def _fit(start: str, items: list[str], end: str, indent: int) -> str:
    line = start + ", ".join(items) + end
    if len(line) + indent <= 100 and "\n" not in line:
        return line
    pad = " " * (indent + 4)
    return start + "\n" + ",\n".join(pad + item for item in items) + end
