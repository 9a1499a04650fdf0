"""PC-DARTS (Xu et al., ICLR 2020): DARTS with partial channel connections and edge normalisation.

The supernet does the work (``partial_channels``, ``edge_normalization``); this strategy only sets
the paper's settings. Both options also combine with P-DARTS' stages (``--partial-channels 4
--edge-normalization`` with ``--algorithm pdarts``): a project extension, not in any authors' code.
"""
from __future__ import annotations

from typing import Any, ClassVar

from .darts import DARTS


class PCDARTS(DARTS):
    """PC-DARTS on CIFAR: K = 4, alphas and betas frozen for the first 15 of 50 epochs, batch 256, lr 0.1."""

    name = "pc-darts"
    DEFAULTS: ClassVar[dict[str, Any]] = {
        **DARTS.DEFAULTS, "arch_frozen_epochs": [15], "batch_size": 256, "lr": 0.1, "lr_min": 0.0,
        "arch_lr": 6e-4, "partial_channels": 4, "edge_normalization": True,
    }
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "quick": {**DARTS.PRESETS["quick"], "partial_channels": 2},
        "tiny": {**DARTS.PRESETS["tiny"], "channels": 8, "partial_channels": 2},
    }
