"""A straightforward DARTS / P-DARTS / PC-DARTS search supernet: the yardstick of ``tools/bench_search.py``.

Written the way the original DARTS, P-DARTS and PC-DARTS code computes a search cell (our own code):

* every edge holds one module per candidate op, ``none`` included; ``none`` is a :class:`ZeroOp` that
  multiplies its input by zero (strided for reduction edges), so it costs a real kernel and a
  real backward;
* an edge's output is the sum over ALL of its ops of ``w_i * op_i(x)``, nothing skipped;
* the op weights of an edge are the plain softmax over that edge's row of a compact
  ``(edges, ops per edge)`` alpha matrix, recomputed for every cell;
* PC-DARTS: 1/K of the channels go through the ops, the rest bypass them (2x2 max-pooled on stride-2
  edges), then a channel shuffle; edge normalisation weights each edge by the softmax of its ``beta``
  over the edges entering the same node.

The op modules themselves are our :func:`pdarts_wild.ops.build_op` / :func:`cell_preprocessing`
classes (one definition of each op), except that our CPU fast paths are the plain torch modules, as in
the original code (:func:`plain_modules`: dilated depthwise convs, 3x3 average pools, op BatchNorm);
only the mixing, the ``none``
handling and the module layout differ from :class:`pdarts_wild.supernet.Supernet`. :func:`baseline_from` builds one from a
``Supernet`` with the same candidates and copies every parameter and buffer, so the two compute the
same function.
"""
from __future__ import annotations

import re
from typing import Iterator

import torch
from torch import nn
from torch.nn import functional as F

from pdarts_wild.ops import (
    POOLING_OPS,
    AvgPool3x3,
    BatchNorm2d,
    DilatedDepthwiseConv2d,
    build_op,
    cell_preprocessing,
    is_identity,
)
from pdarts_wild.spaces import CELL_TYPES, Candidates, SearchSpace, edge_inputs
from pdarts_wild.supernet import Supernet, darts_cells


class ZeroOp(nn.Module):
    """The original ``none`` op: the input times zero (every ``stride``-th pixel on reduction edges)."""

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            return x.mul(0.0)
        return x[:, :, :: self.stride, :: self.stride].mul(0.0)


def plain_modules(module: nn.Module) -> nn.Module:
    """``module`` with our CPU fast paths swapped for the torch modules the original code builds (phase-wise
    dilated depthwise convs -> ``nn.Conv2d``, ``AvgPool3x3`` -> ``nn.AvgPool2d``, op BatchNorm ->
    ``nn.BatchNorm2d``); same parameter and buffer names and shapes, so our weights load unchanged."""
    plain = _plain(module)
    if plain is not None:
        return plain
    for name, child in module.named_children():
        setattr(module, name, plain_modules(child))
    return module


def _plain(m: nn.Module) -> nn.Module | None:
    """The torch module ``m`` stands for, or None if ``m`` is one."""
    if isinstance(m, DilatedDepthwiseConv2d):
        return nn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding, m.dilation, m.groups,
                         bias=m.bias is not None)
    if isinstance(m, AvgPool3x3):
        return nn.AvgPool2d(3, m.stride, 1, count_include_pad=False)
    if isinstance(m, BatchNorm2d):
        return m.plain()
    return None


