"""The checked grid: every input is checked before anything runs, then ``study.json`` and the cell folders.

A study folder holds one study: the same arguments continue it, different ones are refused (naming what differs).
Finished cells are never touched; the others get their ``command.sh`` (and detection's ``config.py``) rewritten
only when it changed, and a ``status.json`` when they have none.
"""
from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from pdarts_wild.messages import describe, one_line

from . import cells, commands, detection
from .errors import StudyError, unknown
from .grid import Cell, Env, Study
from .rows import GENOTYPE, resolve_rows
from .settings import BACKBONE_KEYS, resolve_settings
from .tasks import DETECTION, IMAGENET, data_paths, dataset_of, parse_tasks
from .tool_options import check_tool_settings

STUDY = "study.json"
FORMAT_VERSION = 1
IMAGENET_WEIGHTS = f"{commands.RUN}/model_final.pth"  # what tools/train_imagenet.py writes last
PACKAGES = ("pdarts-wild", "torch", "torchvision", "timm", "mmengine", "mmcv", "mmdet", "torchreid", "numpy")


@dataclass(frozen=True)
class Request:
    """What ``tools/transfer.py run`` was asked for, as given on the command line."""

    out: Path
    genotypes: str = ""
    baselines: str = ""
    tasks: str = ""
    data_root: Path | None = None
    data: tuple[str, ...] = ()
    preset: str = "paper"
    sets: tuple[str, ...] = ()
    pretrained: tuple[str, ...] = ()
    gpus: int = 0


def plan_study(request: Request) -> Study:
    """Every input checked (names, data folders, weights files, settings, dependencies): a ``StudyError`` otherwise."""
    if request.gpus < 0:
        raise StudyError(f"--gpus must be >= 0, got {request.gpus}")
    rows = resolve_rows(request.genotypes, request.baselines)
    tasks = parse_tasks(request.tasks)
    given = {dataset_of(key): Path(path) for key, path in _pairs(request.data, "--data")}
    data = data_paths(tasks, request.data_root, given)
    settings = resolve_settings(tasks, request.preset, list(request.sets))
    check_tool_settings(tasks, settings)
    names = [row.name for row in rows]
    pretrained: dict[str, Path] = {}
    for name, path in _pairs(request.pretrained, "--pretrained"):
        if name not in names:
            raise unknown("row in --pretrained (not in --genotypes/--baselines)", name, names)
        if not Path(path).expanduser().is_file():
            raise StudyError(f"--pretrained {name}={path}: no such file")
        pretrained[name] = Path(path).expanduser().absolute()
    study = Study(request.out.expanduser().absolute(), rows, tasks, settings, data, pretrained, request.preset,
                  Env(request.gpus))
    study.cells = _cells(study)
    return study


def _pairs(items: tuple[str, ...], flag: str) -> list[tuple[str, str]]:
    pairs = []
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key.strip() or not value.strip():
            raise StudyError(f"{flag} {item!r}: expected NAME=PATH")
        pairs.append((key.strip(), value.strip()))
    return pairs


def _cells(study: Study) -> list[Cell]:
    """Tasks (ImageNet first) x rows; COCO and ReID cells start from --pretrained or wait for the ImageNet cell."""
    found: dict[tuple[str, str], Cell] = {}
    for task in sorted(study.tasks, key=lambda t: t.tool != IMAGENET):  # COCO and ReID start from ImageNet
        for row in study.rows:
            folder = study.out / row.name / task.folder
            weights, depends_on = None, None
            if task.needs_imagenet:
                if row.name in study.pretrained:
                    weights = study.pretrained[row.name]
                elif "imagenet" in study.settings:
                    depends_on = found[(row.name, "imagenet")]
                    weights = depends_on.folder / IMAGENET_WEIGHTS
                    _check_backbone(study, task.name, row.kind)
                else:
                    raise StudyError(f"{task.name} starts from ImageNet weights of {row.name}: add imagenet to --tasks "
                                     f"or give --pretrained {row.name}=FILE")
            found[(row.name, task.name)] = Cell(row, task, folder, weights, depends_on)
    return list(found.values())


def _check_backbone(study: Study, task: str, kind: str) -> None:
    for key in BACKBONE_KEYS if kind == GENOTYPE else ():
        mine, imagenet = study.settings[task].values[key], study.settings["imagenet"].values[key]
        if mine != imagenet:
            raise StudyError(f"{task}.{key}={mine} differs from imagenet.{key}={imagenet}, whose weights {task} starts "
                             "from: set it for imagenet")


# ---------------------------------------------------------------------------------------------- study.json


def definition(study: Study) -> dict[str, Any]:
    """What makes a study this study: a folder holding another one is refused."""
    return {
        "rows": [row.record() for row in study.rows],
        "tasks": [task.name for task in study.tasks],
        "preset": study.preset,
        "gpus": study.env.gpus,
        "settings": {name: {**s.record(), "data": {d: str(study.data[d]) for d in task.datasets}}
                     for task in study.tasks for name, s in [(task.name, study.settings[task.name])]},
        "pretrained": {name: str(path) for name, path in study.pretrained.items()},
    }


