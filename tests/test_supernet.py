"""The search supernet (spec search-space-and-networks.md §2-3, pdarts.md §4, §6) and the unrolled
architecture gradient (darts-pcdarts.md §1.2) against an exact autograd hypergradient."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call
from torch.nn.grad import conv2d_input, conv2d_weight

from pdarts_wild.architect import Architect
from pdarts_wild.ops import Zero
from pdarts_wild.spaces import CELL_TYPES, DARTS_PRIMITIVES, edge_inputs, get_space
from pdarts_wild.strategies.pdarts import keep_strongest
from pdarts_wild.supernet import MixedEdge, Supernet, sum_nodes
from tolerance import assert_within, sum_tolerance

SOFTMAX_SUM = sum_tolerance(2 * len(DARTS_PRIMITIVES))  # a softmax over up to 8 ops and the sum of its values

SPACE = get_space("darts")


def on_meta(*args: object, **kwargs: object) -> Supernet:
    with torch.device("meta"):
        return Supernet(*args, **kwargs)


def count(params) -> int:
    return sum(p.numel() for p in params)


# ----------------------------------------------------------------------------------------- sizes (§3)


@pytest.mark.parametrize("layers, expected", [(8, 1_930_618), (5, 1_275_834), (11, 2_585_146), (17, 3_894_202)])
def test_weight_parameter_counts(layers, expected):
    model = on_meta(SPACE, SPACE.initial_candidates(), 10, 16, layers)
    assert count(model.weight_parameters()) == expected
    assert count(model.parameters()) == expected + 224


@pytest.mark.parametrize("layers, reductions", [(3, [1, 2]), (5, [1, 3]), (8, [2, 5]), (11, [3, 7]), (17, [5, 11])])
def test_reduction_cells(layers, reductions):
    model = on_meta(SPACE, SPACE.initial_candidates(), 10, 4, layers)
    assert [i for i, cell in enumerate(model.cells) if cell.reduction] == reductions


def test_alphas_are_two_14_by_8_matrices():
    model = on_meta(SPACE, SPACE.initial_candidates(), 10, 16, 8)
    alphas = model.arch_parameters()
    assert [tuple(a.shape) for a in alphas] == [(14, 8), (14, 8)]
    assert alphas[0] is model.alphas["normal"] and alphas[1] is model.alphas["reduce"]
    assert count(alphas) == 224
    arch_ids = {id(a) for a in alphas}
    assert not any(id(p) in arch_ids for p in model.weight_parameters())


# ----------------------------------------------------------------------------- per-edge candidate sets


def mixed_candidates() -> dict[str, list[tuple[str, ...]]]:
    """Edges with different op lists, as P-DARTS' op dropping leaves them."""
    torch.manual_seed(3)
    candidates = {}
    for c, cell in enumerate(CELL_TYPES):
        edges = []
        for e in range(14):
            weights = dict(zip(DARTS_PRIMITIVES, torch.rand(8).tolist()))
            keep = [8, 5, 3, 1, 2][(e + c) % 5]
            if keep == 1:
                weights["none"] = -1.0  # a single-op edge holding only `none` would be meaningless
            edges.append(keep_strongest(weights, keep))
        candidates[cell] = edges
    candidates["normal"][0] = ("none", "skip_connect", "sep_conv_3x3")
    candidates["normal"][1] = ("max_pool_3x3", "sep_conv_5x5")  # no `none`
    candidates["normal"][2] = ("skip_connect",)
    candidates["reduce"][0] = ("none", "avg_pool_3x3", "dil_conv_5x5")  # stride 2
    return candidates


@pytest.fixture(scope="module")
def mixed_model() -> Supernet:
    torch.manual_seed(0)
    model = Supernet(SPACE, mixed_candidates(), 10, 4, 3)
    with torch.no_grad():
        for a in model.arch_parameters():
            a.normal_(0.0, 1.0)
    return model


