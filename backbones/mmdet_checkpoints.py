"""Let ``torch.load(weights_only=True)`` (the default since torch 2.6) read MMEngine's own checkpoints, and make
MMEngine read remote ones (``http(s)://``, ``torchvision://``, ``open-mmlab://``, ...) weights-only too.

``mim test``, ``mim train --resume`` and ``load_from`` load them; every detection config of ours imports this
module (through ``backbones.mmdet_pdarts`` or ``backbones.mmdet_metrics``) before any checkpoint is read.
"""
from __future__ import annotations

import pickle
from typing import Any, Callable

import numpy as np
import torch
from mmengine.logging import HistoryBuffer
from mmengine.runner import checkpoint as mmengine_checkpoint

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


def load_url_weights_only(url: str, model_dir: str | None = None, map_location: Any = None, progress: bool = True,
                          check_hash: bool = False, file_name: str | None = None) -> Any:
    """MMEngine's ``load_url`` for every remote scheme, but weights-only: torch.hub's own defaults to
    ``weights_only=False``, which would run whatever a downloaded pickle names."""
    return torch.hub.load_state_dict_from_url(url, model_dir=model_dir, map_location=map_location, progress=progress,
                                              check_hash=check_hash, file_name=file_name, weights_only=True)


allow_mmengine_checkpoints()
mmengine_checkpoint.load_url = load_url_weights_only  # looked up at each call by load_from_http and its callers
