"""Weights of the evaluation networks across file layouts: ours, timm's, and the P-DARTS authors'."""
from __future__ import annotations

import re
from typing import Any, Mapping

import torch

HEAD_PREFIXES = ("classifier.", "auxiliary_head.")


def our_key_layout(checkpoint: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The state dict of ``checkpoint`` in our key layout.

    Unwraps an optional ``{'state_dict': ...}``, strips DataParallel/DDP ``module.`` prefixes and
    renames the authors' ``_ops`` to ``ops`` (their networks equal ours otherwise).
    """
    state = checkpoint.get("state_dict", checkpoint)
    return {re.sub(r"(^|\.)_ops\.", r"\1ops.", re.sub(r"^(module\.)+", "", key)): value for key, value in state.items()}


def trunk_weights(checkpoint: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Stem and cell weights of an ImageNet checkpoint (classifier and auxiliary head dropped)."""
    return {k: v for k, v in our_key_layout(checkpoint).items() if not k.startswith(HEAD_PREFIXES)}


def trunk_mismatch(own: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor]) -> str | None:
    """Why ``state`` cannot fill a network whose state dict is ``own`` (None when every weight fits)."""
    # BatchNorm fills in num_batches_tracked, absent from files of PyTorch < 0.4.1.
    missing = [k for k in own if k not in state and not k.endswith(".num_batches_tracked")]
    wrong = [k for k in state if k not in own or state[k].shape != own[k].shape]
    if not (missing or wrong):
        return None
    return (f"does not match this network (genotype, init_channels, layers): {len(missing)} missing keys "
            f"{missing[:3]}, {len(wrong)} unexpected or of another shape {wrong[:3]}")
