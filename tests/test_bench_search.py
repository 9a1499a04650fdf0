"""tools/bench_search.py and its straightforward baseline supernet (issue 8): same function, documented output."""
from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from benchmarks.baseline_supernet import BaselineSupernet, ZeroOp, baseline_from, compact_alphas
from pdarts_wild import ops
from pdarts_wild.spaces import CELL_TYPES, DARTS_PRIMITIVES, get_space
from pdarts_wild.supernet import MixedEdge, Supernet
from tolerance import sum_tolerance

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import bench_search  # noqa: E402

SPACE = get_space("darts")
TINY = bench_search.Settings(channels=8, layers=3, batch=4, warmup=0, steps=1)


def _pruned(keep: int, seed: int) -> dict[str, list[tuple[str, ...]]]:
    """P-DARTS-like candidates: every edge keeps ``keep`` ops of its own (random alphas, ``none`` kept)."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for cell in CELL_TYPES:
        edges = []
        for _ in range(SPACE.num_edges):
            order = torch.randperm(len(DARTS_PRIMITIVES) - 1, generator=gen)[: keep - 1] + 1
            edges.append(SPACE.ordered(["none", *(DARTS_PRIMITIVES[i] for i in order.tolist())]))
        out[cell] = edges
    return out


def _supernet(candidates=None, **kwargs) -> Supernet:
    torch.manual_seed(0)
    model = Supernet(SPACE, candidates or SPACE.initial_candidates(), 10, channels=8, layers=3, **kwargs)
    with torch.no_grad():
        for p in model.arch_parameters():
            p.normal_()
    return model


TERMS = 4 * 32 * 32  # the longest sums of these comparisons: a weight gradient over batch x pixels
LOSS_SCALE = 10.0  # above the loss of an untrained supernet: a cross-entropy over 10 classes near ln 10


def _batch(dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(4, 3, 32, 32, dtype=dtype), torch.randint(0, 10, (4,))


def _rounding(model: nn.Module, dtype: torch.dtype = torch.float64) -> float:
    """What rounding allows between two computations of ``model``'s gradients in ``dtype`` (sums of up to TERMS
    terms, at the scale of the largest gradient)."""
    return sum_tolerance(TERMS, max(p.grad.abs().max().item() for p in model.parameters()), dtype)


CASES = {
    "darts": {},
    "pdarts-s2-like": {"candidates": _pruned(5, 1), "skip_dropout": 0.4},
    "pc-darts": {"partial_channels": 4, "edge_normalization": True},
}


@pytest.mark.parametrize("case", list(CASES))
def test_baseline_from_gives_our_loss_and_gradients(case: str) -> None:
    ours = _supernet(**CASES[case]).double()  # the same function: in float64, rounding hides no mistake
    baseline = baseline_from(ours)
    bench_search.draw_dropout_masks_as_ours(baseline)  # as the tool's check: nn.Dropout draws other masks
    loss_diff, grad_diff = bench_search.compare(ours, baseline, _batch(), seed=5)
    assert loss_diff <= sum_tolerance(TERMS, LOSS_SCALE, torch.float64)
    assert grad_diff <= _rounding(ours)
    # the comparison is real: every weight and alpha got a gradient, and alpha gradients are not all zero
    assert all(p.grad is not None for p in ours.parameters())
    assert all(p.grad is not None for p in baseline.parameters())
    assert all(a.grad.abs().sum() > 0 for a in baseline.arch_parameters())


def test_compare_sees_a_wrong_weight() -> None:
    ours = _supernet().double()
    baseline = baseline_from(ours)
    with torch.no_grad():  # a sep_conv_3x3 of the first edge differs from ours
        baseline.cells[0].edges[0].ops[DARTS_PRIMITIVES.index("sep_conv_3x3")].op[1].weight.mul_(1.5)
    loss_diff, grad_diff = bench_search.compare(ours, baseline, _batch(), 5)
    assert grad_diff > 1e6 * _rounding(ours)


def test_baseline_softmax_equals_our_masked_softmax() -> None:
    candidates = _pruned(3, 2)
    ours = _supernet(candidates)
    baseline = baseline_from(ours)
    for cell in CELL_TYPES:
        theirs = F.softmax(baseline.alphas[cell], dim=-1)
        assert baseline.alphas[cell].shape == (SPACE.num_edges, 3)
        mine = torch.stack(ours.edge_weights(cell))
        # a softmax over up to 8 ops (values <= 1): 8 exps, their sum, a division
        torch.testing.assert_close(theirs, mine, rtol=0, atol=sum_tolerance(len(DARTS_PRIMITIVES) + 2))
        assert torch.equal(compact_alphas(ours, cell, ours.alphas[cell]), baseline.alphas[cell])


def test_baseline_holds_one_module_per_op_and_edge_none_included() -> None:
    candidates = _pruned(5, 3)
    ours = _supernet(candidates, skip_dropout=0.3)
    baseline = baseline_from(ours)
    assert len(baseline.cells) == len(ours.cells) == 3
    for cell, our_cell in zip(baseline.cells, ours.cells):
        kind = "reduce" if cell.reduction else "normal"
        assert len(cell.edges) == SPACE.num_edges
        for e, (edge, our_edge) in enumerate(zip(cell.edges, our_cell.edges)):
            names = candidates[kind][e]
            assert len(edge.ops) == len(names) == 5
            assert len(our_edge.ops) == len(names) - 1  # ours does not hold none
            zero = edge.ops[names.index("none")]
            assert isinstance(zero, ZeroOp) and zero.stride == edge.stride
            x = torch.randn(2, 8 * (2 if cell.reduction else 1), 8, 8)
            assert zero(x).shape == (2, x.shape[1], 8 // edge.stride, 8 // edge.stride)
            assert not zero(x).any()
            for name, op in zip(names, edge.ops):
                if name in ("max_pool_3x3", "avg_pool_3x3"):
                    assert isinstance(op, nn.Sequential) and isinstance(op[1], nn.BatchNorm2d)
                if name == "skip_connect" and edge.stride == 1:
                    assert isinstance(op[1], nn.Dropout) and op[1].p == 0.3
    n_ours = sum(1 for _ in ours.parameters())
    assert sum(1 for _ in baseline.parameters()) == n_ours
    fast_paths = (ops.DilatedDepthwiseConv2d, ops.AvgPool3x3, ops.BatchNorm2d)  # the original code's torch modules
    assert any(isinstance(m, fast_paths) for m in ours.modules())
    assert not any(isinstance(m, fast_paths) for m in baseline.modules())
    assert sum(p.numel() for p in baseline.weight_parameters()) == sum(p.numel() for p in ours.weight_parameters())


def test_baseline_copies_every_buffer() -> None:
    ours = _supernet()
    with torch.no_grad():
        ours.train()(torch.randn(4, 3, 32, 32))  # moves the BN running statistics away from their init
    baseline = baseline_from(ours)
    ours_bn = [m for m in ours.modules() if isinstance(m, nn.BatchNorm2d)]
    theirs_bn = [m for m in baseline.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(ours_bn) == len(theirs_bn)
    assert sorted(m.running_mean.sum().item() for m in ours_bn) == sorted(m.running_mean.sum().item() for m in theirs_bn)
    ours.eval().double(), baseline.eval().double()
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        logits = ours(x)
        torch.testing.assert_close(baseline(x), logits, rtol=0,
                                   atol=sum_tolerance(TERMS, logits.abs().max().item(), torch.float64))


def test_baseline_needs_equal_op_counts() -> None:
    candidates = {cell: [DARTS_PRIMITIVES] * 13 + [DARTS_PRIMITIVES[:3]] for cell in CELL_TYPES}
    with pytest.raises(ValueError, match="same number of ops"):
        BaselineSupernet(SPACE, candidates, 10, channels=8, layers=3)


def test_configs_use_the_papers_settings() -> None:
    kw = {name: bench_search.supernet_kwargs(name, bench_search.Settings()) for name in bench_search.CONFIGS}
    assert [kw[n]["layers"] for n in ("pdarts-s1", "pdarts-s2", "pdarts-s3", "darts", "pc-darts")] == [5, 11, 17, 8, 8]
    assert [len(kw[n]["candidates"]["normal"][0]) for n in ("pdarts-s1", "pdarts-s2", "pdarts-s3")] == [8, 5, 3]
    assert (kw["pc-darts"]["partial_channels"], kw["pc-darts"]["edge_normalization"]) == (4, True)
    assert kw["pdarts-s3"]["skip_dropout"] == 0.7 and kw["darts"]["partial_channels"] == 1


def test_check_config_passes_in_float32() -> None:
    result = bench_search.check_config("pc-darts", TINY)
    assert result["dtype"] == "float32" and result["memory_format"] == "channels_last"
    assert result["max_abs_grad_diff"] <= bench_search.TOLERANCE


def test_measure_times_a_search_step() -> None:
    # in a fresh process, as the tool measures: in this one, memory freed by earlier tests could hold the peak
    result = bench_search.measure_in_child("pdarts-s3", "baseline", TINY)
    assert set(result) == {"step_ms", "img_per_s", "peak_mb"}
    assert result["step_ms"] > 0 and result["peak_mb"] > 0
    assert result["img_per_s"] == pytest.approx(TINY.batch / (result["step_ms"] / 1000))


def _children(pid: int) -> list[int]:
    """Live (not zombie) processes whose parent is ``pid``."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
