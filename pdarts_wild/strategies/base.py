"""What every search strategy provides to the search loop."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

from ..genotype import Genotype
from ..nb201 import NB201Arch
from ..spaces import Candidates, SearchSpace
from ..supernet import Supernet

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

    genotype: Genotype | NB201Arch
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Growth:
    """What the search loop offers a strategy at an epoch boundary to change the supernet (see Strategy.grow)."""

    model: Supernet  # the supernet being trained
    build: Callable[[Candidates], Supernet]  # a fresh, randomly initialised supernet of this stage holding these ops
    loss: Callable[[Supernet], float]  # mean training loss on the weight half: no grad, train-mode BN, stats restored


class Strategy:
    """Base strategy: one stage, no pruning, no skip-connect dropout. Subclasses override the parts they change."""

    name: ClassVar[str]
    # Settings of this algorithm that others ignore: given to another algorithm, they are refused, not recorded as
    # if applied. Several stages (--layers with several values) are the P-DARTS strategy's alone.
    OWN_SETTINGS: ClassVar[tuple[str, ...]] = ()
    MULTI_STAGE: ClassVar[bool] = False

    def __init__(self, config: Any) -> None:
        self.config = config

    def stages(self) -> list[StagePlan]:
        raise NotImplementedError

    @classmethod
    def check_space(cls, space: SearchSpace) -> None:
        """``ValueError`` saying why this algorithm cannot search ``space`` (default: it can search any)."""

    def skip_dropout(self, stage: StagePlan, epoch: int) -> float:
        """Rate of the skip-connect dropout during ``epoch`` of ``stage``."""
        return 0.0

    def prune(self, candidates: Candidates, alphas: AlphaTable, stage: StagePlan) -> Candidates:
        """Candidate ops of the next stage, given the ending stage's weights."""
        return candidates

    def grow(self, epoch: int, growth: Growth) -> Supernet | None:
        """Before ``epoch`` of a stage: the supernet to train from now on (its weights kept, its optimizers,
        schedule and architect started afresh), or None to go on with ``growth.model`` unchanged."""
        return None

    def derive(self, alphas: AlphaTable, candidates: Candidates, edge_scale: EdgeScale = None) -> Derivation:
        """The genotype from the final op weights (and PC-DARTS edge weights, where the supernet has them)."""
        raise NotImplementedError
