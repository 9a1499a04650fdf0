"""P-DARTS (Chen et al., ICCV 2019 / IJCV 2021): progressively deeper stages on a shrinking op set.

Search-space approximation: after each stage every edge keeps only its strongest ops. Regularisation:
dropout after skip-connects, decayed within each stage, and at most ``skip_limit`` skip-connects in
the final normal cell.
"""
from __future__ import annotations

import math
from typing import Any, ClassVar, Sequence

from ..genotype import Genotype, Pair, check_finite
from ..spaces import CELL_TYPES, Candidates, SearchSpace, edge_inputs, node_edges
from .base import AlphaTable, Derivation, EdgeScale, StagePlan, Strategy

MAX_SKIPS = 8  # a 4-node cell has 8 edges


class PDARTS(Strategy):
    """P-DARTS as in the authors' code (first-order architecture steps, fresh supernet per stage)."""

    name = "pdarts"
    OWN_SETTINGS = ("skip_dropout", "skip_limit", "keep_ops")
    MULTI_STAGE = True
    DEFAULTS: ClassVar[dict[str, Any]] = {
        "layers": [5, 11, 17], "epochs": [25], "arch_frozen_epochs": [10], "skip_dropout": [0.0, 0.4, 0.7],
        "keep_ops": [5, 3], "batch_size": 96, "lr_min": 0.0, "arch_lr": 6e-4, "arch_grad_clip": 5.0,
        "valid_last": 4,
    }
    DATASET_DEFAULTS: ClassVar[dict[str, dict[str, Any]]] = {"cifar100": {"skip_dropout": [0.1, 0.2, 0.3]}}
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        # Few steps: a 10x larger architecture learning rate lets the alphas move in one epoch per stage.
        "quick": {"channels": 8, "layers": [5, 8, 11], "epochs": [2], "arch_frozen_epochs": [1], "batch_size": 32,
                  "arch_lr": 6e-3, "valid_last": 1, "workers": 0},
        "tiny": {"channels": 4, "layers": [3, 4, 5], "epochs": [2], "arch_frozen_epochs": [1], "batch_size": 16,
                 "train_limit": 64, "workers": 0},
    }

    @classmethod
    def check_space(cls, space: SearchSpace) -> None:
        if space.topology == "nb201":
            raise ValueError("P-DARTS deepens the supernet and prunes ops between stages; NAS-Bench-201's skeleton "
                             "and 5-op benchmark are fixed: search nb201 with darts, pc-darts, rf-darts or rf-pcdarts")

    def stages(self) -> list[StagePlan]:
        c = self.config
        keep = [*c.keep_ops, None]
        return [StagePlan(c.layers[s], c.epochs[s], c.arch_frozen_epochs[s], c.skip_dropout[s], keep[s])
                for s in range(len(c.layers))]

    def skip_dropout(self, stage: StagePlan, epoch: int) -> float:
        return skip_dropout_rate(stage.skip_dropout, epoch, stage.epochs, stage.arch_frozen_epochs)

    def prune(self, candidates: Candidates, alphas: AlphaTable, stage: StagePlan) -> Candidates:
        assert stage.keep_ops is not None
        return {cell: [keep_strongest(edge, stage.keep_ops) for edge in alphas[cell]] for cell in CELL_TYPES}

    def derive(self, alphas: AlphaTable, candidates: Candidates, edge_scale: EdgeScale = None) -> Derivation:
        if edge_scale is not None:  # with PC-DARTS edge weights: rank edges by weighted op probabilities
            alphas = {cell: [{op: w * g for op, w in edge.items()} for edge, g in zip(alphas[cell], edge_scale[cell])]
                      for cell in alphas}
        steps = self.config.steps
        reduce = final_cell(alphas["reduce"], steps)
        by_limit = limit_skip_connects(alphas["normal"], steps)
        unrestricted = final_cell(alphas["normal"], steps)
        concat = tuple(range(2, steps + 2))
        limit = self.config.skip_limit
        normal = unrestricted
        if limit is not None and by_limit and limit <= max(by_limit):
            normal = by_limit[max(limit, min(by_limit))]  # the limit, or the fewest skips it can reach
        extras = {
            "skip_limit": limit,
            "unrestricted": Genotype(unrestricted, concat, reduce, concat).to_string(),
            "by_skip_limit": {str(m): Genotype(cell, concat, reduce, concat).to_string() for m, cell in by_limit.items()},
        }
        return Derivation(Genotype.make(normal, concat, reduce, concat), extras)  # validated: known ops only