@pytest.mark.parametrize("wait", [0, 3])  # 0: the child is still importing torch, its initializer has not run
def test_measuring_child_dies_with_a_terminated_benchmark(wait: float) -> None:
    code = f"import sys, time; sys.path.insert(0, {str(ROOT)!r}); from benchmarks.measure import in_child; in_child('x', time.sleep, 120)"
    parent = subprocess.Popen([sys.executable, "-c", code])
    children: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while len(_children(parent.pid)) < 2 and time.monotonic() < deadline:  # the resource tracker, the child
            time.sleep(0.05)
        time.sleep(wait)
        children = _children(parent.pid)
        assert len(children) == 2, "no measuring child started"
        parent.terminate()
        parent.wait(timeout=30)
        deadline = time.monotonic() + 20
        while any(_alive(c) for c in children) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(_alive(c) for c in children)
    finally:
        parent.kill()
        for child in children:  # if the test failed: no orphan left behind
            if _alive(child):
                os.kill(child, signal.SIGKILL)


def test_tool_writes_the_documented_json(tmp_path: Path) -> None:
    """Each variant of ours against one baseline; the compiled one (traced with aot_eager: generating kernels takes
    minutes on a CPU) checked on the graphs its steps compiled. ~60 s, most of it the tracing."""
    out = tmp_path / "bench.json"
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "bench_search.py"), "--configs", "pdarts-s3", "--channels",
                           "8", "--layers", "3", "--batch", "4", "--warmup", "0", "--steps", "1", "--variants",
                           "eager,compile", "--compile-backend", "aot_eager", "--json", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    record = json.loads(out.read_text())
    assert list(record) == ["pdarts-s3"]
    config = record["pdarts-s3"]
    assert list(config) == ["baseline", "eager", "compile"]
    assert set(config["baseline"]) == {"step_ms", "img_per_s", "peak_mb"}
    ours = {"step_ms", "img_per_s", "peak_mb", "speedup", "memory_ratio", "max_abs_grad_diff", "check"}
    assert set(config["eager"]) == ours
    assert set(config["compile"]) == ours | {"compile_s", "cudagraph_skips"}
    for variant in ("eager", "compile"):
        r = config[variant]
        assert r["step_ms"] > 0 and r["peak_mb"] > 0
        assert r["speedup"] == pytest.approx(r["img_per_s"] / config["baseline"]["img_per_s"])
        assert r["memory_ratio"] == pytest.approx(r["peak_mb"] / config["baseline"]["peak_mb"])
        assert 0 <= r["max_abs_grad_diff"] == r["check"]["max_abs_grad_diff"] <= bench_search.TOLERANCE
    assert config["compile"]["compile_s"] > 0 and config["compile"]["check"]["skip_dropout"] == 0.0
    assert 0 < config["compile"]["check"]["float32_rounding"]["max_abs_grad_diff"] < 1e-4
    assert done.stdout.startswith("device ") and "speedup" in done.stdout
    assert re.search(r"\npdarts-s3 +compile +\d", done.stdout)
    assert "pdarts-s3 compile: warm-up 2/2" in done.stderr  # compiled variants warm up twice, even with --warmup 0


