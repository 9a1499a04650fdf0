"""How far apart two computations of the same numbers may be: from the dtype's epsilon and the size of the sums.

Kernels of other CPUs (AVX-512 or AVX2, other blockings, other thread counts) add the same terms in other
orders; a fixed tolerance that one CPU meets can fail on another. A sum of n terms computed in any order is
within about n * eps / 2 * (the sum of the terms' absolute values) of the exact sum, so two such computations
are within n * eps times that.
"""
from __future__ import annotations

import torch


def sum_tolerance(terms: int, magnitude: float | torch.Tensor = 1.0, dtype: torch.dtype = torch.float32
                  ) -> float | torch.Tensor:
    """The most two computations in ``dtype`` of a sum of ``terms`` terms (count each rounded operation on the way
    as one) may differ by, where ``magnitude`` bounds the sum of the terms' absolute values (a tensor: element by
    element)."""
    return terms * torch.finfo(dtype).eps * magnitude


def assert_within(actual: torch.Tensor, expected: torch.Tensor, tolerance: float | torch.Tensor) -> None:
    """``|actual - expected| <= tolerance`` element by element (``expected`` may be of a wider dtype)."""
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    error = (actual.double() - expected.double()).abs()
    excess = error - torch.as_tensor(tolerance, dtype=torch.float64)
    worst = int(excess.argmax())
    assert (excess <= 0).all(), (f"{int((excess > 0).sum())} of {error.numel()} elements off by more than the "
                                 f"tolerance; worst: error {error.flatten()[worst]:.3g}, tolerance "
                                 f"{float(torch.as_tensor(tolerance).expand(error.shape).flatten()[worst]):.3g}")