def test_candidate_sets_differ_per_edge(mixed_model):
    sizes = {len(ops) for cell in CELL_TYPES for ops in mixed_model.candidates[cell]}
    assert sizes == {1, 2, 3, 5, 8}


@pytest.mark.parametrize("cell", CELL_TYPES)
def test_edge_weights_follow_each_edges_ops(mixed_model, cell):
    candidates = mixed_model.candidates[cell]
    alphas = mixed_model.alphas[cell].detach()
    probs = mixed_model.op_probabilities(cell).detach()
    weights = mixed_model.edge_weights(cell)
    assert len(weights) == 14
    for e, ops in enumerate(candidates):
        columns = [DARTS_PRIMITIVES.index(op) for op in ops]
        assert weights[e].shape == (len(ops),)
        assert float(weights[e].detach().sum()) == pytest.approx(1.0, abs=SOFTMAX_SUM)
        assert float(probs[e].sum()) == pytest.approx(1.0, abs=SOFTMAX_SUM)
        expected = torch.softmax(alphas[e, columns], dim=0)
        torch.testing.assert_close(weights[e].detach(), expected)
        for k, op in enumerate(DARTS_PRIMITIVES):
            if op not in ops:
                assert probs[e, k] == 0.0, (e, op)
            else:
                assert probs[e, k] > 0.0


@pytest.mark.parametrize("cell", CELL_TYPES)
def test_alpha_table_keys_are_the_edges_ops_in_primitive_order(mixed_model, cell):
    table = mixed_model.alpha_table()
    assert set(table) == set(CELL_TYPES)
    probs = mixed_model.op_probabilities(cell).detach()
    for e, (entry, ops) in enumerate(zip(table[cell], mixed_model.candidates[cell])):
        assert tuple(entry) == ops
        assert list(entry) == sorted(entry, key=DARTS_PRIMITIVES.index)
        for op, w in entry.items():
            assert w == float(probs[e, DARTS_PRIMITIVES.index(op)])  # the same numbers
        assert sum(entry.values()) == pytest.approx(1.0, abs=SOFTMAX_SUM)


def test_none_builds_no_module_and_edges_hold_only_their_ops(mixed_model):
    assert not any(isinstance(m, Zero) for m in mixed_model.modules())
    for cell in mixed_model.cells:
        cell_type = "reduce" if cell.reduction else "normal"
        for edge, ops in zip(cell.edges, mixed_model.candidates[cell_type]):
            assert edge.op_names == ops
            assert len(edge.ops) == len([op for op in ops if op != "none"])
    edge0 = mixed_model.cells[0].edges[0]  # ("none", "skip_connect", "sep_conv_3x3")
    assert isinstance(edge0.ops[0], nn.Identity)


def test_mixed_edge_is_the_weighted_sum_of_its_ops(mixed_model):
    mixed_model.eval()
    try:
        torch.manual_seed(1)
        edge = mixed_model.cells[0].edges[0]   # ("none", "skip_connect", "sep_conv_3x3")
        x = torch.randn(2, 4, 8, 8)
        w = torch.tensor([0.5, 0.2, 0.3])
        torch.testing.assert_close(edge(x, w), 0.2 * x + 0.3 * edge.ops[1](x))
        only_none = MixedEdge(("none", "skip_connect"), 4, 1, False, 0.0)
        torch.testing.assert_close(only_none(x, torch.tensor([0.9, 0.1])), 0.1 * x)
    finally:
        mixed_model.train()


def test_an_edge_of_only_none_adds_nothing_to_its_node():
    edges = nn.ModuleList([MixedEdge(("none",), 4, 1, False, 0.0), MixedEdge(("skip_connect",), 4, 1, False, 0.0)])
    s0, s1 = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    assert edges[0](s0, torch.ones(1)) is None
    node = sum_nodes([s0, s1], edges, 1, [torch.ones(1), torch.tensor([0.4])], None, 0.0, True)[-1]
    torch.testing.assert_close(node, 0.4 * s1)


