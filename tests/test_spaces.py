"""RobustDARTS spaces S1-S4 and the noise op, through the one supernet and the search tool."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from pdarts_wild.config import ConfigError, resolve_config
from pdarts_wild.data import Cutout
from pdarts_wild.genotype import read_genotype_file
from pdarts_wild.networks import NetworkCIFAR
from pdarts_wild.ops import build_op
from pdarts_wild.spaces import SPACES, edge_inputs, get_space
from pdarts_wild.supernet import Supernet

ROOT = Path(__file__).resolve().parents[1]


def test_s1_edges_hold_the_published_pairs() -> None:
    candidates = get_space("s1").initial_candidates()
    assert candidates["normal"][0] == ("skip_connect", "dil_conv_3x3")
    assert candidates["normal"][5] == ("max_pool_3x3", "skip_connect")
    assert candidates["normal"][12] == ("dil_conv_3x3", "dil_conv_5x5")
    assert candidates["reduce"][1] == ("max_pool_3x3", "dil_conv_3x3")
    assert candidates["reduce"][6] == ("max_pool_3x3", "sep_conv_3x3")
    assert all(len(ops) == 2 for cell in candidates.values() for ops in cell)
    assert sum(ops == ("max_pool_3x3", "avg_pool_3x3") for ops in candidates["reduce"]) == 6


@pytest.mark.parametrize("name, ops", [("s2", {"skip_connect", "sep_conv_3x3"}),
                                       ("s3", {"none", "skip_connect", "sep_conv_3x3"}),
                                       ("s4", {"noise", "sep_conv_3x3"})])
def test_uniform_spaces(name: str, ops: set[str]) -> None:
    candidates = get_space(name).initial_candidates()
    assert all(set(edge) == ops for cell in candidates.values() for edge in cell)
    model = Supernet(get_space(name), candidates, 10, 4, 3)
    assert all(len(w) == len(ops) for w in model.edge_weights("normal"))


@pytest.mark.parametrize("stride", [1, 2])
def test_noise_ignores_its_input_and_is_resampled(stride: int) -> None:
    noise = build_op("noise", 8, stride, affine=False)
    x = torch.zeros(16, 8, 16, 16, requires_grad=True)
    a, b = noise(x), noise(x)
    assert a.shape == (16, 8, 16 // stride, 16 // stride)
    assert not torch.equal(a, b)
    assert abs(a.mean().item()) < 0.05 and abs(a.std().item() - 1) < 0.05
    assert not a.requires_grad  # no gradient flows to the input
    assert not list(noise.parameters())


def test_pdarts_refuses_spaces_it_cannot_prune() -> None:
    with pytest.raises(ConfigError, match="space s2 hold at most 2.*darts, pc-darts or rf-darts"):
        resolve_config("pdarts", "cifar10", space="s2")
    assert resolve_config("darts", "svhn", space="s1").space == "s1"


@pytest.mark.parametrize("space", ["s1", "s3", "s4"])
def test_search_in_space_picks_only_edge_ops(tmp_path: Path, space: str) -> None:
    sys.path.insert(0, str(ROOT / "tools"))
    import search as search_tool

    out = tmp_path / space
    assert search_tool.main(["--algorithm", "darts", "--space", space, "--dataset", "digits", "--preset", "tiny",
                             "--epochs", "1", "--device", "cpu", "--no-progress", "--out", str(out)]) == 0
    genotype, record = read_genotype_file(out / "genotype.json")
    assert record["space"] == space
    edge_of = {(node, j): e for e, (node, j) in enumerate(edge_inputs(4))}
    candidates = SPACES[space].initial_candidates()
    for cell in ("normal", "reduce"):
        for k, (op, j) in enumerate(getattr(genotype, cell)):
            assert op in candidates[cell][edge_of[(k // 2, j)]] and op != "none"
    NetworkCIFAR(genotype, C=4, layers=3)(torch.randn(2, 3, 32, 32))  # the evaluation network builds and runs


def test_pdarts_in_s2_is_refused_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sys.path.insert(0, str(ROOT / "tools"))
    import search as search_tool

    assert search_tool.main(["--space", "s2", "--dataset", "digits", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "space s2" in err[0]
    assert json.dumps(sorted(SPACES)) == json.dumps(["darts", "nb201", "s1", "s2", "s3", "s4"])


@pytest.mark.parametrize("space, order", [("s3", ["sep_conv_3x3", "none", "skip_connect"]),
                                          ("s4", ["sep_conv_3x3", "noise"])])
def test_opp_darts_grows_the_small_spaces_as_the_spec_says(tmp_path: Path, space: str, order: list[str]) -> None:
    """Parametric op first, then the other non-skip ops by the loss rule, skip_connect last."""
    sys.path.insert(0, str(ROOT / "tools"))
    import search as search_tool

    out = tmp_path / space
    assert search_tool.main(["--algorithm", "opp-darts", "--space", space, "--dataset", "digits", "--preset", "tiny",
                             "--epochs", str(len(order) + 1), "--device", "cpu", "--no-progress",
                             "--out", str(out)]) == 0
    growth = json.loads((out / "genotype.json").read_text())["op_growth"]
    added = [next(op for op in g["ops"] if op not in (growth[i - 1]["ops"] if i else [])) for i, g in enumerate(growth)]
    assert added == order


# ------------------------------------------------------------------------- RobustDARTS' drop-path


def test_drop_path_drops_whole_samples_of_every_edge_output_in_training_only() -> None:
    from torch import nn

    from pdarts_wild.supernet import MixedEdge, sum_nodes

    edges = nn.ModuleList([MixedEdge(("skip_connect",), 8, 1, affine=False, skip_dropout=0.0)])
    x = torch.rand(64, 8, 4, 4) + 0.5
    torch.manual_seed(0)
    out = sum_nodes([x], edges, 1, [torch.ones(1)], None, drop_path=0.25, training=True)[-1]
    kept = out.flatten(1).abs().sum(1) > 0
    torch.testing.assert_close(out[kept], x[kept] / 0.75)  # survivors are rescaled by 1 / (1 - p)
    assert (out[~kept] == 0).all() and 5 < int((~kept).sum()) < 30  # about a quarter of 64 dropped
    same = sum_nodes([x], edges, 1, [torch.ones(1)], None, drop_path=0.25, training=False)[-1]
    assert torch.equal(same, x)


def test_search_ramps_drop_path_and_cutout_probability_per_epoch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pdarts_wild.search import Search

    seen: list[float] = []
    original = Cutout.__call__
    monkeypatch.setattr(Cutout, "__call__", lambda self, img: (seen.append(self.prob), original(self, img))[1])
    rates: list[float] = []
    monkeypatch.setattr(Supernet, "set_drop_path", lambda self, p: rates.append(p))
    config = resolve_config("darts", "digits", "tiny", space="s3", epochs=[3], drop_path=0.2, cutout=4)
    Search(config, tmp_path / "run", torch.device("cpu"), progress=False).run()
    assert rates == pytest.approx([0.0, 0.1, 0.2])  # p * epoch / (epochs - 1)
    assert sorted(set(seen)) == pytest.approx([0.0, 0.5, 1.0])  # cutout's probability ramps with it
    history = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["history"]
    assert [h["drop_path"] for h in history] == pytest.approx([0.0, 0.1, 0.2])


def test_cutout_always_applies_by_default_and_drop_path_is_checked() -> None:
    assert (Cutout(4)(torch.ones(3, 8, 8)) == 0).any()
    with pytest.raises(ConfigError, match="--drop-path"):
        resolve_config("darts", "digits", "tiny", drop_path=1.0)
