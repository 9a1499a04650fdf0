"""torchreid models over the DARTS ImageNet network (``pdarts_wild.networks.NetworkImageNet``).

Importing this module registers, in torchreid's model factory (what ``torchreid.models.build_model``
and ``show_avai_models`` read), ``pdarts_reid`` and one ``<genotype in lower case>_reid`` per published
genotype of :data:`backbones.timm_pdarts.PUBLISHED_GENOTYPES` (``darts_v2_reid``, ...). Each builds a
:class:`PDARTSReID`: the ImageNet trunk (two stems and the cells; no auxiliary head, no ImageNet
classifier), global pooling, an optional FC to ``feature_dim``, an optional BN neck and a linear
``classifier`` over the training identities.

For the baselines of the transfer study, :func:`build_baseline` builds torchreid's own ``resnet50`` and
``mobilenetv2_x1_0`` without their download and loads a timm ImageNet checkpoint (``tools/train_imagenet.py
--model resnet50`` / ``mobilenetv2_100``) through :mod:`backbones.timm_convert`.

It also lets ``torch.load(weights_only=True)`` (the default since torch 2.6) read torchreid's own
checkpoints (:func:`allow_torchreid_checkpoints`), so ``resume``/``load_weights`` work unchanged.
"""
from __future__ import annotations

import collections
import os
from pathlib import Path
from typing import Any, Callable, Optional, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchreid.reid import models as reid_models

from pdarts_wild.checkpoints import (CheckpointError, checkpoint_contents, read_checkpoint, trunk_weights,
                                     weights_mismatch, without_heads)
from pdarts_wild.genotype import Genotype
from pdarts_wild.networks import NetworkImageNet
from pdarts_wild.ops import FactorizedReduce, Zero

from .timm_convert import Converter, load_converted, mobilenetv2_to_torchreid, resnet_from_timm
from .timm_pdarts import PUBLISHED_GENOTYPES

__all__ = [
    "PDARTSReID", "ReIDModelError", "build_pdarts_reid", "load_imagenet_trunk", "allow_torchreid_checkpoints",
    "build_baseline", "MODEL_NAMES", "MODEL_GENOTYPES", "BASELINE_CONVERTERS", "PRETRAINED_ENV",
]

PRETRAINED_ENV = "PDARTS_REID_PRETRAINED"  # ImageNet checkpoint for pretrained=True without pretrained_path
POOLS: dict[str, Callable[[], nn.Module]] = {"avg": lambda: nn.AdaptiveAvgPool2d(1), "max": lambda: nn.AdaptiveMaxPool2d(1)}


class ReIDModelError(ValueError):
    """A bad model setting or ImageNet checkpoint (one line naming the problem)."""


def allow_torchreid_checkpoints() -> None:
    """Let ``torch.load(weights_only=True)`` read what torchreid's ``Engine.save_model`` writes.

    ``{'state_dict', 'epoch', 'rank1', 'optimizer', 'scheduler'}``: ``rank1`` is a numpy float32 scalar
    (float64 where the CMC array is; numpy's scalar rebuild function, ``dtype`` and the two dtype classes), the
    ``multi_step`` scheduler keeps its milestones in a ``collections.Counter``. Nothing else is allowed.
    """
    torch.serialization.add_safe_globals(
        [np.float64(0).__reduce__()[0], np.dtype, np.dtypes.Float32DType, np.dtypes.Float64DType,
         collections.Counter]
    )


allow_torchreid_checkpoints()


def _pad_shifted_input(module: nn.Module, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor]:
    """Forward pre-hook: pad FactorizedReduce's one-pixel-shifted input back to full size (stride 1)."""
    return (F.pad(args[0], (0, 1, 0, 1)),)