def test_forward_with_mixed_candidates_and_gradients(mixed_model):
    torch.manual_seed(2)
    mixed_model.zero_grad(set_to_none=True)
    logits = mixed_model(torch.randn(2, 3, 16, 16))
    assert logits.shape == (2, 10)
    F.cross_entropy(logits, torch.tensor([1, 7])).backward()
    for cell in CELL_TYPES:
        grad = mixed_model.alphas[cell].grad
        mask = getattr(mixed_model, f"active_{cell}")
        assert grad is not None and torch.isfinite(grad).all()
        assert (grad[~mask] == 0).all()          # ops an edge lacks get no gradient
        # a one-op edge's softmax is constant: its alpha gets exactly zero gradient
        for e, ops in enumerate(mixed_model.candidates[cell]):
            if len(ops) == 1:
                assert (grad[e] == 0).all()
            else:
                assert grad[e][mask[e]].abs().sum() > 0, (cell, e)


def test_out_of_order_candidates_are_labelled_correctly():
    candidates = SPACE.initial_candidates()
    candidates["normal"] = list(candidates["normal"])
    candidates["normal"][0] = ("sep_conv_3x3", "skip_connect")
    try:
        model = Supernet(SPACE, candidates, 10, 2, 3)
    except (ValueError, KeyError):
        return  # rejecting the list is fine too
    with torch.no_grad():
        model.alphas["normal"].zero_()
        model.alphas["normal"][0, DARTS_PRIMITIVES.index("skip_connect")] = 2.0
    entry = model.alpha_table()["normal"][0]
    assert entry["skip_connect"] > entry["sep_conv_3x3"]


# ------------------------------------------------------------------------------------ forward, dropout


def test_tiny_supernet_forward_and_alpha_gradients():
    torch.manual_seed(0)
    model = Supernet(SPACE, SPACE.initial_candidates(), 10, 4, 3)
    logits = model(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 10) and torch.isfinite(logits).all()
    F.cross_entropy(logits, torch.tensor([0, 3])).backward()
    for a in model.arch_parameters():
        assert a.grad is not None and a.grad.shape == (14, 8)
        assert torch.isfinite(a.grad).all() and a.grad.abs().sum() > 0


def dropouts(model: nn.Module) -> list[nn.Dropout]:
    return [m for m in model.modules() if isinstance(m, nn.Dropout)]


def test_skip_dropout_modules_and_set_skip_dropout():
    model = Supernet(SPACE, SPACE.initial_candidates(), 10, 4, 3, skip_dropout=0.3)
    # 3 cells: normal (14 stride-1 skips), reduce, reduce (edges from nodes are stride 1: 14 - 8 = 6 each)
    assert len(dropouts(model)) == 14 + 6 + 6
    assert all(d.p == 0.3 for d in dropouts(model))
    for cell in model.cells:
        for edge, (_, j) in zip(cell.edges, edge_inputs()):
            has_dropout = any(isinstance(m, nn.Dropout) for m in edge.modules())
            assert has_dropout == (not cell.reduction or j >= 2)  # stride-2 skips (FactorizedReduce): none
    model.set_skip_dropout(0.125)
    assert [d.p for d in dropouts(model)] == [0.125] * 26
    model.set_skip_dropout(0.0)
    assert all(d.p == 0.0 for d in dropouts(model))


def test_skip_dropout_zero_builds_no_dropout():
    model = Supernet(SPACE, SPACE.initial_candidates(), 10, 4, 3, skip_dropout=0.0)
    assert dropouts(model) == []
    model.set_skip_dropout(0.5)  # nothing to set, nothing breaks
    assert dropouts(model) == []


def test_skip_dropout_acts_in_train_mode_only():
    torch.manual_seed(0)
    edge = MixedEdge(("skip_connect",), 4, 1, False, 0.5)
    x = torch.ones(1, 4, 16, 16)
    out = edge.train()(x, torch.tensor([1.0]))
    assert set(out.unique().tolist()) == {0.0, 2.0}  # element-wise dropout, survivors scaled by 1/(1-p)
    torch.testing.assert_close(edge.eval()(x, torch.tensor([1.0])), x)


