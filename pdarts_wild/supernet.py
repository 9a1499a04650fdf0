"""The one search supernet: cells of mixed edges, each edge with its own candidate ops.

Architecture parameters are one (edges x primitives) matrix per cell type; a boolean mask says which
ops each edge still holds, and each edge's weights are the softmax over its own ops only. Algorithms
change how the supernet is used (which ops it holds, which parameters train), never its code.
"""
from __future__ import annotations

from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any, Callable, Iterable, Iterator

import torch
from torch import nn
from torch.autograd.function import once_differentiable
from torch.nn import functional as F
from torch.utils.checkpoint import checkpoint
from torchvision.ops import stochastic_depth

from .nb201 import ResidualReduction
from .ops import (
    POOLING_OPS,
    BatchNorm2d,
    GlobalAvgPool,
    UniformMaskDropout,
    build_op,
    cell_preprocessing,
    is_identity,
    memory_format_of,
)
from .spaces import Candidates, SearchSpace, edge_inputs


def accumulate(total: torch.Tensor | None, term: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """``total + weight * term`` in one pass over the map (``total`` None: nothing yet; ``weight`` None: 1)."""
    if weight is None:
        return term if total is None else total + term
    return torch.mul(weight, term) if total is None else torch.addcmul(total, weight, term)


def _has_state(module: nn.Module) -> bool:
    """True if ``module`` holds parameters or statistics (convolutions, BatchNorm; not a dropout's rate)."""
    return bool(module.state_dict())


class MixedEdge(nn.Module):
    """Softmax-weighted sum of an edge's candidate ops; ``none`` contributes exactly zero and is not computed.

    With ``partial`` = K > 1 (PC-DARTS), only the first C/K channels go through the ops; the others
    bypass them (max-pooled on stride-2 edges) and a channel shuffle mixes the two parts. Pools are
    followed by a BatchNorm in DARTS-space cells (``pool_bn``), not in NAS-Bench-201 cells.

    With ``recompute`` (on by default) the ops' inner activations are not kept for the backward pass but
    computed again there (activation checkpointing): the same numbers, several times less memory. The
    recomputation replays the random draws of dropout and noise and leaves BN running statistics alone.
    """

    recompute = True

    def __init__(self, op_names: tuple[str, ...], channels: int, stride: int, affine: bool, skip_dropout: float,
                 partial: int = 1, pool_bn: bool = True) -> None:
        super().__init__()
        self.op_names = op_names
        self.stride = stride
        self.partial = partial
        self.width = channels // partial
        self.affine = affine
        self.skip_dropout = skip_dropout
        self.pool_bn = pool_bn
        self.computed = [i for i, name in enumerate(op_names) if name != "none"]
        self.ops = nn.ModuleList(self._build(op_names[i]) for i in self.computed)
        self._group_ops()

    def _build(self, name: str) -> nn.Module:
        op = build_op(name, self.width, self.stride, self.affine)
        if name in POOLING_OPS and self.pool_bn:
            return nn.Sequential(op, BatchNorm2d(self.width, affine=self.affine))
        if is_identity(op) and self.skip_dropout > 0:
            return nn.Sequential(op, UniformMaskDropout(self.skip_dropout))
        return op

    def add_op(self, op_names: tuple[str, ...], name: str) -> None:
        """Hold ``op_names`` (the current ops plus ``name``, in column order): a fresh module for ``name``
        goes to its place among the others, which keep their modules."""
        self.op_names = op_names
        self.computed = [i for i, op in enumerate(op_names) if op != "none"]
        if name != "none":
            module = self._build(name)
            self.ops.insert(self.computed.index(op_names.index(name)), module)
        self._group_ops()

    def _group_ops(self) -> None:
        """Positions in ``self.ops`` of the ops without parameters or statistics (skip, its dropout, noise:
        ``light``) and of the others (``heavy``, the ones recomputation recomputes)."""
        self.light = [k for k, op in enumerate(self.ops) if not _has_state(op)]
        self.heavy = [k for k, op in enumerate(self.ops) if _has_state(op)]

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor | None:
        if self.partial == 1:
            return self._mixed(x, weights)
        # split (not slicing) and F.channel_shuffle keep channels-last in the forward and the backward pass;
        # the ops' part is made dense once, not by each op
        through, bypass = torch.split(x, [self.width, x.shape[1] - self.width], dim=1)
        through = through.contiguous(memory_format=memory_format_of(x))
        if self.stride == 2:
            bypass = F.max_pool2d(bypass, 2, 2)
        return F.channel_shuffle(torch.cat([self._mixed(through, weights), bypass], dim=1), self.partial)

    def _mixed(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor | None:
        """Ops without parameters or statistics (skip, its dropout, noise) are cheap to keep and would draw their
        random numbers twice if recomputed: with ``recompute`` only the others are. Either way the others' terms
        are added onto the light ops' sum one by one, so that recomputation changes no rounding of the forward
        pass (the backward pass adds the same gradients in another order)."""
        out = self._mix(x, weights, self.light)
        if self.heavy and self.recompute and torch.is_grad_enabled():
            if torch.compiler.is_compiling():  # our Function's backward cannot be traced; the compiler's recomputation
                return checkpoint(self._mix, x, weights, self.heavy, out, use_reentrant=False)
            return _RecomputedOps.apply(self, x, weights, out, *self._heavy_parameters())
        return self._mix(x, weights, self.heavy, out)

    def _heavy_parameters(self) -> list[nn.Parameter]:
        return [p for k in self.heavy for p in self.ops[k].parameters()]

    def _mix(self, x: torch.Tensor, weights: torch.Tensor, which: list[int],
             out: torch.Tensor | None = None) -> torch.Tensor | None:
        """``out`` plus the weighted sum of the ops at positions ``which`` of ``self.ops`` (None: nothing)."""
        for k in which:
            out = accumulate(out, self.ops[k](x), weights[self.computed[k]])
        return out

    @contextmanager
    def _statistics_kept(self) -> Iterator[None]:
        """Around the recomputation: BN running statistics (and counters) are put back, so that they move
        once per forward pass, as without recomputation."""
        saved = [b.clone() for b in self.buffers()]
        try:
            yield
        finally:
            with torch.no_grad():
                for buffer, value in zip(self.buffers(), saved):
                    buffer.copy_(value)


class _RecomputedOps(torch.autograd.Function):
    """The weighted sum of a mixed edge's heavy ops that keeps only its input and weights for the backward
    pass, where it is computed again with gradients on and differentiated. The ops' parameters are inputs
    of the function, so that their gradients flow through the outer graph like any other (accumulated once,
    seen by DDP's hooks, reachable by ``torch.autograd.grad``). Against ``torch.utils.checkpoint``'s
    non-reentrant mode (no Python hook per saved tensor; one edge's recomputed graph alive only while its
    own gradients are computed), a CPU search step of P-DARTS stage 3 or PC-DARTS is 3-8% faster, and its
    peak memory 11-35% lower."""

    @staticmethod
    def forward(ctx: Any, edge: MixedEdge, x: torch.Tensor, weights: torch.Tensor, out: torch.Tensor | None,
                *params: nn.Parameter) -> torch.Tensor:
        """``out`` (the light ops' sum, or None) plus the heavy ops' weighted sum."""
        ctx.edge = edge
        device = x.device.type  # the recomputation runs under the forward pass' autocast
        ctx.autocast = (device, torch.get_autocast_dtype(device), torch.is_autocast_enabled(device))
        ctx.save_for_backward(x, weights, *params)
        return edge._mix(x, weights, edge.heavy, out)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, weights, *params = ctx.saved_tensors
        need_x, need_weights, need_out, *need_params = ctx.needs_input_grad[1:]
        needed = (need_x, need_weights, *need_params)
        x, weights = x.detach().requires_grad_(need_x), weights.detach().requires_grad_(need_weights)
        wanted = [t for t, need in zip((x, weights, *params), needed) if need]
        # BN's backward keeps its running statistics: they are put back only once it has run
        device, dtype, enabled = ctx.autocast
        with torch.enable_grad(), autocast_as(device, dtype, enabled), ctx.edge._statistics_kept():
            grads = iter(torch.autograd.grad(ctx.edge._mix(x, weights, ctx.edge.heavy), wanted, grad, allow_unused=True))
        grad_x, grad_weights, *grad_params = (next(grads) if need else None for need in needed)
        return None, grad_x, grad_weights, grad if need_out else None, *grad_params


def autocast_as(device: str, dtype: torch.dtype, enabled: bool) -> AbstractContextManager[object]:
    """Autocast to ``dtype`` on ``device`` if ``enabled``; else nothing (not even an autocast region that is off)."""
    return torch.autocast(device, dtype) if enabled else nullcontext()


def sum_nodes(states: list[torch.Tensor], edges: nn.ModuleList, steps: int, weights: list[torch.Tensor],
              edge_scale: torch.Tensor | None, drop_path: float, training: bool) -> list[torch.Tensor]:
    """Append ``steps`` nodes to ``states``, each the sum of one mixed edge from every state before it (edges
    in alpha-row order). ``edge_scale``: one factor per edge (PC-DARTS edge normalisation); ``drop_path``:
    RobustDARTS' per-sample drop-path on every edge output while training."""
    edge = 0
    for _ in range(steps):
        node = None
        for state in states:
            out = edges[edge](state, weights[edge])
            if out is not None:  # None: the edge holds only ``none``
                if drop_path > 0:
                    out = stochastic_depth(out, drop_path, "row", training)
                node = accumulate(node, out, None if edge_scale is None else edge_scale[edge])
            edge += 1
        states.append(node)
    return states


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
        self.kind = "reduce" if reduction else "normal"
        self.steps = steps
        self.drop_path = 0.0
        self.preprocess0, self.preprocess1 = cell_preprocessing(c_prev_prev, c_prev, channels, reduction_prev, affine)
        self.edges = nn.ModuleList(
            MixedEdge(ops, channels, 2 if reduction and j < 2 else 1, affine, skip_dropout, partial)
            for ops, (_, j) in zip(candidates, edge_inputs(steps))
        )

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, weights: list[torch.Tensor],
                edge_scale: torch.Tensor | None = None) -> torch.Tensor:
        """``edge_scale``: one factor per edge multiplying its output (PC-DARTS edge normalisation)."""
        states = sum_nodes([self.preprocess0(s0), self.preprocess1(s1)], self.edges, self.steps, weights, edge_scale,
                           self.drop_path, self.training)
        return torch.cat(states[2:], dim=1)


class NB201SearchCell(nn.Module):
    """A NAS-Bench-201 search cell: nodes 1..``steps`` each sum a mixed edge from every earlier node; the last
    node is the output (channels unchanged, no preprocessing, pools without BatchNorm)."""

    kind = "normal"

    def __init__(self, candidates: list[tuple[str, ...]], steps: int, channels: int, affine: bool, skip_dropout: float,
                 partial: int = 1) -> None:
        super().__init__()
        self.steps = steps
        self.drop_path = 0.0
        self.edges = nn.ModuleList(MixedEdge(ops, channels, 1, affine, skip_dropout, partial, pool_bn=False)
                                   for ops in candidates)

    def forward(self, x: torch.Tensor, weights: list[torch.Tensor], edge_scale: torch.Tensor | None = None) -> torch.Tensor:
        return sum_nodes([x], self.edges, self.steps, weights, edge_scale, self.drop_path, self.training)[-1]


CellFactory = Callable[[str, int, int, int, bool, bool], nn.Module]


def darts_cells(layers: int, channels: int, stem_multiplier: int, steps: int,
                make_cell: CellFactory) -> tuple[nn.ModuleList, int]:
    """The cells of DARTS' search skeleton (reductions at L//3 and 2L//3, channels doubled there), each
    ``make_cell(cell_type, c_prev_prev, c_prev, c, reduction, reduction_prev)``; and the last one's output channels."""
    c_prev_prev = c_prev = stem_multiplier * channels
    c_curr = channels
    cells = nn.ModuleList()
    reduction_prev = False
    for i in range(layers):
        reduction = i in (layers // 3, 2 * layers // 3)
        c_curr = c_curr * 2 if reduction else c_curr
        cells.append(make_cell("reduce" if reduction else "normal", c_prev_prev, c_prev, c_curr, reduction,
                               reduction_prev))
        reduction_prev = reduction
        c_prev_prev, c_prev = c_prev, steps * c_curr
    return cells, c_prev


class Supernet(nn.Module):
    """The search network of ``space``'s topology, with one (edges x primitives) alpha matrix per cell type.

    DARTS topology: stem, ``layers`` search cells (reductions at L//3 and 2L//3), classifier.
    NAS-Bench-201: stem, three stages of ``layers`` cells (C, 2C, 4C channels) joined by the benchmark's
    residual reduction blocks, BN-ReLU, classifier; one alpha matrix shared by every cell.
    """

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
        recompute: bool = True,
    ) -> None:
        super().__init__()
        if channels % partial_channels or (channels // partial_channels) % 2:
            raise ValueError(f"partial channels: {channels} channels must split into {partial_channels} groups of an "
                             "even size")
        self.space = space
        self.cell_types = space.cell_types
        self.candidates = {cell: [space.ordered(ops) for ops in candidates[cell]] for cell in self.cell_types}
        self.head: nn.Module = nn.Identity()
        if space.topology == "nb201":
            c_out = self._build_nb201(in_chans, channels, layers, affine, skip_dropout, partial_channels)
        else:
            c_out = self._build_darts(in_chans, channels, layers, stem_multiplier, affine, skip_dropout, partial_channels)
        self.global_pooling = GlobalAvgPool()
        self.classifier = nn.Linear(c_out, num_classes)
        n_ops = len(space.primitives)
        self.alphas = nn.ParameterDict(
            {cell: nn.Parameter(1e-3 * torch.randn(space.num_edges, n_ops)) for cell in self.cell_types}
        )
        self.betas = nn.ParameterDict(
            {cell: nn.Parameter(1e-3 * torch.randn(space.num_edges)) for cell in self.cell_types}
            if edge_normalization else {}
        )
        for cell in self.cell_types:
            self.register_buffer(f"active_{cell}", self._mask(self.candidates[cell]), persistent=False)
        self.set_recompute(recompute)

    def _build_darts(self, in_chans: int, channels: int, layers: int, stem_multiplier: int, affine: bool,
                     skip_dropout: float, partial: int) -> int:
        """Stem and DARTS search cells; returns the channels of the last cell's output."""
        steps = self.space.steps
        c_stem = stem_multiplier * channels
        self.stem = nn.Sequential(nn.Conv2d(in_chans, c_stem, 3, padding=1, bias=False), nn.BatchNorm2d(c_stem))
        self.cells, c_out = darts_cells(
            layers, channels, stem_multiplier, steps,
            lambda kind, c_pp, c_p, c, reduction, reduction_prev: SearchCell(
                self.candidates[kind], steps, c_pp, c_p, c, reduction, reduction_prev, affine, skip_dropout, partial))
        return c_out

    def _build_nb201(self, in_chans: int, channels: int, layers: int, affine: bool, skip_dropout: float,
                     partial: int) -> int:
        """NAS-Bench-201's skeleton with search cells; returns the channels of the last stage."""
        self.stem = nn.Sequential(nn.Conv2d(in_chans, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels))
        blocks: list[nn.Module] = []
        for stage, c in enumerate((channels, 2 * channels, 4 * channels)):
            if stage:
                blocks.append(ResidualReduction(c // 2, c))
            blocks += [NB201SearchCell(self.candidates["normal"], self.space.steps, c, affine, skip_dropout, partial)
                       for _ in range(layers)]
        self.cells = nn.ModuleList(blocks)
        self.head = nn.Sequential(nn.BatchNorm2d(4 * channels), nn.ReLU(inplace=True))
        return 4 * channels

    def search_cells(self) -> Iterator[SearchCell | NB201SearchCell]:
        """The cells holding mixed edges (not NAS-Bench-201's fixed reduction blocks)."""
        return (cell for cell in self.cells if isinstance(cell, (SearchCell, NB201SearchCell)))

    def _mask(self, candidates: list[tuple[str, ...]]) -> torch.Tensor:
        column = {name: k for k, name in enumerate(self.space.primitives)}
        mask = torch.zeros(self.space.num_edges, len(self.space.primitives), dtype=torch.bool)
        for e, ops in enumerate(candidates):
            mask[e, [column[name] for name in ops]] = True
        return mask

    def add_op(self, name: str) -> None:
        """Append op ``name`` to every edge of both cell types (OPP-DARTS): fresh modules on the supernet's
        device and a fresh 1e-3 N(0, 1) alpha column; other weights and alphas stay as they are."""
        if any(name in ops for edges in self.candidates.values() for ops in edges):
            raise ValueError(f"add_op: an edge already holds {name!r}")
        device = self.alphas["normal"].device
        column = self.space.primitives.index(name)
        for cell_type in self.cell_types:
            self.candidates[cell_type] = [self.space.ordered((*ops, name)) for ops in self.candidates[cell_type]]
            getattr(self, f"active_{cell_type}")[:, column] = True
            with torch.no_grad():
                self.alphas[cell_type][:, column] = 1e-3 * torch.randn(self.space.num_edges)
        for cell in self.search_cells():
            for edge, edge_ops in zip(cell.edges, self.candidates[cell.kind]):
                edge.add_op(edge_ops, name)
                edge.to(device)

    def op_probabilities(self, cell: str) -> torch.Tensor:
        """Row-wise softmax of ``cell``'s alphas over each edge's own ops (0 for ops an edge lacks)."""
        mask: torch.Tensor = getattr(self, f"active_{cell}")
        return F.softmax(self.alphas[cell].masked_fill(~mask, float("-inf")), dim=-1)

    def edge_weights(self, cell: str) -> list[torch.Tensor]:
        """Per edge: the weights of its candidate ops, in the edge's op order. They are gathered in one pass by
        positions the host knows: picking them by the boolean mask, edge by edge, made the host wait for the GPU
        on every edge (the mask's count) and split a compiled graph there."""
        probs = self.op_probabilities(cell)
        edges = self.candidates[cell]
        column = {name: k for k, name in enumerate(self.space.primitives)}
        picks = [e * probs.shape[1] + column[name] for e, ops in enumerate(edges) for name in ops]
        return list(probs.flatten()[torch.tensor(picks, device=probs.device)].split([len(ops) for ops in edges]))

    def edge_scales(self, cell: str) -> torch.Tensor | None:
        """PC-DARTS edge weights: softmax of the betas over the edges entering each node (None without them)."""
        if cell not in self.betas:
            return None
        beta = self.betas[cell]
        return torch.cat([F.softmax(beta[edges], dim=0) for edges in self.space.node_edges])

    def edge_scale_table(self) -> dict[str, list[float]] | None:
        """Per cell type, the edge weights of :meth:`edge_scales` (what genotype.json stores), or None."""
        if not self.betas:
            return None
        with torch.no_grad():
            return {cell: self.edge_scales(cell).tolist() for cell in self.cell_types}

    def alpha_table(self) -> dict[str, list[dict[str, float]]]:
        """Per cell type, per edge: op name -> softmax weight (what genotype.json stores)."""
        table = {}
        for cell in self.cell_types:
            with torch.no_grad():
                weights = self.edge_weights(cell)
            table[cell] = [dict(zip(ops, w.tolist())) for ops, w in zip(self.candidates[cell], weights)]
        return table

    def set_skip_dropout(self, p: float) -> None:
        """Set the rate of every skip-connect dropout (P-DARTS search-space regularisation)."""
        for module in self.modules():
            if isinstance(module, UniformMaskDropout):
                module.set_rate(p)

    def set_recompute(self, enabled: bool) -> None:
        """Recompute the mixed edges' inner activations in the backward pass (see MixedEdge) or keep them."""
        self.recompute = enabled
        for module in self.modules():
            if isinstance(module, MixedEdge):
                module.recompute = enabled

    @contextmanager
    def recomputing(self, enabled: bool) -> Iterator[None]:
        """:meth:`set_recompute` inside the block only."""
        saved = self.recompute
        self.set_recompute(enabled)
        try:
            yield
        finally:
            self.set_recompute(saved)

    @contextmanager
    def gradients_only_for(self, params: Iterable[nn.Parameter]) -> Iterator[None]:
        """Gradients for ``params`` only: the backward pass neither computes nor keeps for later what the other
        parameters' gradients would need (an architecture step needs no weight gradients, a weight step no
        alpha gradients). Run the forward and the backward pass inside the block: recomputation replays the
        forward pass in the backward pass, and must see the same parameters fixed."""
        keep = {id(p) for p in params}
        fixed = [p for p in self.parameters() if p.requires_grad and id(p) not in keep]
        for p in fixed:
            p.requires_grad_(False)
        try:
            yield
        finally:
            for p in fixed:
                p.requires_grad_(True)

    def arch_parameter_names(self) -> list[str]:
        """Qualified names of :meth:`arch_parameters` (a DDP wrapper leaves them to the Architect)."""
        arch = {id(p) for p in self.arch_parameters()}
        return [n for n, p in self.named_parameters() if id(p) in arch]

    def set_drop_path(self, p: float) -> None:
        """Set the drop-path rate on every mixed-edge output (RobustDARTS' search regularisation; 0 = off)."""
        for cell in self.search_cells():
            cell.drop_path = p

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
        mixing = {cell: (self.edge_weights(cell), self.edge_scales(cell)) for cell in self.cell_types}
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            if isinstance(cell, SearchCell):
                s0, s1 = s1, cell(s0, s1, *mixing[cell.kind])
            elif isinstance(cell, NB201SearchCell):
                s1 = cell(s1, *mixing[cell.kind])
            else:  # a fixed block of the macro skeleton
                s1 = cell(s1)
        return self.classifier(self.global_pooling(self.head(s1)).flatten(1))