def record(study: Study) -> dict[str, Any]:
    """The whole ``study.json``: the definition, the cells and the package versions."""
    return {
        "version": FORMAT_VERSION, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **definition(study),
        "cells": [{"row": c.row.name, "task": c.task.name, "folder": str(c.folder.relative_to(study.out)),
                   "depends_on": c.depends_on.key if c.depends_on else None,
                   "weights": str(c.weights) if c.weights else None} for c in study.cells],
        "versions": {"python": platform.python_version(), **{p: _version(p) for p in PACKAGES}},
    }


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def load_record(out: Path) -> dict[str, Any]:
    """A study folder's ``study.json``."""
    path = out / STUDY
    if not path.is_file():
        raise StudyError(f"{out} holds no study ({STUDY}): start one with tools/transfer.py run --out {out}")
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise StudyError(f"cannot read {path}: {e}") from None
    if not isinstance(saved, dict) or saved.get("version") != FORMAT_VERSION:
        raise StudyError(f"{path} is not a study.json of this version ({FORMAT_VERSION})")
    problem = _record_problem(saved)
    if problem:
        raise StudyError(f"{path} is damaged: {problem}")
    return saved


def _record_problem(saved: dict[str, Any]) -> str | None:
    """What ``status``, ``report`` and the runner would trip over in a ``study.json`` (None: nothing)."""
    def inside(folder: Any) -> bool:  # a cell folder: relative, within the study
        return isinstance(folder, str) and bool(folder) and not Path(folder).is_absolute() and ".." not in \
            Path(folder).parts

    try:
        for row in saved["rows"]:
            search = row.get("search")
            if not isinstance(row["name"], str) or not (search is None or (
                    isinstance(search["valid_acc"], (int, float)) and isinstance(search["file"], str))):
                return f"row {one_line(repr(row), 60)}"
        if not all(isinstance(task, str) for task in saved["tasks"]):
            return "tasks"
        for cell in saved["cells"]:
            if not (isinstance(cell["row"], str) and isinstance(cell["task"], str) and inside(cell["folder"])
                    and (cell["depends_on"] is None or inside(cell["depends_on"]))):
                return f"cell {one_line(repr(cell), 60)}"
    except (KeyError, TypeError, AttributeError) as e:
        return f"{type(e).__name__}: {describe(e)}"
    return None


def check_same(study: Study) -> bool:
    """True when ``study.out`` already holds this study, False when it is new; a ``StudyError`` otherwise."""
    out = study.out
    if out.exists() and not out.is_dir():
        raise StudyError(f"--out {out} is a file, not a folder")
    if not (out / STUDY).exists():
        if out.exists() and any(p.name != ".lock" for p in out.iterdir()):
            raise StudyError(f"{out} is not empty and holds no study ({STUDY}): choose another --out")
        return False
    saved, mine = load_record(out), definition(study)
    differ = [key for key in mine if _canonical(saved.get(key)) != _canonical(mine[key])]
    details = [d for d in (_difference(key, saved.get(key), mine[key]) for key in differ) if d]
    if differ:
        raise StudyError(f"{out} holds another study: {'; '.join(details)} (the same arguments continue it)")
    return True


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def _difference(key: str, saved: Any, mine: Any) -> str:
    """What differs under ``key`` ("" for settings when only the tasks differ, said already)."""
    if key == "rows":
        saved, mine = [r["name"] for r in saved or []], [r["name"] for r in mine]
        if saved == mine:
            return "a genotype's cell differs from study.json's (a genotype file changed?)"
    if key == "settings" and isinstance(saved, dict):
        tasks = [t for t in mine if t in saved and _canonical(saved[t]) != _canonical(mine[t])]
        return f"settings of {', '.join(tasks)} differ" if tasks else ""

    def brief(value: Any) -> str:
        if isinstance(value, dict):
            return ",".join(f"{k}={v}" for k, v in value.items()) or "none"
        return ",".join(map(str, value)) if isinstance(value, list) else str(value)
    return f"{key} {brief(saved)} there, {brief(mine)} now"


def render(study: Study) -> dict[str, dict[str, str]]:
    """Every cell's files (``command.sh``, detection's ``config.py``) by cell key: any StudyError before a write."""
    return {cell.key: _cell_files(study, cell) for cell in study.cells}


def prepare(study: Study, files: dict[str, dict[str, str]]) -> None:
    """Write ``study.json`` (a new study) and every unfinished cell's ``files``; finished cells stay untouched."""
    if not check_same(study):
        _write(study.out / STUDY, json.dumps(record(study), indent=2) + "\n")
    for cell in study.cells:
        cell.folder.mkdir(parents=True, exist_ok=True)
        if cells.read_status(cell.folder).get("state") == cells.FINISHED:
            continue
        for name, text in files[cell.key].items():
            path = cell.folder / name
            if not path.exists() or path.read_text() != text:
                _write(path, text)
        (cell.folder / "command.sh").chmod(0o755)
        if not (cell.folder / cells.STATUS).exists():
            cells.write_status(cell.folder, **cells.new_status(cell))


def _cell_files(study: Study, cell: Cell) -> dict[str, str]:
    settings = study.settings[cell.task.name]
    files = {"command.sh": commands.command_script(cell, settings, study.data, study.env)}
    if cell.task.tool == DETECTION:
        files[detection.CONFIG] = detection.config_text(cell, settings, study.data[cell.task.target], study.env)
    return files


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)

