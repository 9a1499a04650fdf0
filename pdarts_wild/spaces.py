"""Search spaces: the ops each edge of a search cell may hold, and the cell's edge layout."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

CELL_TYPES = ("normal", "reduce")

DARTS_PRIMITIVES = (
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
)

# Per cell type, per edge: the op names an edge holds, in the space's primitive order.
Candidates = dict[str, list[tuple[str, ...]]]


def edge_inputs(steps: int = 4) -> list[tuple[int, int]]:
    """(node, input state) of every edge in alpha-row order; state 0 = c_{k-2}, 1 = c_{k-1}, 2.. = nodes."""
    return [(node, j) for node in range(steps) for j in range(node + 2)]


def node_edges(steps: int = 4) -> list[list[int]]:
    """Edge indices (alpha rows) entering each intermediate node."""
    rows: list[list[int]] = [[] for _ in range(steps)]
    for edge, (node, _) in enumerate(edge_inputs(steps)):
        rows[node].append(edge)
    return rows


@dataclass(frozen=True)
class SearchSpace:
    """A cell search space: the alpha column order and each edge's initial candidate ops."""

    name: str
    primitives: tuple[str, ...]
    steps: int = 4

    @property
    def num_edges(self) -> int:
        return len(edge_inputs(self.steps))

    def ordered(self, ops: Iterable[str]) -> tuple[str, ...]:
        """An edge's op set in the space's column order; ``ValueError`` for an op outside the space."""
        ops = set(ops)
        unknown = ops.difference(self.primitives)
        if unknown or not ops:
            raise ValueError(f"edge ops {sorted(unknown) or '(none)'} are not ops of the {self.name} space: "
                             f"{', '.join(self.primitives)}")
        return tuple(op for op in self.primitives if op in ops)

    def initial_candidates(self) -> Candidates:
        """Every edge of both cell types holds every primitive."""
        return {cell: [self.primitives] * self.num_edges for cell in CELL_TYPES}


SPACES: dict[str, SearchSpace] = {"darts": SearchSpace("darts", DARTS_PRIMITIVES)}


def get_space(name: str) -> SearchSpace:
    """The search space called ``name``; ``ValueError`` lists the known ones."""
    try:
        return SPACES[name]
    except KeyError:
        raise ValueError(f"unknown search space {name!r}; known: {', '.join(SPACES)}") from None
