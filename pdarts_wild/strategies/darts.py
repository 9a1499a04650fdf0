"""DARTS (Liu et al., ICLR 2019): one stage on an 8-cell supernet, the DARTS derivation rule."""
from __future__ import annotations

from typing import Any, ClassVar

from ..genotype import Genotype, derive_darts_cell
from ..nb201 import derive_nb201
from ..spaces import Candidates
from .base import AlphaTable, Derivation, EdgeScale, StagePlan, Strategy


class DARTS(Strategy):
    """DARTS search; first order by default, second order with ``unrolled``."""

    name = "darts"
    DEFAULTS: ClassVar[dict[str, Any]] = {
        "layers": [8], "epochs": [50], "arch_frozen_epochs": [0], "skip_dropout": [0.0], "keep_ops": [],
        "batch_size": 64, "lr_min": 0.001, "arch_lr": 3e-4, "arch_grad_clip": 0.0,
    }
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "quick": {"channels": 8, "layers": [5], "epochs": [5], "arch_frozen_epochs": [1], "batch_size": 32,
                  "arch_lr": 3e-3, "valid_last": 1, "workers": 0},
        "tiny": {"channels": 4, "layers": [3], "epochs": [2], "arch_frozen_epochs": [0], "batch_size": 16,
                 "train_limit": 64, "workers": 0},
    }

    def stages(self) -> list[StagePlan]:
        c = self.config
        return [StagePlan(c.layers[0], c.epochs[0], c.arch_frozen_epochs[0])]

    def derive(self, alphas: AlphaTable, candidates: Candidates, edge_scale: EdgeScale = None) -> Derivation:
        if self.config.space == "nb201":  # every edge kept; edge weights scale whole rows, so they change no argmax
            return Derivation(derive_nb201(alphas["normal"]))
        steps = self.config.steps
        cells = {cell: derive_darts_cell(alphas[cell], steps, None if edge_scale is None else edge_scale[cell])
                 for cell in ("normal", "reduce")}
        concat = tuple(range(2, steps + 2))
        return Derivation(Genotype.make(cells["normal"], concat, cells["reduce"], concat))  # validated: known ops only
