"""MMDetection backbone over the DARTS ImageNet network (``pdarts_wild.networks.NetworkImageNet``).

Registered as ``PDARTSNet`` in MMDetection's ``MODELS``; configs load it with
``custom_imports=dict(imports=['backbones.mmdet_pdarts'])``. Feature levels (C = ``init_channels``,
m = nodes concatenated per cell, 4 for DARTS-space genotypes; C=48 gives 48, 192, 384, 768 channels):

    level  tap                              channels  stride
    0      stem0                            C         4
    1      last cell before 1st reduction   m*C       8
    2      last cell before 2nd reduction   2*m*C     16
    3      last cell                        4*m*C     32

Stage 0 is the two stems, stage 1 the cells before the first reduction cell, stage 2 the cells from
it to level 2's tap, stage 3 the cells from the second reduction cell on. Importing this module also
allow-lists, for ``torch.load(weights_only=True)``, what MMEngine's own checkpoints hold
(:mod:`backbones.mmdet_checkpoints`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import torch
from mmdet.registry import MODELS
from mmengine.logging import print_log
from mmengine.model import BaseModule
from mmengine.runner.checkpoint import CheckpointLoader
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from pdarts_wild.checkpoints import checkpoint_contents, load_weights, read_checkpoint, trunk_weights
from pdarts_wild.networks import NetworkImageNet, check_input_size
from pdarts_wild.zoo import resolve_genotype

from . import mmdet_checkpoints  # noqa: F401  (allow-lists MMEngine's checkpoint classes)

LEVELS = (0, 1, 2, 3)


@MODELS.register_module()
class PDARTSNet(BaseModule):
    """The searched ImageNet network as a detection backbone: stems and cells, no heads.

    Args:
        genotype: a registry name (``PDARTS``, ``DARTS_V2``, ...), a ``genotype.json``/text file
            or a DARTS ``Genotype(...)`` string.
        init_channels: C of ``NetworkImageNet`` (48 in the mobile setting).
        layers: number of cells (14 in the mobile setting; at least 3).
        out_indices: feature levels to return, from (0, 1, 2, 3); see the module docstring.
        frozen_stages: -1 freezes nothing, 0 the stems, k the stems and stages 1..k.
        norm_cfg: ``type`` ``'BN'`` or ``'SyncBN'``; ``requires_grad`` for the BN affine weights.
        norm_eval: keep every BatchNorm in eval mode (running statistics frozen) in ``train()``.
        init_cfg: ``dict(type='Pretrained', checkpoint=PATH_OR_URL)`` loads an ImageNet checkpoint
            (see :func:`pdarts_wild.checkpoints.our_key_layout`); every trunk weight must be found in it. A bad
            file stops the start with one line naming it (:class:`pdarts_wild.checkpoints.CheckpointError`).
    """

    def __init__(
        self,
        genotype: str = "PDARTS",
        init_channels: int = 48,
        layers: int = 14,
        out_indices: Sequence[int] = (0, 1, 2, 3),
        frozen_stages: int = -1,
        norm_cfg: Optional[dict] = None,
        norm_eval: bool = True,
        init_cfg: Optional[dict] = None,
    ) -> None:
        super().__init__(init_cfg=init_cfg)
        self.out_indices = _check_out_indices(out_indices)
        if frozen_stages not in (-1, *LEVELS):
            raise ValueError(f"frozen_stages must be -1 (none) or one of {LEVELS}, got {frozen_stages}")
        if layers < 3:
            raise ValueError(f"PDARTSNet needs layers >= 3 (one non-empty stage per stride), got {layers}")
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        cell = resolve_genotype(genotype)
        self.genotype = cell.to_string()  # the DARTS string, recorded in the work dir and metrics.json
        net = NetworkImageNet(cell, C=init_channels, num_classes=1, layers=layers)
        self.stem0, self.stem1, self.cells = net.stem0, net.stem1, net.cells
        self.stem_stride = net.stem_stride
        self.num_reductions = len(net.reduction_cells)
        first, second = net.reduction_cells
        # Stage k holds cells stage_bounds[k-1] .. stage_bounds[k] - 1; its last cell is level k's tap.
        self.stage_bounds = (0, first, second, layers)
        self.level_channels = (init_channels, *(net.cell_channels[b - 1] for b in self.stage_bounds[1:]))
        self.level_strides = (net.stem_stride // 2, *(net.cell_strides[b - 1] for b in self.stage_bounds[1:]))
        self.out_channels = tuple(self.level_channels[i] for i in self.out_indices)
        self.out_strides = tuple(self.level_strides[i] for i in self.out_indices)
        self._tap_cells = [self.stage_bounds[i] - 1 for i in self.out_indices if i > 0]
        self._apply_norm_cfg(norm_cfg or dict(type="BN", requires_grad=True))
        self._freeze_stages()

    def _apply_norm_cfg(self, norm_cfg: dict) -> None:
        """SyncBN conversion and BN weight freezing, as ``build_norm_layer`` does for ResNet."""
        kind = norm_cfg.get("type", "BN")
        if kind == "SyncBN":
            for name in ("stem0", "stem1", "cells"):
                setattr(self, name, nn.SyncBatchNorm.convert_sync_batchnorm(getattr(self, name)))
        elif kind != "BN":
            raise ValueError(f"PDARTSNet supports norm_cfg type 'BN' or 'SyncBN', got {kind!r}")
        for m in self.modules():
            if isinstance(m, _BatchNorm):
                m.requires_grad_(norm_cfg.get("requires_grad", True))

    def stage_modules(self, stage: int) -> list[nn.Module]:
        """The modules of a stage: 0 = the stems, k = the cells of stage k."""
        if stage == 0:
            return [self.stem0, self.stem1]
        return list(self.cells[self.stage_bounds[stage - 1] : self.stage_bounds[stage]])

    def _freeze_stages(self) -> None:
        for stage in range(self.frozen_stages + 1):
            for m in self.stage_modules(stage):
                m.eval()
                m.requires_grad_(False)

    def train(self, mode: bool = True) -> "PDARTSNet":
        """Train mode, with frozen stages (and with ``norm_eval`` every BatchNorm) left in eval mode."""
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self

    def init_weights(self) -> None:
        """Load the ImageNet checkpoint of ``init_cfg`` (``type='Pretrained'``); otherwise MMEngine's init."""
        cfg = self.init_cfg
        if not (isinstance(cfg, dict) and cfg.get("type") == "Pretrained"):
            super().init_weights()
            return
        checkpoint = str(cfg["checkpoint"])
        if "://" not in checkpoint and not Path(checkpoint).expanduser().exists():
            raise FileNotFoundError(
                f"PDARTSNet: ImageNet checkpoint {checkpoint!r} not found; point "
                "model.backbone.init_cfg.checkpoint at a tools/train_imagenet.py / timm / released "
                "file, or set model.backbone.init_cfg=None to train from scratch"
            )
        print_log(f"PDARTSNet: loading ImageNet weights from {checkpoint}", logger="current")
        # A local file is read by read_checkpoint: weights_only=True, and any failure is one line naming the file.
        remote = "://" in checkpoint
        saved = (CheckpointLoader.load_checkpoint(checkpoint, map_location="cpu") if remote
                 else read_checkpoint(checkpoint, what="ImageNet checkpoint"))
        with checkpoint_contents(checkpoint, "PDARTSNet"):
            load_weights(self, trunk_weights(saved), checkpoint)
        self._is_init = True

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The feature maps of ``out_indices``, in level order."""
        x = check_input_size(x, self.stem_stride, self.num_reductions, type(self).__name__)
        s0 = self.stem0(x)
        s1 = self.stem1(s0)
        outs = [s0] if 0 in self.out_indices else []
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1)
            if i in self._tap_cells:
                outs.append(s1)
        return tuple(outs)


def _check_out_indices(out_indices: Sequence[int]) -> tuple[int, ...]:
    """``out_indices`` as a sorted tuple, after a ``ValueError`` naming the valid levels."""
    indices = tuple(out_indices)
    if not indices or any(i not in LEVELS for i in indices) or len(set(indices)) != len(indices):
        raise ValueError(
            f"out_indices must be distinct feature levels from {LEVELS} (0: stem0, stride 4; 1-3: the "
            f"last cell of each stage, strides 8, 16, 32), got {out_indices}"
        )
    return tuple(sorted(indices))