@pytest.mark.parametrize("p", [0.3, 0.7])
def test_skip_dropout_keeps_1_minus_p_of_the_elements_scaled_and_passes_gradients_through_them(p):
    from pdarts_wild.ops import UniformMaskDropout

    torch.manual_seed(0)
    x = torch.full((64, 16, 32, 32), 3.0).contiguous(memory_format=torch.channels_last).requires_grad_()
    out = UniformMaskDropout(p).train()(x)
    kept = out != 0
    assert abs(kept.float().mean().item() - (1 - p)) < 0.003  # 1M draws: standard error < 0.0005
    torch.testing.assert_close(out[kept], torch.full_like(out[kept], 3.0 / (1 - p)))
    assert out.is_contiguous(memory_format=torch.channels_last)
    (grad,) = torch.autograd.grad(out.sum(), x)
    torch.testing.assert_close(grad, kept.float() / (1 - p))
    assert torch.equal(UniformMaskDropout(1.0).train()(x), torch.zeros_like(x))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dropout_mask_has_the_input_layout_and_dtype(dtype):
    from pdarts_wild.ops import dropout_mask

    torch.manual_seed(0)
    channels_last = torch.empty(8, 6, 10, 10, dtype=dtype).contiguous(memory_format=torch.channels_last)
    strided = torch.empty(8, 6, 10, 21, dtype=dtype)[..., ::2]  # not dense, an odd number of elements
    for x, strides in ((channels_last, channels_last.stride()), (strided, strided.contiguous().stride())):
        mask = dropout_mask(x, 0.5)
        assert mask.shape == x.shape and mask.stride() == strides and mask.dtype == dtype
        assert set(mask.unique().tolist()) == {0.0, 2.0}
    assert dropout_mask(torch.empty(100_000), 0.0).min() == 1.0  # p = 0 keeps every element


# --------------------------------------------------------------------------- unrolled architecture step


class _Recorder(torch.optim.Optimizer):
    """An architecture optimizer that only records the gradients it is asked to step with."""

    def __init__(self, params) -> None:
        super().__init__(params, {})
        self.grads: list[torch.Tensor] = []

    def step(self, closure=None):  # noqa: D401 - optimizer API
        self.grads = [p.grad.detach().clone() for group in self.param_groups for p in group["params"]]


def _flat(tensors) -> torch.Tensor:
    return torch.cat([t.flatten() for t in tensors])


def _rel(a, b) -> float:
    return float((_flat(a) - _flat(b)).norm() / _flat(b).norm())


def _smooth_tiny_supernet() -> Supernet:
    """A float64 3-cell supernet whose loss is smooth in the weights, so that a finite difference converges.

    ReLU kinks and max-pool switches make finite-difference Hessian products unreliable on tiny networks
    (any kink crossed within the perturbation), so the ReLUs are swapped for Softplus and max-pool is left
    out of the candidate sets; the Architect's arithmetic is what is checked here.
    """
    ops = tuple(op for op in DARTS_PRIMITIVES if op != "max_pool_3x3")
    model = Supernet(SPACE, {cell: [ops] * 14 for cell in CELL_TYPES}, 10, 2, 3).double()
    for module in list(model.modules()):
        for name, child in module.named_children():
            if isinstance(child, nn.ReLU):
                setattr(module, name, nn.Softplus())
    with torch.no_grad():
        for a in model.arch_parameters():
            a.normal_(0.0, 1.0)
    return model.train()