def _keep_resolution(module: nn.Module) -> None:
    """Set every stride-2 conv, pool and ``none`` op inside ``module`` to stride 1; a FactorizedReduce
    keeps its 1x1 convs, the second one reading the same shifted pixels as before, padded at the border."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            m.stride = (1, 1)
        elif isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
            m.stride = 1
        elif isinstance(m, Zero):
            m.stride = 1
        if isinstance(m, FactorizedReduce):
            m.conv_2.register_forward_pre_hook(_pad_shifted_input)


def set_last_stride_one(net: NetworkImageNet) -> None:
    """Keep the resolution of ``net``'s last reduction cell: its stride-2 ops (the ones reading the
    cell's two inputs) and the next cell's FactorizedReduce of the cell before it run at stride 1.
    Weights and state-dict keys are unchanged."""
    last = net.reduction_cells[-1]
    cell = net.cells[last]
    for op, j in zip(cell.ops, cell.indices):
        if j < 2:
            _keep_resolution(op)
    if last + 1 < len(net.cells):
        _keep_resolution(net.cells[last + 1].preprocess0)


class PDARTSReID(nn.Module):
    """A searched cell as a torchreid model.

    Args:
        num_classes: training identities (size of ``classifier``).
        loss: ``'softmax'`` (training forward returns logits) or ``'triplet'`` (``(logits, features)``).
        genotype: registry name, ``genotype.json``/text file or DARTS string.
        init_channels, layers: C and number of cells of ``NetworkImageNet`` (48 and 14: mobile setting).
        global_pool: ``'avg'`` or ``'max'``.
        feature_dim: 0 keeps the trunk's channels; otherwise an FC (Linear, BN, ReLU) to this size.
        bnneck: BatchNorm1d (bias frozen at 0) between the feature and the classifier; eval mode
            returns the normalised feature, the triplet loss sees the one before it.
        last_stride: 2 (the network as searched: stride 32) or 1 (stride 16, see :func:`set_last_stride_one`).

    Eval mode returns the ``feature_dim``-sized feature vector. Input H and W must be multiples of 32.
    """

    def __init__(
        self,
        num_classes: int,
        loss: str = "softmax",
        genotype: Union[Genotype, str, Path] = "PDARTS",
        init_channels: int = 48,
        layers: int = 14,
        global_pool: str = "avg",
        feature_dim: int = 0,
        bnneck: bool = True,
        last_stride: int = 2,
    ) -> None:
        super().__init__()
        if loss not in ("softmax", "triplet"):
            raise ReIDModelError(f"loss must be 'softmax' or 'triplet', got {loss!r}")
        if global_pool not in POOLS:
            raise ReIDModelError(f"global_pool must be one of {sorted(POOLS)}, got {global_pool!r}")
        if last_stride not in (1, 2):
            raise ReIDModelError(f"last_stride must be 1 or 2, got {last_stride}")
        if feature_dim < 0 or num_classes < 1:
            raise ReIDModelError(f"need feature_dim >= 0 and num_classes >= 1, got {feature_dim} and {num_classes}")
        self.loss = loss
        self.backbone = NetworkImageNet(genotype, C=init_channels, num_classes=0, layers=layers)
        if last_stride == 1:
            set_last_stride_one(self.backbone)
        self.feature_stride = self.backbone.cell_strides[-1] // 2 * last_stride
        channels = self.backbone.cell_channels[-1]
        self.global_pool = POOLS[global_pool]()
        self.fc: nn.Module = nn.Identity()
        if feature_dim:
            self.fc = nn.Sequential(nn.Linear(channels, feature_dim), nn.BatchNorm1d(feature_dim), nn.ReLU(inplace=True))
        self.feature_dim = feature_dim or channels
        self.bnneck: nn.Module = nn.Identity()
        if bnneck:
            self.bnneck = nn.BatchNorm1d(self.feature_dim)
            self.bnneck.bias.requires_grad_(False)
        self.classifier = nn.Linear(self.feature_dim, num_classes, bias=not bnneck)

    def forward(self, x: torch.Tensor) -> Union[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Training: logits, or ``(logits, features)`` for the triplet loss. Eval: the feature vector."""
        v = self.fc(self.global_pool(self.backbone.forward_features(x)).flatten(1))
        if not self.training:
            return self.bnneck(v)
        logits = self.classifier(self.bnneck(v))
        return (logits, v) if self.loss == "triplet" else logits