def test_cudagraph_variants_need_cuda(capsys: pytest.CaptureFixture[str]) -> None:
    for variant in ("cudagraph", "cudagraph-no-recompute"):
        assert bench_search.main(["--variants", f"eager,{variant}"]) == 2
        assert capsys.readouterr().err == f"error: variant {variant} records CUDA graphs: it needs --device cuda\n"


@pytest.mark.parametrize("variant, recompute, compiled", [
    ("eager", True, False), ("no-recompute", False, False), ("compile", True, True),
    ("compile-no-recompute", False, True)])
def test_variant_builds_its_supernet(variant: str, recompute: bool, compiled: bool) -> None:
    """Each variant of ours is the supernet with its recomputation setting and, compiled, every search cell compiled."""
    settings = dataclasses.replace(TINY, compile_backend="aot_eager")
    model = bench_search.build_model("pdarts-s3", variant, settings, torch.device("cpu"))
    edges = [m for m in model.modules() if isinstance(m, MixedEdge)]
    assert edges and {e.recompute for e in edges} == {recompute} and model.recompute is recompute
    cells = list(model.search_cells())
    assert [c._compiled_call_impl is not None for c in cells] == [compiled] * len(cells)


def test_compiled_check_sees_a_wrong_weight() -> None:
    """The by-step comparison (a weight pass, an architecture pass) finds a wrong weight as the full one does."""
    ours = _supernet(skip_dropout=0.3)
    baseline = baseline_from(ours)
    with torch.no_grad():
        baseline.cells[1].edges[3].ops[DARTS_PRIMITIVES.index("dil_conv_3x3")].op[2].weight.mul_(1.5)
    batch = (torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,)))
    ours.set_skip_dropout(0.0)
    loss_diff, grad_diff = bench_search.compare(ours, plain_dropout(baseline), batch, 5, by_step=True)
    assert grad_diff > 1e-4 and loss_diff > 0
    with torch.no_grad():
        baseline.cells[1].edges[3].ops[DARTS_PRIMITIVES.index("dil_conv_3x3")].op[2].weight.div_(1.5)
    assert max(bench_search.compare(ours, plain_dropout(baseline), batch, 5, by_step=True)) <= 1e-5