def test_unrolled_architecture_gradient_matches_the_exact_hypergradient():
    torch.manual_seed(0)
    model = _smooth_tiny_supernet()
    assert dropouts(model) == []
    lr, momentum, weight_decay = 0.5, 0.9, 0.05

    def batch():
        return torch.randn(4, 3, 8, 8, dtype=torch.float64), torch.randint(0, 10, (4,))

    w_optimizer = torch.optim.SGD(model.weight_parameters(), lr=0.1, momentum=momentum, weight_decay=weight_decay)
    x, y = batch()
    F.cross_entropy(model(x), y).backward()
    w_optimizer.step()  # one real step: the momentum buffer is non-zero
    w_optimizer.zero_grad(set_to_none=True)
    train, valid = batch(), batch()

    alphas = model.arch_parameters()
    names, weights = zip(*((n, p) for n, p in model.named_parameters() if not n.startswith("alphas.")))
    assert all(w_optimizer.state[w]["momentum_buffer"].abs().sum() > 0 for w in weights)
    buffers_before = {n: b.clone() for n, b in model.named_buffers()}

    def loss_at(ws, data) -> torch.Tensor:
        buffers = {n: b.clone() for n, b in model.named_buffers()}
        return F.cross_entropy(functional_call(model, {**dict(zip(names, ws)), **buffers}, (data[0],)), data[1])

    def virtual_weights(mu: float, wd: float, create_graph: bool = True):
        grads = torch.autograd.grad(loss_at(weights, train), weights, create_graph=create_graph)
        return [w - lr * (mu * w_optimizer.state[w]["momentum_buffer"] + g + wd * w) for w, g in zip(weights, grads)]

    # The references below differentiate through functional_call, which activation recomputation cannot see
    # (the Architect switches it off itself: the model keeps it on for the Architect's step).
    assert model.recompute
    with model.recomputing(False):
        # exact d/d(alpha) L_val(w'(alpha), alpha), w' = w - lr (mu m + dL_train/dw + wd w), through w'
        exact = torch.autograd.grad(loss_at(virtual_weights(momentum, weight_decay), valid), alphas)
        # without the Hessian term, without momentum, without weight decay: what a wrong Architect would give
        no_hessian = torch.autograd.grad(loss_at([w.detach() for w in virtual_weights(momentum, weight_decay, False)],
                                                 valid), alphas)
        no_momentum = torch.autograd.grad(loss_at(virtual_weights(0.0, weight_decay), valid), alphas)
        no_decay = torch.autograd.grad(loss_at(virtual_weights(momentum, 0.0), valid), alphas)
        at_w = torch.autograd.grad(loss_at(weights, valid), alphas)
        virtual = [w.detach() for w in virtual_weights(momentum, weight_decay)]

    recorder = _Recorder(alphas)
    valid_loss = Architect(model, recorder, unrolled=True).step(train, valid, lr, w_optimizer)
    second_order = recorder.grads
    assert len(second_order) == 2 and all(torch.isfinite(g).all() for g in second_order) and model.recompute
    with model.recomputing(False):
        assert valid_loss == pytest.approx(float(loss_at(virtual, valid).detach()), rel=1e-9)

    tolerance = 1e-3
    assert _rel(second_order, exact) < tolerance
    for wrong in (no_hessian, no_momentum, no_decay, at_w):  # each mistake would be caught
        assert _rel(wrong, exact) > 10 * tolerance

    # virtual forwards leave the weights and the BN running statistics alone
    for n, b in model.named_buffers():
        torch.testing.assert_close(b, buffers_before[n], rtol=0, atol=0)

    first = _Recorder(alphas)
    Architect(model, first, unrolled=False).step(train, valid, lr, w_optimizer)
    torch.testing.assert_close(_flat(first.grads), _flat(at_w), rtol=1e-9, atol=1e-12)
    assert _rel(first.grads, exact) > 10 * tolerance


