"""Evaluation networks built from a genotype: the DARTS CIFAR and ImageNet (mobile) networks.

Both stack the same :class:`EvalCell` with the same bookkeeping and heads (:class:`CellNetwork`); they
differ only in the stem and the auxiliary head's pooling stride and BN. Module names and nesting
follow the authors' ``model.py`` (``preprocess0``/``preprocess1``, ``features``/``classifier``, ...)
so that their released checkpoints map onto ours; only the cells' ``_ops`` is called ``ops`` here.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator, Optional

import torch
import torch.fx
from torch import nn
from torch.utils.checkpoint import checkpoint

from .genotype import Genotype, Pair
from .ops import GlobalAvgPool, build_op, cell_preprocessing, is_identity
from .zoo import resolve_genotype


def drop_path(x: torch.Tensor, p: float) -> torch.Tensor:
    """Zero whole samples with probability ``p`` and scale the kept ones by ``1 / (1 - p)``.

    One Bernoulli(1 - p) draw per sample (mask N x 1 x 1 x 1); ``x`` itself is left untouched.
    The caller decides when it applies (the cells: training mode only).
    """
    if not 0.0 <= p < 1.0:
        raise ValueError(f"drop-path probability must be in [0, 1), got {p}")
    if p == 0.0:
        return x
    keep = 1.0 - p
    mask = torch.empty(x.shape[0], 1, 1, 1, dtype=x.dtype, device=x.device).bernoulli_(keep)
    return x / keep * mask


@torch.fx.wrap  # a leaf under FX tracing (torchvision's create_feature_extractor)
def check_input_size(x: torch.Tensor, stem_stride: int, reductions: int, network: str) -> torch.Tensor:
    """``x``, after a ``ValueError`` unless H and W are multiples of the total stride (FactorizedReduce
    needs even sizes). Returning ``x`` keeps the check in FX graphs that prune unused calls."""
    h, w = x.shape[-2], x.shape[-1]
    multiple = stem_stride << reductions
    if h % multiple != 0 or w % multiple != 0:
        raise ValueError(
            f"{network} needs input height and width that are multiples of {multiple} (stem stride "
            f"{stem_stride}, then {reductions} reduction cells whose FactorizedReduce layers need even "
            f"sizes), got {h}x{w}"
        )
    return x


class EvalCell(nn.Module):
    """A discrete cell: node i = op_a(state) + op_b(state); output = concat of the listed states.

    States 0 and 1 are the preprocessed outputs of the two previous cells (s0 is halved by a
    :class:`FactorizedReduce` when the previous cell was a reduction cell). In a reduction cell the
    ops reading states 0 and 1 have stride 2. Any number of nodes is supported.
    """

    def __init__(
        self,
        genotype: Genotype,
        c_prev_prev: int,
        c_prev: int,
        c: int,
        reduction: bool,
        reduction_prev: bool,
    ) -> None:
        super().__init__()
        self.reduction = reduction
        self.preprocess0, self.preprocess1 = cell_preprocessing(c_prev_prev, c_prev, c, reduction_prev, affine=True)
        pairs: tuple[Pair, ...] = genotype.reduce if reduction else genotype.normal
        # Lists, not tuples: TorchScript indexes lists with loop variables.
        self.concat: list[int] = list(genotype.reduce_concat if reduction else genotype.normal_concat)
        self.indices: list[int] = [j for _, j in pairs]
        self.ops = nn.ModuleList(
            build_op(name, c, 2 if reduction and j < 2 else 1, affine=True) for name, j in pairs
        )
        self.droppable: list[bool] = [not is_identity(op) for op in self.ops]
        self.multiplier = len(self.concat)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, drop_prob: float = 0.0) -> torch.Tensor:
        """Ops 2i and 2i+1 feed node i; in training each op output but a stride-1 identity is drop-pathed."""
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        first = states[0]  # the even op's output, until its odd partner completes the node
        for k, op in enumerate(self.ops):
            h = op(states[self.indices[k]])
            if self.training and drop_prob > 0.0 and self.droppable[k]:
                h = drop_path(h, drop_prob)
            if k % 2 == 0:
                first = h
            else:
                states.append(first + h)
        return torch.cat([states[i] for i in self.concat], dim=1)


def classifier_layer(c_in: int, num_classes: int) -> nn.Module:
    """``Linear(c_in, num_classes)``; for ``num_classes=0`` an identity (the head returns features)."""
    return nn.Linear(c_in, num_classes) if num_classes > 0 else nn.Identity()


class AuxiliaryHead(nn.Module):
    """The auxiliary classifier tower: ReLU -> AvgPool 5 -> 1x1 conv 128 -> BN -> ReLU ->
    2x2 conv 768 -> [BN] -> ReLU -> Linear.

    CIFAR: pool stride 3 on the 8x8 map of a 32x32 input, with the BN(768). ImageNet: pool stride 2
    on the 7x7 map of a 224x224 input; the BN(768) is in P-DARTS' head but not in DARTS'/PC-DARTS'.
    """

    num_features = 768  # the classifier's input

    def __init__(self, c_in: int, num_classes: int, pool_stride: int, bn_after_768: bool = True) -> None:
        super().__init__()
        self.pool_stride = pool_stride
        self.features = nn.Sequential(
            nn.ReLU(),
            nn.AvgPool2d(5, stride=pool_stride, padding=0, count_include_pad=False),
            nn.Conv2d(c_in, 128, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(),
            nn.Conv2d(128, 768, 2, bias=False),
            *([nn.BatchNorm2d(768)] if bn_after_768 else []),
            nn.ReLU(),
        )
        self.classifier = classifier_layer(self.num_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2], x.shape[-1]
        if (h - 5) // self.pool_stride + 1 != 2 or (w - 5) // self.pool_stride + 1 != 2:
            raise ValueError(
                f"the auxiliary head needs a feature map that its 5x5 stride-{self.pool_stride} pooling "
                f"reduces to 2x2 (the 8x8 map of a 32x32 CIFAR input, the 7x7 map of a 224x224 ImageNet "
                f"input), got {h}x{w}; train with auxiliary=False at other input sizes"
            )
        return self.classifier(self.features(x).flatten(1))


class CellNetwork(nn.Module):
    """Cell stacking shared by the CIFAR and ImageNet networks.

    Subclasses build their stem, then call :meth:`_build_cells` and :meth:`_build_heads`, and
    implement :meth:`stem_outputs`. Cells ``layers // 3`` and ``2 * layers // 3`` are reduction
    cells; the auxiliary head reads the output of cell ``2 * layers // 3``.

    Filled in at build time: ``cell_channels`` and ``cell_strides`` (each cell's output channels and
    stride w.r.t. the input), ``reduction_cells`` and ``aux_cell_index``. Settable at any time:
    ``drop_path_prob``, read by the cells in every forward (the training loop ramps it up), and
    ``grad_checkpointing`` (recompute each cell's activations in backward instead of storing them).
    TorchScript-compatible (``torch.jit.script``); ``auxiliary`` is a constant there.
    """

    __constants__ = ["auxiliary"]

    def stem_outputs(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The two states (s0, s1) the first cell reads."""
        raise NotImplementedError

    def _build_cells(
        self, genotype: Genotype, c: int, layers: int, c_stem: int, stem_stride: int, stem_reduces: bool
    ) -> None:
        """Stack ``layers`` cells on a stem whose outputs have ``c_stem`` channels at ``stem_stride``.

        ``stem_reduces``: the stem's s1 is half the size of its s0, so the first cell halves s0.
        """
        if layers < 1:
            raise ValueError(f"a network needs at least one cell, got layers={layers}")
        genotype.validate()
        self.network_name = type(self).__name__
        self.drop_path_prob = 0.0
        self.grad_checkpointing = False
        self.reduction_cells = sorted({layers // 3, 2 * layers // 3})
        self.aux_cell_index = 2 * layers // 3
        self.stem_stride = stem_stride
        self.cells = nn.ModuleList()
        self.cell_channels: list[int] = []
        self.cell_strides: list[int] = []
        c_prev_prev, c_prev, c_curr, stride, reduction_prev = c_stem, c_stem, c, stem_stride, stem_reduces
        for i in range(layers):
            reduction = i in self.reduction_cells
            if reduction:
                c_curr, stride = c_curr * 2, stride * 2
            cell = EvalCell(genotype, c_prev_prev, c_prev, c_curr, reduction, reduction_prev)
            self.cells.append(cell)
            c_prev_prev, c_prev, reduction_prev = c_prev, cell.multiplier * c_curr, reduction
            self.cell_channels.append(c_prev)
            self.cell_strides.append(stride)

    def _build_heads(self, num_classes: int, auxiliary: bool, aux_pool_stride: int, aux_bn: bool) -> None:
        """The optional auxiliary head, the global average pooling and the linear classifier.

        The authors' ImageNet network pools with AvgPool2d(7), right only for 224x224 inputs (7x7 final
        map). The adaptive pool has no parameters either (same state dict) and the same outputs there, up
        to float rounding (~1e-7: another summation order); it also serves every other input size.
        """
        self.auxiliary = auxiliary
        if auxiliary:
            c_aux = self.cell_channels[self.aux_cell_index]
            self.auxiliary_head = AuxiliaryHead(c_aux, num_classes, aux_pool_stride, aux_bn)
        self.global_pooling = GlobalAvgPool()
        self.classifier = classifier_layer(self.cell_channels[-1], num_classes)

    def cell_outputs(self, x: torch.Tensor, indices: list[int]) -> list[torch.Tensor]:
        """The outputs of the cells listed in ``indices``, in cell order (shapes: ``cell_channels``,
        ``cell_strides``)."""
        x = check_input_size(x, self.stem_stride, len(self.reduction_cells), self.network_name)
        s0, s1 = self.stem_outputs(x)
        outputs: list[torch.Tensor] = []
        for i, cell in enumerate(self.cells):
            if self.grad_checkpointing and not torch.jit.is_scripting():
                s2 = checkpoint(cell, s0, s1, self.drop_path_prob, use_reentrant=False)
            else:
                s2 = cell(s0, s1, self.drop_path_prob)
            s0, s1 = s1, s2
            if i in indices:
                outputs.append(s1)
        return outputs

    def iter_cell_outputs(self, x: torch.Tensor) -> Iterator[torch.Tensor]:
        """Each cell's output in order; for feature taps."""
        return iter(self.cell_outputs(x, list(range(len(self.cells)))))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last cell's output."""
        return self.cell_outputs(x, [len(self.cells) - 1])[0]

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Logits from the last cell's output: global average pooling, then the linear classifier."""
        return self.classifier(self.global_pooling(features).flatten(1))

    def forward_with_aux(self, x: torch.Tensor) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """``(logits, aux_logits)``; ``aux_logits`` is None unless training with ``auxiliary=True``."""
        last = len(self.cells) - 1
        if self.auxiliary and self.training:
            outputs = self.cell_outputs(x, [self.aux_cell_index, last])  # one tensor if they coincide
            return self.forward_head(outputs[-1]), self.auxiliary_head(outputs[0])
        return self.forward_head(self.cell_outputs(x, [last])[0]), None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """``(logits, aux_logits)``: see :meth:`forward_with_aux`."""
        return self.forward_with_aux(x)


class NetworkCIFAR(CellNetwork):
    """The DARTS CIFAR network: 3x3 conv stem (3C channels), ``layers`` cells, global average pool."""

    def __init__(
        self,
        genotype: Genotype | str | Path,
        C: int = 36,
        num_classes: int = 10,
        layers: int = 20,
        auxiliary: bool = False,
        in_chans: int = 3,
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_chans, 3 * C, 3, padding=1, bias=False), nn.BatchNorm2d(3 * C))
        self._build_cells(resolve_genotype(genotype), C, layers, c_stem=3 * C, stem_stride=1, stem_reduces=False)
        self._build_heads(num_classes, auxiliary, aux_pool_stride=3, aux_bn=True)

    def stem_outputs(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s = self.stem(x)
        return s, s


class NetworkImageNet(CellNetwork):
    """The DARTS ImageNet (mobile) network: two-part stride-8 stem, ``layers`` cells, average pool.

    ``stem0`` (stride 4, C channels) feeds the first cell's s0 and ``stem1`` (stride 8) its s1.
    ``aux_bn``: BN(768) in the auxiliary head (True: P-DARTS; False: DARTS / PC-DARTS checkpoints).
    """

    def __init__(
        self,
        genotype: Genotype | str | Path,
        C: int = 48,
        num_classes: int = 1000,
        layers: int = 14,
        auxiliary: bool = False,
        in_chans: int = 3,
        aux_bn: bool = True,
    ) -> None:
        super().__init__()
        self.stem0 = nn.Sequential(
            nn.Conv2d(in_chans, C // 2, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(C // 2),
            nn.ReLU(inplace=True),
            nn.Conv2d(C // 2, C, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(C),
        )
        # Not in-place (unlike the authors' code): stem0's output stays intact for feature taps.
        self.stem1 = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(C, C, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(C),
        )
        self._build_cells(resolve_genotype(genotype), C, layers, c_stem=C, stem_stride=8, stem_reduces=True)
        self._build_heads(num_classes, auxiliary, aux_pool_stride=2, aux_bn=aux_bn)

    def stem_outputs(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s0 = self.stem0(x)
        return s0, self.stem1(s0)


def count_parameters(model: nn.Module) -> int:
    """Parameters outside the auxiliary head (the papers' convention)."""
    return sum(p.numel() for name, p in model.named_parameters() if "auxiliary" not in name)
