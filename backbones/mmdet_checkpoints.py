"""Let ``torch.load(weights_only=True)`` (the default since torch 2.6) read MMEngine's own checkpoints.

``mim test``, ``mim train --resume`` and ``load_from`` load them; every detection config of ours imports this
module (through ``backbones.mmdet_pdarts`` or ``backbones.mmdet_metrics``) before any checkpoint is read.
"""
from __future__ import annotations

import pickle
from typing import Callable

import numpy as np
import torch
from mmengine.logging import HistoryBuffer

# HistoryBuffer pickles its statistics methods; protocol 2 writes them as getattr(HistoryBuffer, name).
HISTORY_BUFFER_METHODS = ("min", "max", "current", "mean")


def history_buffer_method(owner: type, name: str) -> Callable:
    """``getattr`` as MMEngine checkpoints call it, limited to :data:`HISTORY_BUFFER_METHODS` of ``HistoryBuffer``."""
    if owner is HistoryBuffer and name in HISTORY_BUFFER_METHODS:
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(f"weights_only load refuses getattr({owner!r}, {name!r})")


def allow_mmengine_checkpoints() -> None:
    """Let ``torch.load(weights_only=True)`` (the default since torch 2.6) read MMEngine's checkpoints.

    Besides tensors and builtins they hold the message hub's ``HistoryBuffer`` objects (float64/int64
    numpy arrays, plus the buffer's statistics methods) and numpy float64 scalars. Exactly these are
    allowed: numpy's array and scalar rebuild functions (as numpy itself pickles them), ``ndarray``,
    ``dtype`` and the float64/int64 dtype classes (no object arrays), ``HistoryBuffer``, and in place of
    ``builtins.getattr`` :func:`history_buffer_method`. Any other global in a pickle is still refused.
    """
    torch.serialization.add_safe_globals(
        [
            HistoryBuffer,
            (history_buffer_method, "builtins.getattr"),
            np.ndarray,
            np.dtype,
            np.dtypes.Float64DType,
            np.dtypes.Int64DType,
            np.empty(0).__reduce__()[0],  # numpy's _reconstruct (module numpy._core or numpy.core)
            np.float64(0).__reduce__()[0],  # numpy's scalar
        ]
    )


allow_mmengine_checkpoints()