def test_each_step_computes_only_the_gradients_it_uses():
    """First-order architecture step: the alphas' gradient (as a full backward pass gives it), none for the
    weights; weight step with the architecture fixed: the same weight gradients, none for the alphas."""
    torch.manual_seed(0)
    model = _smooth_tiny_supernet()
    train, valid = [(torch.randn(4, 3, 8, 8, dtype=torch.float64), torch.randint(0, 10, (4,))) for _ in range(2)]
    alphas, weights = model.arch_parameters(), list(model.weight_parameters())
    full = torch.autograd.grad(F.cross_entropy(model(valid[0]), valid[1]), alphas)
    recorder = _Recorder(alphas)
    Architect(model, recorder).step(train, valid, 0.1, torch.optim.SGD(weights, lr=0.1))
    torch.testing.assert_close(_flat(recorder.grads), _flat(full), rtol=1e-12, atol=1e-15)
    assert all(w.grad is None for w in weights)

    expected = torch.autograd.grad(F.cross_entropy(model(train[0]), train[1]), weights)
    for a in alphas:
        a.grad = None
    with model.gradients_only_for(weights):
        F.cross_entropy(model(train[0]), train[1]).backward()
    assert all(a.requires_grad for a in alphas)  # restored on leaving the block
    torch.testing.assert_close(_flat([w.grad for w in weights]), _flat(expected), rtol=1e-12, atol=1e-15)
    assert all(a.grad is None for a in alphas)


@pytest.mark.parametrize("space, options", [
    ("darts", {"skip_dropout": 0.3}), ("s4", {}), ("darts", {"partial_channels": 2, "edge_normalization": True}),
    ("nb201", {}),
])
def test_recomputation_gives_the_same_loss_gradients_and_bn_statistics(space, options):
    """Activation recomputation replays dropout and noise draws and moves BN running statistics once. The
    forward pass is the same to the bit; gradients are the same sums, added in another order (float64)."""
    sp = get_space(space)
    torch.manual_seed(0)
    kept = Supernet(sp, sp.initial_candidates(), 10, 8, 1 if space == "nb201" else 3, recompute=False,
                    **options).double()
    recomputed = copy.deepcopy(kept)
    recomputed.set_recompute(True)
    x, y = torch.randn(4, 3, 16, 16, dtype=torch.float64), torch.randint(0, 10, (4,))
    results = []
    for model in (kept, recomputed):
        torch.manual_seed(1)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        results.append((loss.detach(), [p.grad for p in model.parameters()], [b.clone() for b in model.buffers()]))
    (loss_a, grads_a, buffers_a), (loss_b, grads_b, buffers_b) = results
    assert torch.equal(loss_a, loss_b)
    assert [a is None for a in grads_a] == [b is None for b in grads_b]
    torch.testing.assert_close(_flat(g for g in grads_b if g is not None), _flat(g for g in grads_a if g is not None),
                               rtol=1e-12, atol=1e-15)
    assert all(torch.equal(a, b) for a, b in zip(buffers_a, buffers_b))
    assert kept.stem[1].running_mean.abs().sum() > 0  # the statistics did move (from zeros)


def test_weight_steps_through_recomputed_edges_fit_a_fixed_batch():
    """The search's weight step (recomputation on, alphas fixed) learns: the loss on one batch falls below a third."""
    torch.manual_seed(0)
    model = Supernet(SPACE, SPACE.initial_candidates(), 10, 4, 3, skip_dropout=0.1)
    x, y = torch.randn(16, 3, 16, 16), torch.randint(0, 10, (16,))
    optimizer = torch.optim.SGD(model.weight_parameters(), lr=0.05, momentum=0.9)
    losses = []
    for _ in range(12):
        optimizer.zero_grad(set_to_none=True)
        with model.gradients_only_for(model.weight_parameters()):
            loss = F.cross_entropy(model(x), y)
            loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0], losses


def test_op_outside_the_space_is_refused():
    candidates = SPACE.initial_candidates()
    candidates["normal"][0] = ("sep_conv_3x3", "nor_conv_3x3")
    with pytest.raises(ValueError, match="nor_conv_3x3"):
        Supernet(SPACE, candidates, 10, 4, 3)


