"""What a study is made of: its rows × tasks as cells, each a folder ``OUT/<row>/<task>/``, and where it runs."""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from .rows import Row
from .settings import TaskSettings
from .tasks import Task

REPO = Path(__file__).resolve().parents[1]  # the checkout whose tools/ the cells run


@dataclass(frozen=True)
class Env:
    """Where the cells' commands run: the Python of this study (its venv's mim and torchrun beside it), the
    checkout's tools, and the GPUs each cell gets (0: CPU only)."""

    gpus: int
    python: Path = Path(sys.executable)
    repo: Path = REPO

    def bin(self, name: str) -> Path:
        """A console script of this Python's environment (mim, torchrun)."""
        return self.python.parent / name


@dataclass(frozen=True)
class Cell:
    """One (row, task): ``weights`` is the ImageNet checkpoint it starts from (COCO, ReID), ``depends_on`` the
    ImageNet cell that must finish first (None with --pretrained)."""

    row: Row
    task: Task
    folder: Path
    weights: Path | None = None
    depends_on: Cell | None = None

    @property
    def key(self) -> str:
        return f"{self.row.name}/{self.task.folder}"


@dataclass
class Study:
    """The checked grid: rows, tasks (ImageNet first), settings per task, data folders and ImageNet weights given."""

    out: Path
    rows: list[Row]
    tasks: list[Task]
    settings: dict[str, TaskSettings]
    data: dict[str, Path]
    pretrained: dict[str, Path]
    preset: str
    env: Env
    cells: list[Cell] = field(default_factory=list)