def shuffle_channels(x: torch.Tensor, groups: int) -> torch.Tensor:
    """PC-DARTS' channel shuffle: (N, g, C/g, H, W) -> swap the two channel axes -> (N, C, H, W)."""
    n, c, h, w = x.shape
    x = x.view(n, groups, c // groups, h, w)
    x = torch.transpose(x, 1, 2).contiguous()
    return x.view(n, c, h, w)


class BaselineMixedOp(nn.Module):
    """All candidate ops of one edge, ``none`` included, summed with the edge's softmax weights."""

    def __init__(self, op_names: tuple[str, ...], channels: int, stride: int, affine: bool, skip_dropout: float,
                 partial: int = 1) -> None:
        super().__init__()
        self.op_names = op_names
        self.stride = stride
        self.partial = partial
        width = channels // partial
        self.ops = nn.ModuleList()
        for name in op_names:
            if name == "none":
                op: nn.Module = ZeroOp(stride)
            else:
                op = plain_modules(build_op(name, width, stride, affine))
                if name in POOLING_OPS:
                    op = nn.Sequential(op, nn.BatchNorm2d(width, affine=affine))
                elif is_identity(op) and skip_dropout > 0:
                    op = nn.Sequential(op, nn.Dropout(skip_dropout))
            self.ops.append(op)
        self.bypass_pool = nn.MaxPool2d(2, 2) if partial > 1 and stride == 2 else None

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        if self.partial == 1:
            return sum(w * op(x) for w, op in zip(weights, self.ops))
        k = x.shape[1] // self.partial
        through, bypass = x[:, :k, :, :], x[:, k:, :, :]
        mixed = sum(w * op(through) for w, op in zip(weights, self.ops))
        if self.bypass_pool is not None:
            bypass = self.bypass_pool(bypass)
        return shuffle_channels(torch.cat([mixed, bypass], dim=1), self.partial)


class BaselineCell(nn.Module):
    """A search cell: preprocessing, then ``steps`` nodes, each the sum of its edges over all earlier states."""

    def __init__(self, candidates: list[tuple[str, ...]], steps: int, c_prev_prev: int, c_prev: int, channels: int,
                 reduction: bool, reduction_prev: bool, affine: bool, skip_dropout: float, partial: int = 1) -> None:
        super().__init__()
        self.reduction = reduction
        self.steps = steps
        pre0, pre1 = cell_preprocessing(c_prev_prev, c_prev, channels, reduction_prev, affine)
        self.preprocess0, self.preprocess1 = plain_modules(pre0), plain_modules(pre1)
        self.edges = nn.ModuleList(
            BaselineMixedOp(ops, channels, 2 if reduction and j < 2 else 1, affine, skip_dropout, partial)
            for ops, (_, j) in zip(candidates, edge_inputs(steps))
        )

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, weights: torch.Tensor,
                edge_weights: torch.Tensor | None = None) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        offset = 0
        for _ in range(self.steps):
            if edge_weights is None:
                s = sum(self.edges[offset + j](h, weights[offset + j]) for j, h in enumerate(states))
            else:
                s = sum(edge_weights[offset + j] * self.edges[offset + j](h, weights[offset + j])
                        for j, h in enumerate(states))
            offset += len(states)
            states.append(s)
        return torch.cat(states[2:], dim=1)


class BaselineSupernet(nn.Module):
    """Stem, ``layers`` baseline cells (reductions at L//3 and 2L//3), global pooling, classifier.

    ``alphas[cell]`` is a compact ``(edges, ops per edge)`` matrix (column k = the edge's k-th op), as in
    the P-DARTS code, so every edge of a cell type must hold the same number of ops.
    """

    def __init__(self, space: SearchSpace, candidates: Candidates, num_classes: int, channels: int = 16,
                 layers: int = 8, stem_multiplier: int = 3, skip_dropout: float = 0.0, affine: bool = False,
                 in_chans: int = 3, partial_channels: int = 1, edge_normalization: bool = False) -> None:
        super().__init__()
        self.space = space
        self.candidates = {cell: [space.ordered(ops) for ops in candidates[cell]] for cell in CELL_TYPES}
        for cell in CELL_TYPES:
            counts = {len(ops) for ops in self.candidates[cell]}
            if len(counts) != 1:
                raise ValueError(f"the baseline supernet needs the same number of ops on every {cell} edge, got "
                                 f"{sorted(counts)}")
        steps = space.steps
        c_stem = stem_multiplier * channels
        self.stem = nn.Sequential(nn.Conv2d(in_chans, c_stem, 3, padding=1, bias=False), nn.BatchNorm2d(c_stem))
        self.cells, c_prev = darts_cells(
            layers, channels, stem_multiplier, steps,
            lambda kind, c_pp, c_p, c, reduction, reduction_prev: BaselineCell(
                self.candidates[kind], steps, c_pp, c_p, c, reduction, reduction_prev, affine, skip_dropout,
                partial_channels))
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_prev, num_classes)
        self.alphas = nn.ParameterDict({
            cell: nn.Parameter(1e-3 * torch.randn(space.num_edges, len(self.candidates[cell][0])))
            for cell in CELL_TYPES
        })
        self.betas = nn.ParameterDict(
            {cell: nn.Parameter(1e-3 * torch.randn(space.num_edges)) for cell in CELL_TYPES} if edge_normalization else {}
        )

    def arch_parameters(self) -> list[nn.Parameter]:
        return [*self.alphas.values(), *self.betas.values()]

    def weight_parameters(self) -> Iterator[nn.Parameter]:
        arch = {id(p) for p in self.arch_parameters()}
        return (p for p in self.parameters() if id(p) not in arch and p.requires_grad)

    def _edge_weights(self, cell: str) -> torch.Tensor | None:
        if cell not in self.betas:
            return None
        beta, parts, start = self.betas[cell], [], 0
        for node in range(self.space.steps):
            parts.append(F.softmax(beta[start:start + node + 2], dim=-1))
            start += node + 2
        return torch.cat(parts)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            kind = "reduce" if cell.reduction else "normal"
            weights = F.softmax(self.alphas[kind], dim=-1)
            s0, s1 = s1, cell(s0, s1, weights, self._edge_weights(kind))
        return self.classifier(self.global_pooling(s1).flatten(1))