@pytest.mark.parametrize("kernel", [3, 5])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("size", [16, 7])  # 7: odd, the plain conv path
@pytest.mark.parametrize("channels_last", [True, False])
def test_phase_wise_dilated_depthwise_conv_equals_the_plain_one(kernel, stride, size, channels_last):
    from pdarts_wild.ops import DilatedDepthwiseConv2d

    torch.manual_seed(0)
    conv = DilatedDepthwiseConv2d(8, 8, kernel, stride=stride, padding=kernel - 1, dilation=2, groups=8, bias=False)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(3, 8, size, size).to(memory_format=fmt).requires_grad_()
    out = conv(x)
    ref_x = x.detach().clone().requires_grad_()
    ref = F.conv2d(ref_x, conv.weight, None, stride, kernel - 1, 2, 8)
    x_abs, w_abs, how = x.detach().double().abs(), conv.weight.detach().double().abs(), (stride, kernel - 1, 2, 8)
    assert_within(out, ref, sum_tolerance(kernel**2, F.conv2d(x_abs, w_abs, None, *how)))
    assert out.is_contiguous(memory_format=fmt)
    grad = torch.randn_like(ref)
    (w_grad, x_grad), (ref_w_grad, ref_x_grad) = (torch.autograd.grad(o, [conv.weight, i], grad)
                                                  for o, i in ((out, x), (ref, ref_x)))
    g_abs = grad.double().abs()  # a weight's gradient sums over batch x pixels, an input's over the kernel
    assert_within(w_grad, ref_w_grad, sum_tolerance(grad[:, 0].numel(), conv2d_weight(x_abs, w_abs.shape, g_abs, *how)))
    assert_within(x_grad, ref_x_grad, sum_tolerance(kernel**2, conv2d_input(x_abs.shape, w_abs, g_abs, *how)))
    assert x_grad.is_contiguous(memory_format=fmt)  # a mixed layout would send the CPU to slow kernels


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("size", [8, 7])
@pytest.mark.parametrize("channels_last", [True, False])
def test_avg_pool_3x3_equals_the_pool(stride, size, channels_last):
    from pdarts_wild.ops import AvgPool3x3

    torch.manual_seed(0)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(3, 4, size, size).to(memory_format=fmt).requires_grad_()
    ref_x = x.detach().clone().requires_grad_()
    out, ref = AvgPool3x3(stride)(x), F.avg_pool2d(ref_x, 3, stride, 1, count_include_pad=False)
    # sums of up to 9 terms and a division, bounded by the same pool of the absolute values (forward and backward)
    x_abs = x.detach().double().abs().requires_grad_()
    pool_abs = F.avg_pool2d(x_abs, 3, stride, 1, count_include_pad=False)
    assert_within(out, ref, sum_tolerance(10, pool_abs.detach()))
    assert out.is_contiguous(memory_format=fmt)
    grad = torch.randn_like(ref)
    (x_grad,), (ref_x_grad,) = torch.autograd.grad(out, [x], grad), torch.autograd.grad(ref, [ref_x], grad)
    assert_within(x_grad, ref_x_grad, sum_tolerance(10, torch.autograd.grad(pool_abs, [x_abs], grad.double().abs())[0]))
    assert x_grad.is_contiguous(memory_format=fmt)


@pytest.mark.parametrize("channels_last", [True, False])
def test_factorized_reduce_gradient_keeps_the_input_layout(channels_last):
    from pdarts_wild.ops import FactorizedReduce

    torch.manual_seed(0)
    op = FactorizedReduce(4, 8)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(2, 4, 6, 6).to(memory_format=fmt).requires_grad_()
    ref_x = x.detach().clone().requires_grad_()
    relu = F.relu(ref_x)
    ref = op.bn(torch.cat([op.conv_1(relu), op.conv_2(relu[:, :, 1:, 1:])], dim=1))
    out = op(x)
    torch.testing.assert_close(out, ref, rtol=0, atol=0)
    grad = torch.randn_like(ref)
    (x_grad,), (ref_x_grad,) = torch.autograd.grad(out, [x], grad), torch.autograd.grad(ref, [ref_x], grad)
    torch.testing.assert_close(x_grad, ref_x_grad, rtol=0, atol=0)  # each pixel's from one conv or none: no sum
    assert x_grad.is_contiguous(memory_format=fmt)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")
