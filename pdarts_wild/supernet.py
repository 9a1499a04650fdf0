"""The one search supernet: cells of mixed edges, each edge with its own candidate ops.

Architecture parameters are one (edges x primitives) matrix per cell type; a boolean mask says which
ops each edge still holds, and each edge's weights are the softmax over its own ops only. Algorithms
change how the supernet is used (which ops it holds, which parameters train), never its code.
"""
from __future__ import annotations

from typing import Iterator

import torch
from torch import nn
from torch.nn import functional as F

from .ops import POOLING_OPS, build_op, cell_preprocessing, is_identity
from .spaces import CELL_TYPES, Candidates, SearchSpace, edge_inputs, node_edges


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Interleave ``groups`` channel groups: new channel j*groups + g holds old channel g*(C/groups) + j."""
    n, c, h, w = x.shape
    return x.view(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class MixedEdge(nn.Module):
    """Softmax-weighted sum of an edge's candidate ops; ``none`` contributes exactly zero and is not computed.

    With ``partial`` = K > 1 (PC-DARTS), only the first C/K channels go through the ops; the others
    bypass them (max-pooled on stride-2 edges) and a channel shuffle mixes the two parts.
    """

    def __init__(self, op_names: tuple[str, ...], channels: int, stride: int, affine: bool, skip_dropout: float,
                 partial: int = 1) -> None:
        super().__init__()
        self.op_names = op_names
        self.stride = stride
        self.partial = partial
        self.width = channels // partial
        self.affine = affine
        self.skip_dropout = skip_dropout
        self.computed = [i for i, name in enumerate(op_names) if name != "none"]
        self.ops = nn.ModuleList(self._build(op_names[i], self.width, stride, affine, skip_dropout) for i in self.computed)

    @staticmethod
    def _build(name: str, channels: int, stride: int, affine: bool, skip_dropout: float) -> nn.Module:
        op = build_op(name, channels, stride, affine)
        if name in POOLING_OPS:
            return nn.Sequential(op, nn.BatchNorm2d(channels, affine=affine))
        if is_identity(op) and skip_dropout > 0:
            return nn.Sequential(op, nn.Dropout(skip_dropout))
        return op

    def add_op(self, op_names: tuple[str, ...], name: str) -> None:
        """Hold ``op_names`` (the current ops plus ``name``, in column order): a fresh module for ``name``
        goes to its place among the others, which keep their modules."""
        self.op_names = op_names
        self.computed = [i for i, op in enumerate(op_names) if op != "none"]
        if name != "none":
            module = self._build(name, self.width, self.stride, self.affine, self.skip_dropout)
            self.ops.insert(self.computed.index(op_names.index(name)), module)

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        if self.partial == 1:
            return self._mix(x, weights)
        k = x.shape[1] // self.partial
        bypass = x[:, k:]
        if self.stride == 2:
            bypass = F.max_pool2d(bypass, 2, 2)
        return channel_shuffle(torch.cat([self._mix(x[:, :k], weights), bypass], dim=1), self.partial)

    def _mix(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return sum(weights[i] * op(x) for i, op in zip(self.computed, self.ops))


class SearchCell(nn.Module):
    """A DARTS search cell: preprocessing of c_{k-2} and c_{k-1}, then ``steps`` nodes of mixed edges."""

    def __init__(
        self,
        candidates: list[tuple[str, ...]],
        steps: int,
        c_prev_prev: int,
        c_prev: int,
        channels: int,
        reduction: bool,
        reduction_prev: bool,
        affine: bool,
        skip_dropout: float,
        partial: int = 1,
    ) -> None:
        super().__init__()
        self.reduction = reduction
        self.steps = steps
        self.preprocess0, self.preprocess1 = cell_preprocessing(c_prev_prev, c_prev, channels, reduction_prev, affine)
        self.edges = nn.ModuleList(
            MixedEdge(ops, channels, 2 if reduction and j < 2 else 1, affine, skip_dropout, partial)
            for ops, (_, j) in zip(candidates, edge_inputs(steps))
        )

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, weights: list[torch.Tensor],
                edge_scale: torch.Tensor | None = None) -> torch.Tensor:
        """``edge_scale``: one factor per edge multiplying its output (PC-DARTS edge normalisation)."""
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        edge = 0
        for _ in range(self.steps):
            node = 0
            for state in states:
                out = self.edges[edge](state, weights[edge])
                node = node + (out if edge_scale is None else edge_scale[edge] * out)
                edge += 1
            states.append(node)
        return torch.cat(states[2:], dim=1)


class Supernet(nn.Module):
    """The DARTS search network: stem, ``layers`` search cells (reductions at L//3 and 2L//3), classifier."""

    def __init__(
        self,
        space: SearchSpace,
        candidates: Candidates,
        num_classes: int,
        channels: int = 16,
        layers: int = 8,
        stem_multiplier: int = 3,
        skip_dropout: float = 0.0,
        affine: bool = False,
        in_chans: int = 3,
        partial_channels: int = 1,
        edge_normalization: bool = False,
    ) -> None:
        super().__init__()
        if channels % partial_channels or (channels // partial_channels) % 2:
            raise ValueError(f"partial channels: {channels} channels must split into {partial_channels} groups of an "
                             "even size")
        self.space = space
        self.candidates = {cell: [space.ordered(ops) for ops in candidates[cell]] for cell in CELL_TYPES}
        steps = space.steps
        c_curr = stem_multiplier * channels
        self.stem = nn.Sequential(nn.Conv2d(in_chans, c_curr, 3, padding=1, bias=False), nn.BatchNorm2d(c_curr))
        c_prev_prev, c_prev, c_curr = c_curr, c_curr, channels
        self.cells = nn.ModuleList()
        reduction_prev = False
        for i in range(layers):
            reduction = i in (layers // 3, 2 * layers // 3)
            c_curr = c_curr * 2 if reduction else c_curr
            cell_type = "reduce" if reduction else "normal"
            self.cells.append(SearchCell(self.candidates[cell_type], steps, c_prev_prev, c_prev, c_curr,
                                         reduction, reduction_prev, affine, skip_dropout, partial_channels))
            reduction_prev = reduction
            c_prev_prev, c_prev = c_prev, steps * c_curr
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_prev, num_classes)
        n_ops = len(space.primitives)
        self.alphas = nn.ParameterDict(
            {cell: nn.Parameter(1e-3 * torch.randn(space.num_edges, n_ops)) for cell in CELL_TYPES}
        )
        self.betas = nn.ParameterDict(
            {cell: nn.Parameter(1e-3 * torch.randn(space.num_edges)) for cell in CELL_TYPES} if edge_normalization else {}
        )
        for cell in CELL_TYPES:
            self.register_buffer(f"active_{cell}", self._mask(self.candidates[cell]), persistent=False)

    def _mask(self, candidates: list[tuple[str, ...]]) -> torch.Tensor:
        column = {name: k for k, name in enumerate(self.space.primitives)}
        mask = torch.zeros(self.space.num_edges, len(self.space.primitives), dtype=torch.bool)
        for e, ops in enumerate(candidates):
            mask[e, [column[name] for name in ops]] = True
        return mask

    def add_op(self, name: str) -> None:
        """Append op ``name`` to every edge of both cell types (OPP-DARTS): fresh modules on the supernet's
        device and a fresh 1e-3 N(0, 1) alpha column; other weights and alphas stay as they are."""
        if any(name in ops for cell_type in CELL_TYPES for ops in self.candidates[cell_type]):
            raise ValueError(f"add_op: an edge already holds {name!r}")
        device = self.alphas["normal"].device
        column = self.space.primitives.index(name)
        for cell_type in CELL_TYPES:
            self.candidates[cell_type] = [self.space.ordered((*ops, name)) for ops in self.candidates[cell_type]]
            getattr(self, f"active_{cell_type}")[:, column] = True
            with torch.no_grad():
                self.alphas[cell_type][:, column] = 1e-3 * torch.randn(self.space.num_edges)
        for cell in self.cells:
            ops = self.candidates["reduce" if cell.reduction else "normal"]
            for edge, edge_ops in zip(cell.edges, ops):
                edge.add_op(edge_ops, name)
                edge.to(device)

    def op_probabilities(self, cell: str) -> torch.Tensor:
        """Row-wise softmax of ``cell``'s alphas over each edge's own ops (0 for ops an edge lacks)."""
        mask: torch.Tensor = getattr(self, f"active_{cell}")
        return F.softmax(self.alphas[cell].masked_fill(~mask, float("-inf")), dim=-1)

    def edge_weights(self, cell: str) -> list[torch.Tensor]:
        """Per edge: the weights of its candidate ops, in the edge's op order."""
        probs = self.op_probabilities(cell)
        mask: torch.Tensor = getattr(self, f"active_{cell}")
        return [probs[e][mask[e]] for e in range(probs.shape[0])]

    def edge_scales(self, cell: str) -> torch.Tensor | None:
        """PC-DARTS edge weights: softmax of the betas over the edges entering each node (None without them)."""
        if cell not in self.betas:
            return None
        beta = self.betas[cell]
        return torch.cat([F.softmax(beta[edges], dim=0) for edges in node_edges(self.space.steps)])

    def edge_scale_table(self) -> dict[str, list[float]] | None:
        """Per cell type, the edge weights of :meth:`edge_scales` (what genotype.json stores), or None."""
        if not self.betas:
            return None
        with torch.no_grad():
            return {cell: self.edge_scales(cell).tolist() for cell in CELL_TYPES}

    def alpha_table(self) -> dict[str, list[dict[str, float]]]:
        """Per cell type, per edge: op name -> softmax weight (what genotype.json stores)."""
        table = {}
        for cell in CELL_TYPES:
            with torch.no_grad():
                weights = self.edge_weights(cell)
            table[cell] = [dict(zip(ops, w.tolist())) for ops, w in zip(self.candidates[cell], weights)]
        return table

    def set_skip_dropout(self, p: float) -> None:
        """Set the rate of every skip-connect dropout (P-DARTS search-space regularisation)."""
        for module in self.modules():
            if isinstance(module, nn.Dropout):
                module.p = p

    def freeze_random_features(self, train_classifier: bool = False) -> None:
        """RF-DARTS: every conv (and, unless ``train_classifier``, the classifier) keeps its random initial
        weights; with ``affine=True`` only the BatchNorm scales and shifts (and the architecture) learn."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d) or (module is self.classifier and not train_classifier):
                module.requires_grad_(False)

    def arch_parameters(self) -> list[nn.Parameter]:
        return [*self.alphas.values(), *self.betas.values()]

    def weight_parameters(self) -> Iterator[nn.Parameter]:
        arch = {id(p) for p in self.arch_parameters()}
        return (p for p in self.parameters() if id(p) not in arch and p.requires_grad)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = {cell: self.edge_weights(cell) for cell in CELL_TYPES}
        scales = {cell: self.edge_scales(cell) for cell in CELL_TYPES}
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            kind = "reduce" if cell.reduction else "normal"
            s0, s1 = s1, cell(s0, s1, weights[kind], scales[kind])
        return self.classifier(self.global_pooling(s1).flatten(1))
