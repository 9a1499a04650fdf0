"""Search algorithms as small strategies on the one supernet: stage plan, op pruning, derivation."""
from __future__ import annotations

from .base import Derivation, Growth, StagePlan, Strategy
from .darts import DARTS
from .oppdarts import OPPDARTS
from .pcdarts import PCDARTS
from .pdarts import PDARTS
from .rfdarts import RFDARTS, RFPCDARTS

STRATEGIES: dict[str, type[Strategy]] = {
    "darts": DARTS, "pdarts": PDARTS, "pc-darts": PCDARTS, "rf-darts": RFDARTS, "rf-pcdarts": RFPCDARTS,
    "opp-darts": OPPDARTS,
}


def get_strategy(name: str) -> type[Strategy]:
    """The strategy class called ``name``; ``ValueError`` lists the known ones."""
    try:
        return STRATEGIES[name]
    except KeyError:
        raise ValueError(f"unknown algorithm {name!r}; known: {', '.join(STRATEGIES)}") from None


__all__ = ["STRATEGIES", "Derivation", "Growth", "StagePlan", "Strategy", "get_strategy"]
