"""torchreid's image engines, keeping each test's CMC curve and mAP as numbers (tools/train_reid.py's metrics.json)
and writing checkpoints atomically.

torchreid's ``Engine._evaluate`` computes both with ``torchreid.reid.metrics.evaluate_rank`` but returns only
rank-1 and mAP, and prints the rest. :class:`RecordedEvaluation` runs that same code and keeps what
``evaluate_rank`` returned, per target data set, in ``engine.results``.

torchreid's ``save_checkpoint`` writes ``model.pth.tar-N`` with a plain ``torch.save``: a kill during the write
leaves a torn file for a later ``model.resume``. :class:`AtomicCheckpoints` runs torchreid's ``save_model`` with
its file writes going through :func:`pdarts_wild.search.atomic_save`.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchreid.reid import metrics as reid_metrics
from torchreid.reid.engine import ImageSoftmaxEngine, ImageTripletEngine

from pdarts_wild.search import atomic_save


@contextlib.contextmanager
def _recording_evaluate_rank() -> Iterator[list[tuple[np.ndarray, float]]]:
    """While open, ``torchreid.reid.metrics.evaluate_rank`` (what ``Engine._evaluate`` calls) also appends its
    ``(cmc, mAP)`` to the list yielded."""
    found: list[tuple[np.ndarray, float]] = []
    evaluate_rank = reid_metrics.evaluate_rank

    def recording(*args: Any, **kwargs: Any) -> tuple[np.ndarray, float]:
        cmc, mean_ap = evaluate_rank(*args, **kwargs)
        found.append((np.asarray(cmc), float(mean_ap)))
        return cmc, mean_ap

    reid_metrics.evaluate_rank = recording
    try:
        yield found
    finally:
        reid_metrics.evaluate_rank = evaluate_rank


class RecordedEvaluation:
    """Mixin over a torchreid ``Engine``: ``results[target] = (cmc, mAP)`` (fractions; ``cmc[k - 1]`` is rank-k)
    from the latest test of each target data set."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.results: dict[str, tuple[np.ndarray, float]] = {}

    def _evaluate(self, dataset_name: str = "", **kwargs: Any) -> tuple[float, float]:
        with _recording_evaluate_rank() as found:
            rank1, mean_ap = super()._evaluate(dataset_name=dataset_name, **kwargs)  # type: ignore[misc]
        if len(found) != 1:
            raise RuntimeError(f"torchreid's Engine._evaluate called metrics.evaluate_rank {len(found)} times, "
                               "expected once: this torchreid version evaluates differently")
        self.results[dataset_name] = found[0]
        return rank1, mean_ap


@contextlib.contextmanager
def _atomic_torch_save() -> Iterator[None]:
    """While open, ``torch.save`` to a path (what torchreid's ``save_checkpoint`` does) is :func:`atomic_save`;
    its own ``torch.save`` into memory reaches the real one."""
    save = torch.save

    def atomic(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        if isinstance(f, (str, os.PathLike)) and not (args or kwargs):
            atomic_save(obj, Path(f))
        else:
            save(obj, f, *args, **kwargs)

    torch.save = atomic
    try:
        yield
    finally:
        torch.save = save


class AtomicCheckpoints:
    """Mixin over a torchreid ``Engine``: each ``model.pth.tar-N`` holds either nothing or the whole checkpoint."""

    def save_model(self, *args: Any, **kwargs: Any) -> None:
        with _atomic_torch_save():
            super().save_model(*args, **kwargs)  # type: ignore[misc]


class SoftmaxEngine(RecordedEvaluation, AtomicCheckpoints, ImageSoftmaxEngine):
    """torchreid's ``ImageSoftmaxEngine`` with :class:`RecordedEvaluation` and :class:`AtomicCheckpoints`."""


class TripletEngine(RecordedEvaluation, AtomicCheckpoints, ImageTripletEngine):
    """torchreid's ``ImageTripletEngine`` with :class:`RecordedEvaluation` and :class:`AtomicCheckpoints`."""