def load_imagenet_trunk(net: NetworkImageNet, path: Union[str, Path]) -> None:
    """Load an ImageNet checkpoint (``tools/train_imagenet.py``, timm, the authors' release) into the
    stems and cells of ``net``; its classifier and auxiliary head are ignored, every trunk weight must match
    (a :class:`pdarts_wild.checkpoints.CheckpointError` naming the file otherwise, or for a bad file)."""
    path = Path(path).expanduser()
    saved = read_checkpoint(path, what="ImageNet checkpoint")
    with checkpoint_contents(path, "this network"):
        trunk = trunk_weights(saved)
        problem = weights_mismatch(without_heads(net.state_dict()), trunk)
        if problem:
            raise CheckpointError(f"{path} {problem}")
        net.load_state_dict(trunk, strict=False)


def build_pdarts_reid(
    num_classes: int,
    loss: str = "softmax",
    pretrained: bool = True,
    use_gpu: bool = True,
    pretrained_path: Optional[Union[str, Path]] = None,
    **kwargs: Any,
) -> PDARTSReID:
    """A :class:`PDARTSReID` the torchreid way (``use_gpu`` is unused: the engine moves the model).

    ``pretrained=True`` loads ImageNet weights into the trunk from ``pretrained_path``, else from the
    file named by the ``PDARTS_REID_PRETRAINED`` environment variable; there is no download.
    """
    model = PDARTSReID(num_classes, loss=loss, **kwargs)
    if pretrained:
        path = pretrained_path or os.environ.get(PRETRAINED_ENV)
        if not path:
            raise ReIDModelError(
                "pretrained=True needs an ImageNet checkpoint of this network (tools/train_imagenet.py, timm or "
                f"the authors' release): give pretrained_path (tools/train_reid.py: model.pretrained_path PATH) "
                f"or set {PRETRAINED_ENV}=PATH; nothing is downloaded. pretrained=False trains from scratch"
            )
        load_imagenet_trunk(model.backbone, path)
    return model


def _factory(genotype: str) -> Callable[..., PDARTSReID]:
    def build(num_classes: int, loss: str = "softmax", pretrained: bool = True, use_gpu: bool = True,
              **kwargs: Any) -> PDARTSReID:
        kwargs.setdefault("genotype", genotype)
        return build_pdarts_reid(num_classes, loss, pretrained, use_gpu, **kwargs)

    build.__doc__ = f"The {genotype} cell as a torchreid model; see :func:`build_pdarts_reid`."
    return build


MODEL_GENOTYPES = {f"{g.lower()}_reid": g for g in PUBLISHED_GENOTYPES}  # pdarts_reid -> PDARTS
MODEL_FACTORY: dict[str, Callable[..., PDARTSReID]] = {name: _factory(g) for name, g in MODEL_GENOTYPES.items()}
MODEL_NAMES = tuple(MODEL_FACTORY)
vars(reid_models)["__model_factory"].update(MODEL_FACTORY)

# torchreid's reference networks and the timm model whose ImageNet checkpoint they take.
BASELINE_CONVERTERS: dict[str, tuple[str, Converter]] = {
    "resnet50": ("resnet50", resnet_from_timm), "mobilenetv2_x1_0": ("mobilenetv2_100", mobilenetv2_to_torchreid),
}


def build_baseline(name: str, num_classes: int, loss: str = "softmax", pretrained: bool = True, use_gpu: bool = True,
                   pretrained_path: Optional[Union[str, Path]] = None) -> nn.Module:
    """torchreid's model ``name``, built without torchreid's download; ``pretrained=True`` loads the timm ImageNet
    checkpoint at ``pretrained_path`` (classifier aside, every weight must be there: :mod:`backbones.timm_convert`)."""
    model = reid_models.build_model(name, num_classes, loss, pretrained=False, use_gpu=use_gpu)
    if not pretrained:
        return model
    if name not in BASELINE_CONVERTERS:
        raise ReIDModelError(f"no ImageNet weights for {name!r} without a download (converters for "
                             f"{', '.join(BASELINE_CONVERTERS)}): set pretrained False (model.pretrained False)")
    timm_name, convert = BASELINE_CONVERTERS[name]
    if not pretrained_path:
        raise ReIDModelError(f"pretrained=True needs a timm {timm_name} ImageNet checkpoint (tools/train_imagenet.py "
                             f"--model {timm_name}): give pretrained_path (model.pretrained_path PATH); nothing is "
                             "downloaded. pretrained=False trains from scratch")
    load_converted(model, pretrained_path, convert, skip=("classifier.", "fc."))
    return model
