"""OPP-DARTS (Zhu et al., ICDM 2021): candidate ops enter the search one stage at a time.

As the authors' code (``shared/specs/opp-darts.md`` §2): before epoch 0, of the space's parametric ops
the one whose single-op supernet has the largest training loss at random init starts; every
``add_op_epochs`` epochs the remaining non-skip op whose addition makes the supernet's training loss
largest joins every edge of both cell types (strict ``>``: ties keep the earlier op); skip_connect joins
last, unscored, one addition later. Scores are mean cross-entropies on the weight half without
gradients, in train mode with batch statistics, BN running statistics put back (project rule). With
``opp_score_bn = "reference"`` scoring is the authors': the copy's trained cells use their running
statistics (eval mode), the stem and the new op batch statistics, and the running statistics the
scoring updates stay. The kept supernet is the scored copy.
Otherwise it is DARTS (first order, or ``--unrolled``), and the DARTS derivation rule.
"""
from __future__ import annotations

import copy
import logging
from typing import Any, Callable, ClassVar

from ..spaces import SearchSpace
from ..supernet import Supernet
from .base import Growth
from .darts import DARTS

log = logging.getLogger("pdarts_wild")

PARAMETRIC_OPS = ("sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5")
LAST_OP = "skip_connect"


class OPPDARTS(DARTS):
    """OPP-DARTS: 8 cells, 50 epochs, an op added every 2 epochs; the rest as DARTS."""

    name = "opp-darts"
    OWN_SETTINGS = ("add_op_epochs", "opp_score_batches", "opp_score_bn")
    DEFAULTS: ClassVar[dict[str, Any]] = {**DARTS.DEFAULTS, "add_op_epochs": 2}
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "quick": {**DARTS.PRESETS["quick"], "epochs": [16], "add_op_epochs": 2, "opp_score_batches": 10},
        "tiny": {**DARTS.PRESETS["tiny"], "epochs": [8], "add_op_epochs": 1, "opp_score_batches": 2},
    }

    @classmethod
    def check_space(cls, space: SearchSpace) -> None:
        if space.topology == "nb201":
            raise ValueError("OPP-DARTS is defined for the DARTS space and S2-S4 only (its paper leaves NAS-Bench-201 "
                             "out): search nb201 with darts, pc-darts, rf-darts or rf-pcdarts")

    def grow(self, epoch: int, growth: Growth) -> Supernet | None:
        space = growth.model.space
        if epoch == 0:
            return self._start(space, growth)
        if epoch % self.config.add_op_epochs:
            return None
        held = {op for edges in growth.model.candidates.values() for edge in edges for op in edge}
        remaining = [op for op in space.primitives if op not in held and op != LAST_OP]
        if remaining:
            return self._add_loudest(remaining, growth)
        if LAST_OP in space.primitives and LAST_OP not in held:
            growth.model.add_op(LAST_OP)
            return growth.model
        return None

    @staticmethod
    def _start(space: SearchSpace, growth: Growth) -> Supernet:
        """Of the single-op supernets of the space's parametric ops, the one with the largest loss at init."""
        starters = [op for op in PARAMETRIC_OPS if op in space.primitives]
        if not starters:
            raise ValueError(f"OPP-DARTS starts from a parametric op ({', '.join(PARAMETRIC_OPS)}); the {space.name} "
                             "space has none")

        def alone(op: str) -> Supernet:
            return growth.build({cell: [(op,)] * space.num_edges for cell in space.cell_types})

        return _largest_loss(starters, alone, growth, "OPP-DARTS start: %s alone gives training loss %.6f")

    def _add_loudest(self, remaining: list[str], growth: Growth) -> Supernet:
        """A copy of the supernet with the op (of ``remaining``) whose addition makes its training loss largest."""

        def with_op(op: str) -> Supernet:
            model = copy.deepcopy(growth.model)
            if self.config.opp_score_bn == "reference":
                model.cells.eval()  # as left by the reference's validation pass; the new op's modules train
            model.add_op(op)
            return model

        return _largest_loss(remaining, with_op, growth, "OPP-DARTS: adding %s gives training loss %.6f")


def _largest_loss(ops: list[str], build: Callable[[str], Supernet], growth: Growth, message: str) -> Supernet:
    """Of the supernets ``build`` makes for ``ops`` (in order), the one with the largest training loss; ties keep
    the earlier."""
    best: tuple[float, Supernet] | None = None
    for op in ops:
        model = build(op)
        loss = growth.loss(model)
        log.info(message, op, loss)
        if best is None or loss > best[0]:
            best = (loss, model)
    assert best is not None
    return best[1]
