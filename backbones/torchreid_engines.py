"""torchreid's image engines, keeping each test's CMC curve and mAP as numbers (tools/train_reid.py's metrics.json).

torchreid's ``Engine._evaluate`` computes both with ``torchreid.reid.metrics.evaluate_rank`` but returns only
rank-1 and mAP, and prints the rest. :class:`RecordedEvaluation` runs that same code and keeps what
``evaluate_rank`` returned, per target data set, in ``engine.results``.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np
from torchreid.reid import metrics as reid_metrics
from torchreid.reid.engine import ImageSoftmaxEngine, ImageTripletEngine


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


class SoftmaxEngine(RecordedEvaluation, ImageSoftmaxEngine):
    """torchreid's ``ImageSoftmaxEngine`` with :class:`RecordedEvaluation`."""


class TripletEngine(RecordedEvaluation, ImageTripletEngine):
    """torchreid's ``ImageTripletEngine`` with :class:`RecordedEvaluation`."""