def skip_dropout_rate(rate: float, epoch: int, epochs: int, frozen: int) -> float:
    """Decayed skip-connect dropout: linear while alphas are frozen, then exp(-0.2 per epoch) from ``rate``."""
    if epoch < frozen:
        return rate * (epochs - epoch - 1) / epochs
    return rate * math.exp(-0.2 * (epoch - frozen))


def keep_strongest(weights: dict[str, float], keep: int) -> tuple[str, ...]:
    """The ``keep`` ops of an edge with the largest weights, in their original order (ties drop the earlier op)."""
    ops = list(weights)
    order = sorted(range(len(ops)), key=lambda i: weights[ops[i]])  # stable: earlier op first on ties
    dropped = set(order[: max(len(ops) - keep, 0)])
    return tuple(op for i, op in enumerate(ops) if i not in dropped)


def final_cell(alphas: Sequence[dict[str, float]], steps: int = 4) -> tuple[Pair, ...]:
    """P-DARTS' final choice: each edge's strongest non-``none`` op (ties: later op); node 0 keeps both
    edges, later nodes their two strongest (ties: later edge); pairs by ascending input."""
    inputs = edge_inputs(steps)
    best: list[tuple[float, str]] = []
    for e, weights in enumerate(alphas):
        check_finite(e, weights.values())
        top_op, top = "", -1.0
        for op, w in weights.items():
            if op != "none" and w >= top:
                top_op, top = op, w
        best.append((top, top_op))
    pairs: list[Pair] = []
    for edges in node_edges(steps):
        kept = sorted(edges, key=lambda e: best[e][0])[-2:]  # stable: later edge wins ties
        pairs += [(best[e][1], inputs[e][1]) for e in sorted(kept)]
    return tuple(pairs)


def limit_skip_connects(alphas: Sequence[dict[str, float]], steps: int = 4) -> dict[int, tuple[Pair, ...]]:
    """Normal cells with at most M skip-connects, for every M below the unrestricted count that can be reached.

    While the cell holds more than M skips, the kept skip edge with the smallest skip weight loses
    its skip (ties: lower edge) and the cell is chosen again; lost skips stay lost from one M to the next.
    A skip whose loss would leave its node without two edges that hold an op (an edge of only ``none``
    and ``skip_connect``, as P-DARTS' pruning can leave with few ops kept) stays; when only such skips
    are left, the smaller M cannot be reached and are missing from the result.
    """
    inputs = edge_inputs(steps)
    edge_of = {(node, j): e for e, (node, j) in enumerate(inputs)}
    lost: set[int] = set()  # edges whose skip lost its place
    stuck: set[int] = set()  # edges whose skip cannot go

    def choose(without: set[int]) -> tuple[Pair, ...]:
        return final_cell([{op: w for op, w in edge.items() if op != "skip_connect" or e not in without}
                           for e, edge in enumerate(alphas)], steps)

    cell = choose(lost)
    unrestricted = _count_skips(cell)
    result: dict[int, tuple[Pair, ...]] = {}
    for m in range(MAX_SKIPS, -1, -1):
        while _count_skips(cell) > m:
            skip_edges = [edge_of[(k // 2, j)] for k, (op, j) in enumerate(cell) if op == "skip_connect"]
            removable = [e for e in skip_edges if e not in stuck]
            if not removable:
                return result
            weakest = min(removable, key=lambda e: (alphas[e]["skip_connect"], e))
            trial = choose(lost | {weakest})
            if any(not op for op, _ in trial):  # a node left without two edges that hold an op
                stuck.add(weakest)
                continue
            lost.add(weakest)
            cell = trial
        if m < unrestricted:
            result[m] = cell
    return result


def _count_skips(cell: Sequence[Pair]) -> int:
    return sum(op == "skip_connect" for op, _ in cell)