def test_float32_rounding_is_the_scale_of_a_variants_check() -> None:
    ours = _supernet(skip_dropout=0.0)
    batch = (torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,)))
    loss_rounding, grad_rounding = bench_search.float32_rounding(plain_dropout(baseline_from(ours)), batch, 5)
    assert 0 < grad_rounding < 1e-4 and 0 <= loss_rounding < 1e-5  # float32 against float64: rounding only
    # the figures of a compiled pdarts-s1 at batch 64 on the CPU: 1.3e-3 apart, the baseline's own rounding 9.6e-4
    check = {"loss_diff": 2.4e-7, "max_abs_grad_diff": 1.28e-3,
             "float32_rounding": {"loss_diff": 2.7e-7, "max_abs_grad_diff": 9.6e-4}}
    assert bench_search.variant_disagreement("pdarts-s1 compile", check) is None
    check["float32_rounding"]["max_abs_grad_diff"] = 2e-4  # a difference the rounding does not explain
    assert bench_search.variant_disagreement("pdarts-s1 compile", check) == (
        "pdarts-s1 compile: ours and the baseline disagree beyond float32 rounding: max |gradient difference| "
        "0.00128 > 4 x 0.0002 (the baseline's float32 against float64) and > 1e-05")
    check["loss_diff"] = 2e-5
    assert "loss difference 2e-05 > 4 x 2.7e-07" in bench_search.variant_disagreement("x", check)


def plain_dropout(baseline: BaselineSupernet) -> BaselineSupernet:
    for module in baseline.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
    return baseline


def test_unknown_config_is_a_one_line_error() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "bench_search.py"), "--configs", "darts,nope"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip() == ("error: unknown config 'nope'; known: pdarts-s1, pdarts-s2, pdarts-s3, darts, "
                                   "pc-darts")


def test_disagreement_exits_1(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(bench_search, "in_child", lambda what, function, *args: function(*args))
    monkeypatch.setattr(bench_search, "compare", lambda *args: (0.0, 1e-3))
    assert bench_search.main(["--configs", "darts", "--channels", "8", "--layers", "3", "--batch", "4"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: darts: ours and the baseline disagree even in float64")
