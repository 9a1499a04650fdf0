"""torch.compile of the search cells (tools/search.py --compile): the same loss, gradients and BN statistics as
eager, one graph per distinct cell and kind of pass, none after the first steps (a new skip-dropout rate included),
compile time apart from images/s in search.log; the search's multi-tensor optimizers; and the estimate of the time left.

The compiled tests trace with aot_eager (dynamo and AOTAutograd, what decides graphs and recompilations) instead
of generating kernels, which takes minutes on a CPU. ~60 s in all."""
from __future__ import annotations

import copy
import re
import sys
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

from pdarts_wild.compiling import compile_cells, compiled_graphs
from pdarts_wild.config import resolve_config
from pdarts_wild.pace import Pace, Work, format_duration
from pdarts_wild.search import search_optimizers
from pdarts_wild.spaces import CELL_TYPES, get_space
from pdarts_wild.supernet import Supernet

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import search as search_tool  # noqa: E402  (tools/search.py)

OPS = ("none", "skip_connect", "sep_conv_3x3")


def _passes(model: Supernet, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[list[float], dict[str, torch.Tensor]]:
    """A search step's two passes (weights with the alphas fixed, then alphas with the weights fixed) and an
    evaluation: their losses and the gradients (copied)."""
    model.zero_grad(set_to_none=True)
    losses = []
    for params in (list(model.weight_parameters()), model.arch_parameters()):
        torch.manual_seed(3)
        with model.gradients_only_for(params):
            loss = F.cross_entropy(model(batch[0]), batch[1])
            loss.backward()
        losses.append(loss.item())
    model.eval()
    with torch.no_grad():
        losses.append(F.cross_entropy(model(batch[0]), batch[1]).item())
    model.train()
    return losses, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("recompute", [True, False])
def test_compiled_cells_match_eager_and_compile_once_per_kind_of_pass(recompute: bool) -> None:
    """With recomputation (torch.utils.checkpoint inside the graphs) and without (the compiler picks what to save)."""
    space = get_space("darts")
    torch.manual_seed(0)
    eager = Supernet(space, {cell: [OPS] * space.num_edges for cell in CELL_TYPES}, 10, channels=4, layers=3,
                     skip_dropout=0.3).to(memory_format=torch.channels_last)
    eager.set_recompute(recompute)
    with torch.no_grad():
        for a in eager.arch_parameters():
            a.normal_()
    compiled = copy.deepcopy(eager)
    compile_cells(compiled, backend="aot_eager")
    batch = (torch.randn(4, 3, 16, 16).to(memory_format=torch.channels_last), torch.randint(0, 10, (4,)))
    start = compiled_graphs()
    _passes(compiled, batch)
    first = compiled_graphs() - start
    assert first == 3 * 3  # 3 cells of distinct shapes x (weight pass, architecture pass, evaluation)
    compiled.set_skip_dropout(0.0)  # P-DARTS sets a new rate every epoch: no new graph
    eager.set_skip_dropout(0.0)
    compiled.load_state_dict(eager.state_dict())  # the same BN statistics before the compared passes
    losses, grads = _passes(compiled, batch)
    assert compiled_graphs() - start == first
    eager_losses, eager_grads = _passes(eager, batch)
    assert losses == pytest.approx(eager_losses, rel=1e-6)
    assert grads.keys() == eager_grads.keys() and len(grads) == len(list(eager.parameters()))
    for name, grad in grads.items():
        torch.testing.assert_close(grad, eager_grads[name], rtol=1e-4, atol=1e-6, msg=name)
    for (name, mine), theirs in zip(compiled.named_buffers(), eager.buffers()):  # BN statistics moved once per pass
        torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-6, msg=name)


