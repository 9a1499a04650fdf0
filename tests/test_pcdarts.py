"""PC-DARTS: partial channel connections, channel shuffle, edge normalisation, and its search."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

from pdarts_wild.architect import Architect
from pdarts_wild.config import ConfigError, resolve_config
from pdarts_wild.spaces import DARTS_PRIMITIVES, get_space
from pdarts_wild.strategies.pcdarts import PCDARTS
from pdarts_wild.strategies.pdarts import PDARTS
from pdarts_wild.supernet import MixedEdge, Supernet
from tolerance import sum_tolerance

SPACE = get_space("darts")
ROOT = Path(__file__).resolve().parents[1]


def test_supernet_size_matches_the_authors_k4() -> None:
    with torch.device("meta"):
        model = Supernet(SPACE, SPACE.initial_candidates(), 10, 16, 8, partial_channels=4, edge_normalization=True)
    assert sum(p.numel() for p in model.weight_parameters()) == 299_578
    assert sum(p.numel() for p in model.arch_parameters()) == 2 * 14 * 8 + 2 * 14


@pytest.mark.parametrize("stride", [1, 2])
def test_partial_edge_interleaves_ops_and_bypass_and_keeps_channels_last(stride: int) -> None:
    """Output channel j*K + g holds channel g*C/K + j of [the ops' part, the bypass] (a channel shuffle); the output
    and the input's gradient stay channels-last (a mixed layout would send the CPU to slow kernels)."""
    k, c = 4, 8
    edge = MixedEdge(("skip_connect",), c, 1, affine=False, skip_dropout=0.0, partial=k) if stride == 1 else \
        MixedEdge(("max_pool_3x3",), c, 2, affine=False, skip_dropout=0.0, partial=k, pool_bn=False)
    x = torch.arange(c * 16.0).view(1, c, 4, 4).contiguous(memory_format=torch.channels_last).requires_grad_()
    out = edge(x, torch.ones(1))
    pooled = torch.nn.functional.max_pool2d(x.detach(), 2, 2) if stride == 2 else x.detach()
    assert torch.equal(out[:, 1:4], pooled[:, 2:8:2]) and torch.equal(out[:, 5:8], pooled[:, 3:8:2])
    assert out.is_contiguous(memory_format=torch.channels_last)
    out.sum().backward()
    assert x.grad.is_contiguous(memory_format=torch.channels_last) and not x.grad.is_contiguous()


@pytest.mark.parametrize("stride", [1, 2])
def test_only_one_kth_of_the_channels_goes_through_the_ops(stride: int) -> None:
    k, c = 4, 16
    edge = MixedEdge(DARTS_PRIMITIVES, c, stride, affine=False, skip_dropout=0.0, partial=k)
    seen: list[int] = []
    for op in edge.ops:
        op.register_forward_hook(lambda m, inp, out: seen.append(inp[0].shape[1]))
    x = torch.randn(2, c, 8, 8)
    out = edge(x, F.softmax(torch.randn(len(DARTS_PRIMITIVES)), 0))
    assert seen and set(seen) == {c // k}
    bypass = x if stride == 1 else F.max_pool2d(x, 2, 2)
    for g in range(1, k):  # groups 1..K-1 bypass the ops and land at channels j*K + g
        for j in range(c // k):
            assert torch.equal(out[:, j * k + g], bypass[:, g * (c // k) + j])


def test_edge_weights_are_a_softmax_per_node_and_train() -> None:
    model = Supernet(SPACE, SPACE.initial_candidates(), 10, 8, 3, partial_channels=2, edge_normalization=True)
    scales = model.edge_scales("normal")
    for edges in ([0, 1], [2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12, 13]):
        assert scales[edges].sum().item() == pytest.approx(1.0, abs=sum_tolerance(2 * len(edges)))  # softmax, sum
    model(torch.randn(2, 3, 16, 16)).sum().backward()
    assert all(b.grad is not None and b.grad.abs().sum() > 0 for b in model.betas.values())


def test_betas_change_the_derived_genotype() -> None:
    strategy = PCDARTS(resolve_config("pc-darts", "cifar10"))
    ops = list(DARTS_PRIMITIVES)
    # every edge prefers sep_conv_3x3 equally; edge weights alone decide which edges are kept
    alphas = {cell: [{op: (0.3 if op == "sep_conv_3x3" else 0.1) for op in ops} for _ in range(14)]
              for cell in ("normal", "reduce")}
    plain = strategy.derive(alphas, {}).genotype
    favour_late = {cell: [0.1, 0.9, 0.1, 0.1, 0.8, 0.1, 0.1, 0.1, 0.7, 0.1, 0.1, 0.1, 0.1, 0.6]
                   for cell in ("normal", "reduce")}
    weighted = strategy.derive(alphas, {}, favour_late).genotype
    assert plain != weighted
    assert ("sep_conv_3x3", 2) in weighted.normal[2:4] and ("sep_conv_3x3", 4) in weighted.normal[6:8]
    # P-DARTS' final rule (ties: later edge) ranks edges by the same weighted probabilities when combined
    pd = PDARTS(resolve_config("pdarts", "cifar10"))
    favour_early = {cell: [0.9, 0.1, 0.9, 0.8, 0.1, 0.9, 0.8, 0.1, 0.1, 0.9, 0.8, 0.1, 0.1, 0.1]
                    for cell in ("normal", "reduce")}
    assert [j for _, j in pd.derive(alphas, {}).genotype.normal[2:]] == [1, 2, 2, 3, 3, 4]
    assert [j for _, j in pd.derive(alphas, {}, favour_early).genotype.normal[2:]] == [0, 1, 0, 1, 0, 1]


def test_second_order_step_trains_alphas_and_betas() -> None:
    torch.manual_seed(0)
    model = Supernet(SPACE, SPACE.initial_candidates(), 10, 8, 3, partial_channels=2, edge_normalization=True)
    w_opt = torch.optim.SGD(model.weight_parameters(), 0.1, momentum=0.9, weight_decay=3e-4)
    a_opt = torch.optim.Adam(model.arch_parameters(), 1e-2)
    before = [p.detach().clone() for p in model.arch_parameters()]
    batch = (torch.randn(4, 3, 16, 16), torch.randint(0, 10, (4,)))
    Architect(model, a_opt, unrolled=True).step(batch, batch, 0.1, w_opt)
    assert all(not torch.equal(b, p) for b, p in zip(before, model.arch_parameters()))


def test_partial_channels_must_split_evenly() -> None:
    with pytest.raises(ConfigError, match="--partial-channels 3"):
        resolve_config("pc-darts", "cifar10", partial_channels=3)
    assert resolve_config("pc-darts", "cifar10").partial_channels == 4


@pytest.mark.parametrize("args", [["--algorithm", "pc-darts"],
                                  ["--algorithm", "pdarts", "--channels", "8", "--partial-channels", "2",
                                   "--edge-normalization"]])
def test_pc_darts_search_writes_edge_weights(tmp_path: Path, args: list[str]) -> None:
    sys.path.insert(0, str(ROOT / "tools"))
    import search as search_tool

    out = tmp_path / "run"
    assert search_tool.main(["--dataset", "digits", "--preset", "tiny", "--device", "cpu", "--no-progress",
                             "--out", str(out), *args]) == 0
    record = json.loads((out / "genotype.json").read_text())
    assert set(record["edge_weights"]) == {"normal", "reduce"} and len(record["edge_weights"]["normal"]) == 14
    assert json.loads((out / "config.json").read_text())["partial_channels"] == 2
