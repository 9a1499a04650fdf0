"""The time the rest of a search will take, from the pace measured so far.

Stages differ in cells and ops per edge (P-DARTS: 5 cells of 7 computed ops, then 11 of 4, then 17 of 2), and
epochs differ in work: weights-only epochs, epochs with an architecture step per batch, and validation
passes. The pace of each (stage, kind of pass) is measured as seconds per image; what has not been measured yet
is estimated: a stage's weight-step pace from the latest measured stage scaled by ``cost`` (cells x computed ops
per edge: on a GPU the kernels a step launches, on a CPU about its arithmetic), the other kinds from the weight
step times the ratio measured in an earlier stage, or at first times :data:`FIRST_RATIOS`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Mapping, Sequence

if TYPE_CHECKING:
    from .strategies import StagePlan

KINDS = ("weights", "arch", "valid")  # weights-only epoch; an epoch with an architecture step per batch; validation
# Before any measurement: an architecture step is one more forward and backward pass (an epoch of both takes about
# twice a weights-only one); validation is a forward pass (about a third of a weight step's forward and backward).
FIRST_RATIOS = {"weights": 1.0, "arch": 2.0, "valid": 1 / 3}


@dataclass(frozen=True)
class Work:
    """Images of one kind of pass still to run in ``stage``."""

    stage: int
    kind: str
    images: int


@dataclass
class Pace:
    """Seconds per image measured per (stage, kind), and each measured stage's cost."""

    seconds: dict[tuple[int, str], float] = field(default_factory=dict)
    costs: dict[int, float] = field(default_factory=dict)

    def record(self, stage: int, kind: str, seconds: float, images: int, cost: float) -> None:
        if images > 0 and seconds > 0:
            self.seconds[stage, kind] = seconds / images
            self.costs[stage] = cost

    def remaining(self, work: list[Work], costs: list[float]) -> float | None:
        """Seconds that ``work`` will take (``costs``: every stage's cost, measured or planned); None before any
        measurement."""
        if not self.seconds:
            return None
        return sum(w.images * self.per_image(w.stage, w.kind, costs) for w in work)

    def per_image(self, stage: int, kind: str, costs: list[float]) -> float:
        if (stage, kind) in self.seconds:
            return self.seconds[stage, kind]
        return self._weights_pace(stage, costs) * self._ratio(kind)

    def _weights_pace(self, stage: int, costs: list[float]) -> float:
        """The weight step's seconds per image in ``stage``: measured, or from its other kinds, or scaled from the
        latest measured stage by cost."""
        mine = [(kind, s) for (st, kind), s in self.seconds.items() if st == stage]
        if mine:
            kind, s = mine[-1]
            return s / self._ratio(kind)
        ref = max(st for st, _ in self.seconds)
        return self._weights_pace(ref, costs) * costs[stage] / self.costs[ref]

    def _ratio(self, kind: str) -> float:
        """Seconds per image of ``kind`` over the weight step's, from the latest stage that measured both."""
        for stage in sorted({st for st, _ in self.seconds}, reverse=True):
            if (stage, kind) in self.seconds and (stage, "weights") in self.seconds:
                return self.seconds[stage, kind] / self.seconds[stage, "weights"]
        return FIRST_RATIOS[kind]


def supernet_cost(layers: int, candidates: Mapping[str, Sequence[Sequence[str]]]) -> float:
    """A supernet's cost: cells x mean computed ops per edge (``none`` computes nothing)."""
    edges = [ops for cell_edges in candidates.values() for ops in cell_edges]
    return layers * sum(len(ops) - ("none" in ops) for ops in edges) / len(edges)


def planned_costs(plan: Sequence[StagePlan], stage: int, candidates: Mapping[str, Sequence[Sequence[str]]],
                  primitives: Sequence[str]) -> list[float]:
    """Every stage's cost while ``stage`` runs with ``candidates``: up to it, scaled from its supernet by cells; a
    later stage after a pruning, from the ops each edge will keep."""
    now = supernet_cost(plan[stage].layers, candidates) / plan[stage].layers
    return [p.layers * (now if s <= stage or plan[s - 1].keep_ops is None
                        else plan[s - 1].keep_ops - ("none" in primitives)) for s, p in enumerate(plan)]


def work_left(plan: Sequence[StagePlan], stage: int, epoch: int, train_images: int, valid_images: int,
              valid_last: int | None) -> list[Work]:
    """The passes of the epochs after epoch ``epoch`` of ``stage``: each epoch's training (with architecture steps
    once its alphas are no longer frozen) and, in the last ``valid_last`` epochs of a stage (None: all), validation."""
    work = []
    for s in range(stage, len(plan)):
        p = plan[s]
        for e in range(epoch + 1 if s == stage else 0, p.epochs):
            work.append(Work(s, "arch" if e >= p.arch_frozen_epochs else "weights", train_images))
            if valid_last is None or e >= p.epochs - valid_last:
                work.append(Work(s, "valid", valid_images))
    return work


def format_duration(seconds: float) -> str:
    """``1:02:03`` (hours, minutes, seconds)."""
    minutes, s = divmod(round(seconds), 60)
    hours, m = divmod(minutes, 60)
    return f"{hours}:{m:02d}:{s:02d}"