# ------------------------------------------------------------------------------------ from our supernet

_EDGE_OP = re.compile(r"^cells\.(\d+)\.edges\.(\d+)\.ops\.(\d+)\.(.+)$")


def _setting(supernet: Supernet) -> dict:
    """The constructor arguments of ``supernet``, read off its modules."""
    if supernet.space.topology != "darts":
        raise ValueError(f"the baseline supernet has DARTS cells only, not the {supernet.space.topology} topology")
    if any(cell.drop_path > 0 for cell in supernet.cells):
        raise ValueError("the baseline supernet has no drop-path; set it to 0 first")
    steps = supernet.space.steps
    channels = supernet.classifier.in_features // (4 * steps)  # two reductions double C twice
    stem_conv = supernet.stem[0]
    cell_bns = [m for m in supernet.cells.modules() if isinstance(m, nn.BatchNorm2d)]
    dropouts = [m.p for m in supernet.cells.modules() if isinstance(m, nn.Dropout)]
    return {
        "num_classes": supernet.classifier.out_features,
        "channels": channels,
        "layers": len(supernet.cells),
        "stem_multiplier": stem_conv.out_channels // channels,
        "skip_dropout": dropouts[0] if dropouts else 0.0,  # set_skip_dropout() changes the modules' rate
        "affine": any(bn.affine for bn in cell_bns),
        "in_chans": stem_conv.in_channels,
        "partial_channels": supernet.cells[0].edges[0].partial,
        "edge_normalization": len(supernet.betas) > 0,
    }


def state_key_map(supernet: Supernet) -> dict[str, str]:
    """Our state-dict key -> the baseline's, for every parameter and buffer but the alphas.

    Our edge ``ops`` hold the non-``none`` ops only, in the edge's op order; the baseline's hold all,
    so our op k of an edge is the baseline's op at the k-th non-``none`` position.
    """
    mapping = {}
    for key in supernet.state_dict():
        if key.startswith("alphas."):
            continue
        match = _EDGE_OP.match(key)
        if match is None:
            mapping[key] = key
            continue
        c, e, k, rest = match.groups()
        cell = supernet.cells[int(c)]
        names = supernet.candidates["reduce" if cell.reduction else "normal"][int(e)]
        computed = [i for i, name in enumerate(names) if name != "none"]
        mapping[key] = f"cells.{c}.edges.{e}.ops.{computed[int(k)]}.{rest}"
    return mapping


def compact_alphas(supernet: Supernet, cell: str, alphas: torch.Tensor) -> torch.Tensor:
    """Our ``(edges, primitives)`` matrix (alphas or their gradient) -> the baseline's ``(edges, ops per edge)``."""
    column = {name: k for k, name in enumerate(supernet.space.primitives)}
    rows = [alphas[e, [column[name] for name in ops]] for e, ops in enumerate(supernet.candidates[cell])]
    return torch.stack(rows)


def baseline_from(supernet: Supernet) -> BaselineSupernet:
    """A :class:`BaselineSupernet` with ``supernet``'s candidates, every parameter and buffer copied.

    Each baseline edge's softmax runs over the alphas of its own ops, which equals our masked softmax
    over the full alpha row. The result sits on ``supernet``'s device and dtype, in train/eval mode as
    ``supernet``; call ``.to(memory_format=...)`` for another layout.
    """
    first = next(supernet.parameters())
    baseline = BaselineSupernet(supernet.space, supernet.candidates, **_setting(supernet))
    baseline.to(device=first.device, dtype=first.dtype)
    ours, key_map = supernet.state_dict(), state_key_map(supernet)
    state = {theirs: ours[key] for key, theirs in key_map.items()}
    for cell in CELL_TYPES:
        state[f"alphas.{cell}"] = compact_alphas(supernet, cell, ours[f"alphas.{cell}"])
    baseline.load_state_dict(state, strict=True)  # every baseline parameter and buffer must come from ours
    for name, param in supernet.named_parameters():
        if not param.requires_grad and not name.startswith("alphas."):
            baseline.get_parameter(key_map[name]).requires_grad_(False)
    baseline.train(supernet.training)
    return baseline
