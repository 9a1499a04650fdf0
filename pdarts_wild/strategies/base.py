"""What every search strategy provides to the search loop."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..genotype import Genotype
from ..spaces import Candidates

AlphaTable = dict[str, list[dict[str, float]]]
EdgeScale = dict[str, list[float]] | None


@dataclass(frozen=True)
class StagePlan:
    """One search stage: a freshly built supernet trained for ``epochs`` epochs."""

    layers: int
    epochs: int
    arch_frozen_epochs: int = 0
    skip_dropout: float = 0.0
    keep_ops: int | None = None  # ops each edge keeps when the stage ends (None: no pruning)


@dataclass
class Derivation:
    """A search's result: the genotype to use, and what else the algorithm wants recorded."""

    genotype: Genotype
    extras: dict[str, Any] = field(default_factory=dict)


class Strategy:
    """Base strategy: one stage, no pruning, no skip-connect dropout. Subclasses override the parts they change."""

    name: ClassVar[str]

    def __init__(self, config: Any) -> None:
        self.config = config

    def stages(self) -> list[StagePlan]:
        raise NotImplementedError

    def skip_dropout(self, stage: StagePlan, epoch: int) -> float:
        """Rate of the skip-connect dropout during ``epoch`` of ``stage``."""
        return 0.0

    def prune(self, candidates: Candidates, alphas: AlphaTable, stage: StagePlan) -> Candidates:
        """Candidate ops of the next stage, given the ending stage's weights."""
        return candidates

    def derive(self, alphas: AlphaTable, candidates: Candidates, edge_scale: EdgeScale = None) -> Derivation:
        """The genotype from the final op weights (and PC-DARTS edge weights, where the supernet has them)."""
        raise NotImplementedError
