"""The tasks a study runs: which tool trains each, where its data lives and how that is checked, what it reports."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .errors import StudyError, unknown

CLASSIFICATION, IMAGENET, DETECTION, REID = "cifar", "imagenet", "mmdet", "reid"
TOOL_SCRIPTS = {CLASSIFICATION: "tools/train_cifar.py", IMAGENET: "tools/train_imagenet.py",
                REID: "tools/train_reid.py", DETECTION: "mim train/test mmdet"}


@dataclass(frozen=True)
class DataSpec:
    """A dataset as its tool reads it: the folder given to the tool, by default ``ROOT/<default>``."""

    default: str                          # under --data-root; "" is the root itself
    needs: tuple[tuple[str, ...], ...]    # entries the folder must hold: each inner tuple, one of its names
    about: str                            # what the folder holds, for messages and `list`


DATASETS: dict[str, DataSpec] = {
    "cifar10": DataSpec("", (("cifar-10-batches-py", "cifar-10-python.tar.gz"),),
                        "the folder holding cifar-10-batches-py/ (or cifar-10-python.tar.gz)"),
    "cifar100": DataSpec("", (("cifar-100-python", "cifar-100-python.tar.gz"),),
                         "the folder holding cifar-100-python/ (or cifar-100-python.tar.gz)"),
    "imagenet": DataSpec("imagenet", (), "train/<class>/*.JPEG and val/<class>/*.JPEG"),
    "coco": DataSpec("coco", (("annotations/instances_train2017.json",), ("annotations/instances_val2017.json",)),
                     "annotations/instances_{train,val}2017.json, train2017/, val2017/ (any COCO-format classes)"),
    # torchreid's root: each benchmark in its own folder below it, as torchreid's dataset classes read them
    "market1501": DataSpec("", (("market1501",),), "torchreid's root holding market1501/Market-1501-v15.09.15/"),
    "dukemtmcreid": DataSpec("", (("dukemtmc-reid",),), "torchreid's root holding dukemtmc-reid/DukeMTMC-reID/"),
    "msmt17": DataSpec("", (("msmt17",),), "torchreid's root holding msmt17/MSMT17_V1/ (or MSMT17_V2/)"),
}
REID_DATASETS = ("market1501", "dukemtmcreid", "msmt17")


@dataclass(frozen=True)
class Task:
    """One column group of the study: a tool, its datasets (training first, then a cross-dataset target)."""

    name: str
    tool: str
    datasets: tuple[str, ...]
    headline: tuple[str, ...]     # the metrics the report's pivot shows for this task
    detector: str = ""            # detection: "retinanet" or "faster-rcnn"

    @property
    def needs_imagenet(self) -> bool:
        """COCO and ReID start from ImageNet weights: the row's ImageNet cell, or --pretrained."""
        return self.tool in (DETECTION, REID)

    @property
    def folder(self) -> str:
        """The cell folder's name (``market1501>dukemtmcreid`` becomes ``market1501-to-dukemtmcreid``)."""
        return self.name.replace(">", "-to-")

    @property
    def target(self) -> str:
        """The dataset the metrics are measured on."""
        return self.datasets[-1]


TASKS: dict[str, Task] = {t.name: t for t in (
    Task("cifar10", CLASSIFICATION, ("cifar10",), ("top1",)),
    Task("cifar100", CLASSIFICATION, ("cifar100",), ("top1",)),
    Task("imagenet", IMAGENET, ("imagenet",), ("top1",)),
    Task("coco-retinanet", DETECTION, ("coco",), ("bbox_mAP",), "retinanet"),
    Task("coco-faster-rcnn", DETECTION, ("coco",), ("bbox_mAP",), "faster-rcnn"),
    *(Task(name, REID, (name,), ("rank1", "mAP")) for name in REID_DATASETS),
)}


def parse_tasks(spec: str) -> list[Task]:
    """Tasks from ``cifar10,imagenet,market1501>dukemtmcreid``, in that order."""
    names = [name.strip() for name in spec.split(",") if name.strip()]
    if not names:
        raise StudyError("--tasks is empty: name at least one task (list them with tools/transfer.py list)")
    tasks: list[Task] = []
    for name in names:
        task = _cross_dataset(name) if ">" in name else TASKS.get(name)
        if task is None:
            raise unknown("task", name, [*TASKS, "market1501>dukemtmcreid"])
        if task in tasks:
            raise StudyError(f"task {name!r} is listed twice in --tasks")
        tasks.append(task)
    return tasks


def _cross_dataset(name: str) -> Task:
    """``SOURCE>TARGET``: train on one ReID benchmark, test on another."""
    source, _, target = (part.strip() for part in name.partition(">"))
    for dataset in (source, target):
        if dataset not in REID_DATASETS:
            raise StudyError(f"cross-dataset task {name!r}: {dataset!r} is not a ReID benchmark "
                             f"({', '.join(REID_DATASETS)})")
    if source == target:
        raise StudyError(f"cross-dataset task {name!r}: source and target are the same; use the task {source!r}")
    return Task(f"{source}>{target}", REID, (source, target), ("rank1", "mAP"))


def data_paths(tasks: list[Task], root: Path | None, given: Mapping[str, Path]) -> dict[str, Path]:
    """Each needed dataset's folder (``--data NAME=PATH``, else under ``--data-root``), checked to exist."""
    paths: dict[str, Path] = {}
    for task in tasks:
        for name in task.datasets:
            spec = DATASETS[name]
            if name in given:
                path = given[name]
            elif root is not None:
                path = root / spec.default
            else:
                raise StudyError(f"no data for {task.name}: give --data-root ROOT or --data {name}=PATH ({spec.about})")
            _check(name, path.expanduser().absolute(), spec)
            paths[name] = path.expanduser().absolute()
        sources = {paths[name] for name in task.datasets}
        if task.tool == REID and len(sources) > 1:
            raise StudyError(f"{task.name}: torchreid reads both benchmarks from one root, got "
                             f"{', '.join(sorted(map(str, sources)))}")
    return paths


def _check(name: str, path: Path, spec: DataSpec) -> None:
    where = f"--data {name}=PATH" if spec.default == "" else f"ROOT/{spec.default} or --data {name}=PATH"
    if not path.is_dir():
        raise StudyError(f"no {name} data at {path} (expected {spec.about}; {where})")
    for options in spec.needs:
        if not any((path / option).exists() for option in options):
            raise StudyError(f"no {name} data in {path}: {' or '.join(options)} is missing (expected {spec.about})")


def dataset_of(spec: str) -> str:
    """The dataset a ``--data`` key names: a dataset, or a task whose one dataset it is (coco-retinanet: coco)."""
    if spec in DATASETS:
        return spec
    task = TASKS.get(spec)
    if task is None or len(task.datasets) != 1:
        raise unknown("dataset for --data", spec, [*DATASETS, *TASKS])
    return task.datasets[0]
