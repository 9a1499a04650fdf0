"""Checkpoint and weight files: reading them safely, fitting them to a network, and their key layouts (ours,
timm's, and the P-DARTS authors').

Every tool reads such files through :func:`read_checkpoint` (``weights_only=True``, never otherwise) and fits
them with :func:`load_weights` / :func:`checkpoint_contents`, so that a missing, unreadable, truncated, corrupt
or hostile file, or one of another network, is one :class:`CheckpointError` line naming the file.
"""
from __future__ import annotations

import contextlib
import pickle
import re
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from .messages import describe, one_line

HEAD_PREFIXES = ("classifier.", "auxiliary_head.")


class CheckpointError(ValueError):
    """A checkpoint or weights file that cannot be used; ``str(e)`` is one line naming the file and the problem."""


def read_checkpoint(path: str | Path, required: Iterable[str] = (), what: str = "checkpoint") -> dict[str, Any]:
    """The dict ``torch.save`` wrote to ``path``, read onto the CPU with ``weights_only=True``.

    A :class:`CheckpointError` names ``path`` when it is missing or unreadable, truncated or no PyTorch file,
    refused by the weights-only unpickler (it names a global other than tensors and plain data: a crafted
    pickle would run code) or not a dict holding the ``required`` keys. ``what`` names the file in messages.
    """
    try:
        with warnings.catch_warnings():  # e.g. about a pickle protocol: the one line below says what matters
            warnings.simplefilter("ignore")
            saved = torch.load(path, map_location="cpu", weights_only=True)
    except IsADirectoryError:
        raise CheckpointError(f"{path} is a folder, not a {what} file") from None
    except FileNotFoundError:
        raise CheckpointError(f"{what} {path} not found") from None
    except OSError as err:
        raise CheckpointError(f"cannot read {what} {path}: {err.strerror or describe(err)}") from None
    except Exception as err:  # noqa: BLE001 - a truncated zip, an empty file, bytes of another format...
        refused = re.search(r"GLOBAL ([\w.]+)", str(err)) if isinstance(err, pickle.UnpicklingError) else None
        if refused:
            raise CheckpointError(f"refused {what} {path}: it names {refused.group(1)}, which a weights-only load "
                                  "does not admit; nothing in it was run") from None
        raise CheckpointError(f"{path} is truncated, corrupt or no PyTorch {what} ({_reason(err)})") from None
    if not isinstance(saved, dict):
        raise CheckpointError(f"{path} is no {what}: it holds a {type(saved).__name__}, not a dict")
    missing = [key for key in required if key not in saved]
    if missing:
        raise CheckpointError(f"{path} is no {what} of this tool: it lacks {', '.join(map(repr, missing[:3]))}")
    return saved


def _reason(err: Exception) -> str:
    """Why a file did not load, short: the weights-only unpickler's own reason, or the exception's."""
    found = re.search(r"WeightsUnpickler error:\s*(\S[^\n]*)", str(err))
    if found:
        return f"weights-only unpickler: {one_line(found.group(1), 60)}"
    return one_line(f"{type(err).__name__}: {err}", 60) if str(err) else type(err).__name__


@contextlib.contextmanager
def checkpoint_contents(path: str | Path, target: str = "this run") -> Iterator[None]:
    """Turn the errors of restoring ``target`` from the checkpoint ``path`` (a missing entry, a value of another
    type or size) into one :class:`CheckpointError` naming it."""
    try:
        yield
    except CheckpointError:
        raise
    except KeyError as err:
        raise CheckpointError(f"{path} does not fit {target}: it lacks {describe(err)}") from None
    except (TypeError, ValueError, RuntimeError, IndexError, AttributeError) as err:
        raise CheckpointError(f"{path} does not fit {target} ({describe(err)})") from None


def weights_mismatch(own: Mapping[str, torch.Tensor], state: Mapping[str, Any]) -> str | None:
    """Why ``state`` cannot fill a network whose state dict is ``own`` (None when every weight fits)."""
    # BatchNorm fills in num_batches_tracked, absent from files of PyTorch < 0.4.1.
    missing = [k for k in own if k not in state and not k.endswith(".num_batches_tracked")]
    wrong = [k for k in state if k not in own or getattr(state[k], "shape", None) != own[k].shape]
    if not (missing or wrong):
        return None
    example = (wrong or missing)[0]
    return (f"does not match this network (another genotype or size?): {len(missing)} weights missing, "
            f"{len(wrong)} extra or reshaped, e.g. {example}")


def load_weights(module: nn.Module, state: Mapping[str, Any], path: str | Path) -> None:
    """Load ``state`` (read from ``path``) into ``module``: every weight must fit, or a CheckpointError says why."""
    problem = weights_mismatch(module.state_dict(), state)
    if problem:
        raise CheckpointError(f"{path} {problem}")
    module.load_state_dict(state, strict=False)  # strict but for the num_batches_tracked of old files


def our_key_layout(checkpoint: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The state dict of ``checkpoint`` in our key layout.

    Unwraps an optional ``{'state_dict': ...}``, strips DataParallel/DDP ``module.`` prefixes and
    renames the authors' ``_ops`` to ``ops`` (their networks equal ours otherwise).
    """
    state = checkpoint.get("state_dict", checkpoint)
    return {re.sub(r"(^|\.)_ops\.", r"\1ops.", re.sub(r"^(module\.)+", "", key)): value for key, value in state.items()}


def trunk_weights(checkpoint: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Stem and cell weights of an ImageNet checkpoint (classifier and auxiliary head dropped)."""
    return without_heads(our_key_layout(checkpoint))


def without_heads(state: Mapping[str, Any]) -> dict[str, Any]:
    """``state`` without classifier and auxiliary-head entries."""
    return {k: v for k, v in state.items() if not k.startswith(HEAD_PREFIXES)}
