"""``--set TASK.KEY=VALUE`` in a tool's own terms, checked against the tool before anything runs.

A typo would otherwise surface only when its cell runs, maybe days after the ImageNet cells, and the corrected
argument would then make another study of the same folder. The train tools are asked their own argparse options
(``build_parser()``: the names, switches, types and choices of their command lines), tools/train_reid.py its
config's keys and value types (``DEFAULTS``, ``merge``); a detection key goes into the cell's ``config.py``, so it
must be a dotted Python name. Keys the study sets itself are refused, naming the shared key that sets them.
"""
from __future__ import annotations

import argparse
import copy
import functools
import importlib.util
import keyword
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from pdarts_wild.messages import describe, name_hint

from .errors import StudyError
from .grid import REPO
from .settings import TaskSettings
from .tasks import CLASSIFICATION, DETECTION, IMAGENET, REID, TOOL_SCRIPTS, Task

# What the cells' command lines set themselves (studies.commands), and the shared key that sets it, if any.
STUDY_FLAGS: dict[str, str | None] = {
    "--epochs": "epochs", "--batch-size": "batch", "--workers": "workers", "--init-channels": "channels",
    "--layers": "cells", "--input-size": "input_size", "--dataset": None, "--data": None, "--out": None,
    "--resume": None, "--device": None, "--genotype": None, "--model": None, "--no-progress": None}
STUDY_REID_KEYS: dict[str, str | None] = {
    "train.max_epoch": "epochs", "train.batch_size": "batch", "data.workers": "workers",
    "model.init_channels": "channels", "model.layers": "cells", "data.height": "input_size",
    "data.width": "input_size", "data.save_dir": None, "data.root": None, "data.sources": None, "data.targets": None,
    "model.name": None, "model.genotype": None, "model.pretrained": None, "model.pretrained_path": None,
    "model.resume": None, "use_gpu": None}


def check_tool_settings(tasks: list[Task], settings: dict[str, TaskSettings]) -> None:
    """A ``StudyError`` for the first setting in a tool's own terms that its tool would refuse."""
    check = {CLASSIFICATION: _check_flag, IMAGENET: _check_flag, REID: _check_reid_key, DETECTION: _check_config_key}
    for task in tasks:
        for key, value in settings[task.name].raw:
            check[task.tool](task, key, value)


def _where(task: Task, key: str, value: str | None) -> str:
    return f"--set {task.name}.{key}" + ("" if value is None else f"={value}")


def _study_sets(task: Task, key: str, value: str | None, shared: str | None) -> StudyError:
    use = f"; use the shared key {task.name}.{shared}" if shared else ""
    return StudyError(f"{_where(task, key, value)}: the study sets this itself{use}")


def _check_flag(task: Task, key: str, value: str | None) -> None:
    """An option of tools/train_cifar.py or tools/train_imagenet.py, with a value its type and choices accept."""
    flag = key if key.startswith("-") else "--" + key.replace("_", "-")
    if flag in STUDY_FLAGS:
        raise _study_sets(task, key, value, STUDY_FLAGS[flag])
    options = _options(TOOL_SCRIPTS[task.tool])
    action = options.get(flag)
    if action is None:
        known = sorted({o.lstrip("-") for o in options if o.startswith("--") and o not in STUDY_FLAGS} - {"help"})
        raise StudyError(f"{_where(task, key, value)}: no option {flag} in {TOOL_SCRIPTS[task.tool]} "
                         f"({name_hint(flag.lstrip('-'), known, TOOL_SCRIPTS[task.tool] + ' --help')})")
    if action.nargs == 0:
        if value is not None:
            raise StudyError(f"{_where(task, key, value)}: {flag} is a switch: --set {task.name}.{key} alone")
        return
    if value is None:
        raise StudyError(f"{_where(task, key, value)}: {flag} takes a value ({_where(task, key, 'VALUE')})")
    values = value.split() if action.nargs not in (None, "?") else [value]
    for item in values:
        try:
            typed = action.type(item) if callable(action.type) else item
        except (TypeError, ValueError, argparse.ArgumentTypeError) as e:
            kind = {int: "takes an integer ", float: "takes a number "}.get(action.type, "")  # type: ignore[arg-type]
            raise StudyError(f"{_where(task, key, value)}: {flag} {kind}({describe(e)})") from None
        if action.choices is not None and typed not in action.choices:
            raise StudyError(f"{_where(task, key, value)}: {flag} takes one of "
                             f"{', '.join(map(str, action.choices))}")


@functools.lru_cache(maxsize=None)
def _options(script: str) -> dict[str, argparse.Action]:
    """The tool's option strings and their actions, from the tool's own ``build_parser()``."""
    parser = _tool_module(script).build_parser()
    return {option: action for action in parser._actions for option in action.option_strings}


def _check_reid_key(task: Task, key: str, value: str | None) -> None:
    """A key of tools/train_reid.py's config, with a value of its default's type."""
    if key in STUDY_REID_KEYS:
        raise _study_sets(task, key, value, STUDY_REID_KEYS[key])
    tool = _tool_module(TOOL_SCRIPTS[REID])
    keys = _flat_keys(tool.DEFAULTS)
    if key not in keys:
        known = [k for k in keys if k not in STUDY_REID_KEYS]
        raise StudyError(f"{_where(task, key, value)}: no config key {key} in {TOOL_SCRIPTS[REID]} "
                         f"({name_hint(key, known, TOOL_SCRIPTS[REID] + ' DEFAULTS')})")
    update: dict[str, Any] = tool.parse_value(value) if value is not None else True
    for part in reversed(key.split(".")):
        update = {part: update}
    try:
        tool.merge(copy.deepcopy(tool.DEFAULTS), update)
    except tool.ConfigError as e:
        raise StudyError(f"{_where(task, key, value)}: {describe(e)}") from None


def _flat_keys(config: dict[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for name, value in config.items():
        keys += _flat_keys(value, f"{prefix}{name}.") if isinstance(value, dict) else [prefix + name]
    return keys


def _check_config_key(task: Task, key: str, value: str | None) -> None:
    """A dotted name for the cell's MMEngine config file (the file is Python: nothing else may enter it)."""
    if not all(part.isidentifier() and not keyword.iskeyword(part) for part in key.split(".")):
        raise StudyError(f"{_where(task, key, value)}: a detection setting is a dotted config key of Python names, "
                         "e.g. optim_wrapper.optimizer.lr")


@functools.lru_cache(maxsize=None)
def _tool_module(script: str) -> ModuleType:
    """A tool script of this repository, imported (not run) under a name of its own."""
    path = Path(REPO) / script
    spec = importlib.util.spec_from_file_location(f"pdarts_wild_tool_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module
