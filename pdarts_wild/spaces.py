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


def edge_inputs(steps: int = 4, inputs: int = 2) -> list[tuple[int, int]]:
    """(node, input state) of every edge in alpha-row order. DARTS cells (``inputs`` = 2): state 0 = c_{k-2},
    1 = c_{k-1}, 2.. = nodes; NAS-Bench-201 cells (``inputs`` = 1): state 0 = the cell input, 1.. = nodes."""
    return [(node, j) for node in range(steps) for j in range(node + inputs)]


def node_edges(steps: int = 4, inputs: int = 2) -> list[list[int]]:
    """Edge indices (alpha rows) entering each intermediate node."""
    rows: list[list[int]] = [[] for _ in range(steps)]
    for edge, (node, _) in enumerate(edge_inputs(steps, inputs)):
        rows[node].append(edge)
    return rows


@dataclass(frozen=True)
class SearchSpace:
    """A cell search space: the alpha column order and each edge's initial candidate ops.

    ``edge_ops`` gives per cell type, per edge, the ops of spaces whose edges differ (RobustDARTS S1);
    without it every edge holds every primitive. ``topology`` "darts": two-input cells of ``steps`` nodes
    whose outputs are concatenated, normal and reduction cells; "nb201": NAS-Bench-201's one-input cell
    whose last node is the output, one cell type shared by every cell of its fixed macro skeleton.
    """

    name: str
    primitives: tuple[str, ...]
    steps: int = 4
    edge_ops: dict[str, tuple[tuple[str, ...], ...]] | None = None
    topology: str = "darts"

    @property
    def inputs(self) -> int:
        """States a cell starts from: c_{k-2} and c_{k-1} in DARTS cells, the cell input in NAS-Bench-201."""
        return 1 if self.topology == "nb201" else 2

    @property
    def cell_types(self) -> tuple[str, ...]:
        """Cell types with architecture parameters of their own."""
        return ("normal",) if self.topology == "nb201" else CELL_TYPES

    @property
    def edges(self) -> list[tuple[int, int]]:
        """(node, input state) of every edge in alpha-row order (see :func:`edge_inputs`)."""
        return edge_inputs(self.steps, self.inputs)

    @property
    def node_edges(self) -> list[list[int]]:
        return node_edges(self.steps, self.inputs)

    @property
    def num_edges(self) -> int:
        return len(self.edges)

    def ordered(self, ops: Iterable[str]) -> tuple[str, ...]:
        """An edge's op set in the space's column order; ``ValueError`` for an op outside the space."""
        ops = set(ops)
        unknown = ops.difference(self.primitives)
        if unknown or not ops:
            raise ValueError(f"edge ops {sorted(unknown) or '(none)'} are not ops of the {self.name} space: "
                             f"{', '.join(self.primitives)}")
        return tuple(op for op in self.primitives if op in ops)

    def initial_candidates(self) -> Candidates:
        """Each edge's ops when a search starts (every primitive, unless ``edge_ops`` says otherwise)."""
        if self.edge_ops is None:
            return {cell: [self.primitives] * self.num_edges for cell in self.cell_types}
        return {cell: [self.ordered(ops) for ops in self.edge_ops[cell]] for cell in self.cell_types}


def _pairs(text: str) -> tuple[tuple[str, ...], ...]:
    return tuple(tuple(pair.split("+")) for pair in text.split())


# RobustDARTS S1 (Zela et al., ICLR 2020): two ops per edge, edges in alpha-row order.
_S1 = {
    "normal": _pairs("skip_connect+dil_conv_3x3 skip_connect+dil_conv_5x5 skip_connect+dil_conv_5x5 "
                     "skip_connect+sep_conv_3x3 skip_connect+dil_conv_3x3 max_pool_3x3+skip_connect "
                     "skip_connect+sep_conv_3x3 skip_connect+sep_conv_3x3 skip_connect+dil_conv_3x3 "
                     "skip_connect+sep_conv_3x3 max_pool_3x3+skip_connect skip_connect+dil_conv_3x3 "
                     "dil_conv_3x3+dil_conv_5x5 dil_conv_3x3+dil_conv_5x5"),
    "reduce": _pairs("max_pool_3x3+avg_pool_3x3 max_pool_3x3+dil_conv_3x3 max_pool_3x3+avg_pool_3x3 "
                     "max_pool_3x3+avg_pool_3x3 skip_connect+dil_conv_5x5 max_pool_3x3+avg_pool_3x3 "
                     "max_pool_3x3+sep_conv_3x3 skip_connect+dil_conv_3x3 skip_connect+dil_conv_5x5 "
                     "max_pool_3x3+avg_pool_3x3 max_pool_3x3+avg_pool_3x3 skip_connect+dil_conv_5x5 "
                     "skip_connect+dil_conv_5x5 skip_connect+dil_conv_5x5"),
}

SPACES: dict[str, SearchSpace] = {
    "darts": SearchSpace("darts", DARTS_PRIMITIVES),
    "s1": SearchSpace("s1", tuple(op for op in DARTS_PRIMITIVES if op != "none"), edge_ops=_S1),
    "s2": SearchSpace("s2", ("skip_connect", "sep_conv_3x3")),
    "s3": SearchSpace("s3", ("none", "skip_connect", "sep_conv_3x3")),
    "s4": SearchSpace("s4", ("noise", "sep_conv_3x3")),
    # NAS-Bench-201 (Dong & Yang, ICLR 2020): nodes 1..3 each sum one edge from every earlier node.
    "nb201": SearchSpace("nb201", ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"), steps=3,
                         topology="nb201"),
}


def get_space(name: str) -> SearchSpace:
    """The search space called ``name``; ``ValueError`` lists the known ones."""
    try:
        return SPACES[name]
    except KeyError:
        raise ValueError(f"unknown search space {name!r}; known: {', '.join(SPACES)}") from None