def test_compiled_search_compiles_in_the_first_epoch_only(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert search_tool.main(["--algorithm", "darts", "--space", "s3", "--dataset", "digits", "--layers", "3",
                             "--channels", "4", "--epochs", "2", "--batch-size", "8", "--train-limit", "48",
                             "--workers", "0", "--device", "cpu", "--no-progress", "--out", str(out),
                             "--compile", "--compile-backend", "aot_eager"]) == 0
    epochs = re.findall(r"epoch (\d)/2 .* \| ([\d.]+) img/s, compiled (\d+) graphs in (\d+) s \| search ends in "
                        r"~(\d+:\d\d:\d\d)", (out / "search.log").read_text())
    assert [e[0] for e in epochs] == ["1", "2"]
    (_, _, graphs_1, seconds_1, _), (_, speed_2, graphs_2, seconds_2, eta_2) = epochs
    assert int(graphs_1) == 3 * 3 and int(seconds_1) > 0  # 3 distinct cells x (weights, architecture, evaluation)
    assert (graphs_2, seconds_2, eta_2) == ("0", "0", "0:00:00") and float(speed_2) > 0


@pytest.mark.parametrize("flags, message", [
    (["--compile", "reduce-overhead"], "--compile reduce-overhead records CUDA graphs: it needs --device cuda"),
    (["--compile", "--drop-path", "0.2", "--algorithm", "darts"], "--compile with --drop-path: the ramped rate"),
    (["--compile", "--unrolled", "--algorithm", "darts"], "--compile with --unrolled: the second-order step"),
])
def test_impossible_compile_settings_are_one_line(tmp_path: Path, flags: list[str], message: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert search_tool.main(["--dataset", "digits", "--preset", "tiny", "--device", "cpu", "--out",
                             str(tmp_path / "x"), *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {message}")


def test_pace_estimates_unmeasured_stages_and_kinds() -> None:
    pace = Pace()
    costs = [35.0, 44.0, 34.0]  # P-DARTS: 5 cells x 7 ops, 11 x 4, 17 x 2
    assert pace.remaining([Work(0, "weights", 100)], costs) is None
    pace.record(0, "weights", 10.0, 1000, costs[0])  # 0.01 s per image
    work = [Work(0, "weights", 100), Work(0, "arch", 100), Work(0, "valid", 300), Work(1, "weights", 100)]
    assert pace.remaining(work, costs) == pytest.approx(1.0 + 2.0 + 1.0 + 1.0 * 44 / 35)
    pace.record(0, "arch", 30.0, 1000, costs[0])  # measured: an architecture epoch takes 3x
    assert pace.per_image(0, "arch", costs) == pytest.approx(0.03)
    assert pace.per_image(1, "arch", costs) == pytest.approx(0.03 * 44 / 35)  # the measured ratio, scaled
    pace.record(1, "arch", 12.0, 1000, costs[1])  # stage 2's first measurement is an architecture epoch
    assert pace.per_image(1, "weights", costs) == pytest.approx(0.004)
    assert pace.per_image(2, "weights", costs) == pytest.approx(0.004 * 34 / 44)
    assert format_duration(3723.4) == "1:02:03" and format_duration(59.6) == "0:01:00"


def test_search_optimizers_give_the_per_tensor_loops_numbers_bit_for_bit() -> None:
    """Foreach SGD, Adam and clipping (what tools/search.py steps with) against the per-tensor loops."""
    space = get_space("darts")
    torch.manual_seed(0)
    start = Supernet(space, {cell: [OPS] * space.num_edges for cell in CELL_TYPES}, 10, channels=4, layers=3)
    config = resolve_config("pdarts", "cifar10")
    results = []
    for fast in (True, False):
        model = copy.deepcopy(start)
        w_opt, a_opt = search_optimizers(model, config, config.lr) if fast else (
            torch.optim.SGD(model.weight_parameters(), config.lr, momentum=config.momentum,
                            weight_decay=config.weight_decay, foreach=False),
            torch.optim.Adam(model.arch_parameters(), config.arch_lr, betas=config.arch_betas,
                             weight_decay=config.arch_weight_decay, foreach=False))
        gen = torch.Generator().manual_seed(1)
        for _ in range(3):
            for opt, clip in ((w_opt, config.grad_clip), (a_opt, config.arch_grad_clip)):
                params = opt.param_groups[0]["params"]
                for p in params:
                    p.grad = torch.randn(p.shape, generator=gen)
                torch.nn.utils.clip_grad_norm_(params, clip, foreach=fast)
                opt.step()
        results.append([p.detach() for p in model.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*results))
    assert not all(torch.equal(a, b) for a, b in zip(results[0], start.parameters()))  # the steps moved them
