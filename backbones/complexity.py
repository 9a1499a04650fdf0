"""Parameters and multiply-adds of a network, one way for every tool (model_info, metrics.json of the trainers).

Multiply-adds are FLOPs / 2 as ``torch.utils.flop_counter.FlopCounterMode`` counts them: convolutions, linear
layers and matrix products (not BatchNorm, activations or pooling), for one forward pass. Build the model on the
meta device (``with torch.device("meta"): ...``) to count without allocating or computing anything.
"""
from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from pdarts_wild.networks import count_parameters


def macs_of(forward: Callable[[], Any]) -> int:
    """Multiply-adds of the torch operations ``forward()`` runs."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        forward()
    return counter.get_total_flops() // 2


def count_macs(model: nn.Module, input_size: tuple[int, int], in_chans: int = 3) -> int:
    """Multiply-adds of ``model`` in eval mode on one ``in_chans`` x H x W image, on the model's device."""
    device = next(itertools.chain(model.parameters(), model.buffers())).device
    image = torch.empty(1, in_chans, *input_size, device=device)
    training = model.training
    try:
        return macs_of(lambda: model.eval()(image))
    finally:
        model.train(training)


def complexity(model: nn.Module, input_size: tuple[int, int]) -> dict[str, Any]:
    """``{"params", "macs"}`` for metrics.json: parameters outside any auxiliary head, multiply-adds at
    ``input_size``; ``macs`` is None, with the reason in ``macs_note``, when the forward pass cannot be counted."""
    info: dict[str, Any] = {"params": count_parameters(model)}
    try:
        info["macs"] = count_macs(model, input_size)
    except Exception as e:  # noqa: BLE001  (any model: the count is informative, the run's results are not at stake)
        info["macs"], info["macs_note"] = None, f"not countable at {list(input_size)}: {type(e).__name__}: {e}"[:200]
    return info
