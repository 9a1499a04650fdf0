"""A COCO-format detection dataset whose classes come from its own annotation file.

MMDetection's ``CocoDataset`` keeps COCO's 80 class names unless ``metainfo=dict(classes=...)`` is set: on a
COCO-format file with other categories it finds no annotation at all (and training fails with ``need at least one
array to concatenate``). :class:`CocoFormatDataset` takes the categories of the annotation file, in category-id
order, when no classes are configured; on COCO itself that is COCO's list. The heads' ``num_classes`` must still
match (MMDetection's ``NumClassCheckHook``, enabled in our configs, says so before training).
"""
from __future__ import annotations

from typing import Any

from mmdet.datasets import CocoDataset
from mmdet.datasets.api_wrappers import COCO
from mmdet.registry import DATASETS
from mmdet.visualization.palette import get_palette


@DATASETS.register_module()
class CocoFormatDataset(CocoDataset):
    """``CocoDataset`` with ``metainfo['classes']`` defaulting to the annotation file's category names."""

    def __init__(self, *args: Any, metainfo: Any = None, **kwargs: Any) -> None:
        self._classes_from_file = not (metainfo and "classes" in metainfo)
        super().__init__(*args, metainfo=metainfo, **kwargs)

    def COCOAPI(self, path: str) -> COCO:  # noqa: N802  (CocoDataset's hook for reading the annotation file)
        """The COCO API over ``path`` (read once); sets the classes from its categories when none were given."""
        coco = COCO(path)
        if self._classes_from_file:
            classes = tuple(str(c["name"]) for c in sorted(coco.cats.values(), key=lambda c: c["id"]))
            if not classes:
                raise ValueError(f"{path} defines no categories: set metainfo=dict(classes=...) on the dataset")
            self._metainfo["classes"] = classes
            if len(self._metainfo.get("palette", ())) < len(classes):  # COCO's 80 colours are too few
                self._metainfo["palette"] = get_palette("random", len(classes))
        return coco