@pytest.mark.parametrize("channels", [4, 8])  # 4: normalised in NCHW on the CPU, 8: channels-last
def test_op_batch_norm_equals_nn_batch_norm_and_keeps_channels_last(channels):
    from pdarts_wild.ops import BatchNorm2d

    torch.manual_seed(0)
    # in float64, where no rounding hides a mistake: the statistics sum over batch x pixels (and their gradients)
    ours, ref = BatchNorm2d(channels).double(), nn.BatchNorm2d(channels).double()
    with torch.no_grad():
        for module in (ours, ref):
            module.weight.copy_(torch.linspace(0.5, 2.0, channels))
            module.bias.copy_(torch.linspace(-1.0, 1.0, channels))
    x = (3 * torch.randn(4, channels, 6, 6, dtype=torch.float64) + 1).to(memory_format=torch.channels_last)
    x.requires_grad_()
    # sums over batch x pixels of terms below 3 max|x| (x; the gradient times the normalised x)
    tolerance = sum_tolerance(4 * 6 * 6, 3 * float(x.detach().abs().max()), torch.float64)
    out, ref_out = ours(x), ref(x)
    torch.testing.assert_close(out, ref_out, rtol=0, atol=tolerance)
    assert out.is_contiguous(memory_format=torch.channels_last)
    for name, buffer in ref.named_buffers():
        torch.testing.assert_close(getattr(ours, name), buffer, rtol=0, atol=tolerance)
    grad = torch.randn_like(out)
    grads = torch.autograd.grad(out, [x, ours.weight, ours.bias], grad)
    ref_grads = torch.autograd.grad(ref_out, [x, ref.weight, ref.bias], grad)
    for g, ref_g in zip(grads, ref_grads):
        torch.testing.assert_close(g, ref_g, rtol=0, atol=tolerance)
    assert grads[0].is_contiguous(memory_format=torch.channels_last)
    scripted = torch.jit.script(nn.Sequential(ours).eval())  # TorchScript gets a plain nn.BatchNorm2d
    torch.testing.assert_close(scripted(x.detach()), ref.eval()(x.detach()), rtol=0, atol=tolerance)


@pytest.mark.parametrize("options", [{}, {"partial_channels": 4, "edge_normalization": True}])
def test_channels_last_backward_pass_stays_channels_last(options):
    """Every cell output's gradient is channels-last, like the output: a gradient in another layout (global
    pooling, strided picks, channel slices) would send the rest of the CPU backward pass to slow kernels."""
    torch.manual_seed(0)
    model = Supernet(SPACE, SPACE.initial_candidates(), 10, 8, 3, **options).to(memory_format=torch.channels_last)
    layouts: list[bool] = []

    def track(module, inputs, output):
        layouts.append(output.is_contiguous(memory_format=torch.channels_last))
        output.register_hook(lambda g: layouts.append(g.is_contiguous(memory_format=torch.channels_last)))

    for cell in model.cells:
        cell.register_forward_hook(track)
    x = torch.randn(2, 3, 8, 8).contiguous(memory_format=torch.channels_last)
    F.cross_entropy(model(x), torch.tensor([1, 2])).backward()
    assert len(layouts) == 2 * len(model.cells) and all(layouts)


def test_global_average_pool_equals_adaptive_pooling_and_keeps_channels_last():
    from pdarts_wild.ops import GlobalAvgPool

    x = torch.randn(2, 4, 5, 6).contiguous(memory_format=torch.channels_last).requires_grad_()
    out = GlobalAvgPool()(x)
    # means of 30 terms (and a division), bounded by the mean of their absolute values
    assert_within(out, F.adaptive_avg_pool2d(x, 1), sum_tolerance(31, F.adaptive_avg_pool2d(x.detach().abs(), 1)))
    (grad,) = torch.autograd.grad(out.sum(), x)
    assert grad.is_contiguous(memory_format=torch.channels_last) and not grad.is_contiguous()
