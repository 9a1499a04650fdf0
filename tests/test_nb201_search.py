"""Searching the NAS-Bench-201 space with the one supernet: skeleton, weights, derivation, the tool's output."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from pdarts_wild.genotype import GenotypeError
from pdarts_wild.nb201 import NB201Arch, NetworkNB201, derive_nb201
from pdarts_wild.networks import count_parameters
from pdarts_wild.spaces import get_space
from pdarts_wild.supernet import NB201SearchCell, Supernet
from pdarts_wild.zoo import resolve_genotype

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import search as search_tool  # noqa: E402  (tools/search.py)

SPACE = get_space("nb201")
TINY = ["--space", "nb201", "--dataset", "digits", "--preset", "tiny", "--layers", "1", "--channels", "4",
        "--device", "cpu", "--no-progress"]


def nb201_supernet(**kwargs: object) -> Supernet:
    return Supernet(SPACE, SPACE.initial_candidates(), 10, **{"channels": 16, "layers": 5, **kwargs})


def test_supernet_has_the_benchmark_search_model_weights_and_one_shared_alpha() -> None:
    model = nb201_supernet()
    assert sum(p.numel() for p in model.weight_parameters()) == 1_692_826  # AutoDL's DARTS search model
    assert list(model.alphas) == ["normal"] and model.alphas["normal"].shape == (6, 5)
    cells = list(model.search_cells())
    assert len(cells) == 15 and len(model.cells) == 17  # 3 x 5 cells and the two residual reductions
    assert [cell.edges[0].ops[1].op[1].out_channels for cell in cells[::5]] == [16, 32, 64]  # nor_conv_1x1
    edge = cells[0].edges[0]
    assert edge.op_names == SPACE.primitives and len(edge.ops) == 4  # none is not computed
    assert isinstance(edge.ops[3], nn.AvgPool2d)  # no BatchNorm after the pool in NAS-Bench-201 cells
    assert edge.ops[2].op[1].bias is not None and not edge.ops[2].op[2].affine  # conv bias = not affine
    rf = nb201_supernet(affine=True)
    assert rf.cells[0].edges[0].ops[2].op[1].bias is None
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_cell_sums_every_earlier_node_and_outputs_the_last() -> None:
    """With only skip_connect on every edge: n1 = x, n2 = 2x, n3 = x + x + 2x = 4x."""
    cell = NB201SearchCell([("skip_connect",)] * 6, 3, 4, affine=False, skip_dropout=0.0)
    x = torch.randn(2, 4, 8, 8)
    weights = [torch.ones(1)] * 6
    torch.testing.assert_close(cell(x, weights), 4 * x)


def test_derivation_is_the_argmax_of_every_edge_none_included() -> None:
    ops = SPACE.primitives
    rows = [dict(zip(ops, w)) for w in (
        [0.5, 0.1, 0.1, 0.2, 0.1],  # none wins: kept, as in the benchmark's DARTS
        [0.1, 0.1, 0.2, 0.5, 0.1], [0.1, 0.4, 0.2, 0.2, 0.1], [0.1, 0.1, 0.1, 0.1, 0.6],
        [0.2, 0.2, 0.2, 0.2, 0.2],  # a tie: the first op
        [0.1, 0.1, 0.6, 0.1, 0.1])]
    arch = derive_nb201(rows)
    assert arch.to_string() == "|none~0|+|nor_conv_3x3~0|skip_connect~1|+|avg_pool_3x3~0|none~1|nor_conv_1x1~2|"
    with pytest.raises(GenotypeError, match="6 edges"):
        derive_nb201(rows[:5])


@pytest.fixture(scope="module")
def nb201_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("nb201") / "run"
    assert search_tool.main(["--algorithm", "darts", *TINY, "--out", str(out)]) == 0
    return out


def test_search_writes_the_arch_string_and_its_picture(nb201_run: Path) -> None:
    record = json.loads((nb201_run / "genotype.json").read_text())
    assert record["space"] == "nb201" and "normal" in record["alphas"] and "reduce" not in record["alphas"]
    arch = NB201Arch.from_string(record["genotype"])
    expected = derive_nb201(record["alphas"]["normal"])  # the rule applied to the alphas written beside it
    assert arch == expected and (nb201_run / "genotype.txt").read_text().strip() == arch.to_string()
    assert (nb201_run / "cell_nb201.png").is_file() and (nb201_run / "alphas.png").is_file()
    config = json.loads((nb201_run / "config.json").read_text())
    assert config["nesterov"] and config["weight_decay"] == 5e-4  # NAS-Bench-201's DARTS settings
    # the file builds the benchmark's network, and only it
    net = NetworkNB201(nb201_run / "genotype.json")
    assert count_parameters(net) == count_parameters(NetworkNB201(arch))
    with pytest.raises(GenotypeError, match="space nb201"):
        resolve_genotype(nb201_run / "genotype.json")
    info = subprocess.run([sys.executable, str(ROOT / "tools" / "model_info.py"), str(nb201_run / "genotype.json"),
                           "--net", "nb201", "--json"], capture_output=True, text=True, check=True)
    assert json.loads(info.stdout)["params"] == count_parameters(net)


def test_rf_darts_searches_nb201_with_frozen_convs(tmp_path: Path) -> None:
    out = tmp_path / "rf"
    assert search_tool.main(["--algorithm", "rf-darts", *TINY, "--out", str(out)]) == 0
    assert NB201Arch.from_string(json.loads((out / "genotype.json").read_text())["genotype"])


@pytest.mark.parametrize("algorithm, message", [("pdarts", "P-DARTS deepens"), ("opp-darts", "OPP-DARTS is defined")])
def test_algorithms_without_an_nb201_search_are_refused_in_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], algorithm: str, message: str) -> None:
    assert search_tool.main(["--algorithm", algorithm, *TINY, "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and "--space nb201" in err[0]
    assert not (tmp_path / "x").exists()


def test_darts_space_files_are_refused_by_the_nb201_network(tmp_path: Path) -> None:
    path = tmp_path / "g.json"
    path.write_text(json.dumps({"version": 1, "space": "darts", "genotype": "Genotype(...)"}))
    with pytest.raises(GenotypeError, match="space darts, not a NAS-Bench-201 cell"):
        NetworkNB201(path)
