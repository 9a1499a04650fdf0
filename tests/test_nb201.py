"""NAS-Bench-201: architecture strings, the benchmark's network and its parameter counts."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pdarts_wild.genotype import GenotypeError, genotype_record, write_genotype_file
from pdarts_wild.nb201 import NB201Arch, NetworkNB201
from pdarts_wild.networks import NetworkCIFAR
from pdarts_wild.zoo import GENOTYPES

ROOT = Path(__file__).resolve().parents[1]
BEST = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_1x1~1|nor_conv_3x3~2|"
RF_DARTS = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"
LARGEST = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
EMPTY = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"


@pytest.mark.parametrize("arch, classes, params", [
    (BEST, 10, 1_073_466), (BEST, 100, 1_079_316), (BEST, 120, 1_080_616),
    (RF_DARTS, 10, 1_288_506), (RF_DARTS, 100, 1_294_356),
    (LARGEST, 10, 1_531_546), (EMPTY, 10, 73_306), (EMPTY, 120, 80_456),
])
def test_parameter_counts_equal_the_benchmark_network(arch: str, classes: int, params: int) -> None:
    with torch.device("meta"):
        model = NetworkNB201(arch, num_classes=classes)
    assert sum(p.numel() for p in model.parameters()) == params


def test_string_round_trip_and_edges() -> None:
    arch = NB201Arch.from_string(BEST)
    assert arch.to_string() == BEST
    assert arch.edges[3:] == (("skip_connect", 0), ("nor_conv_1x1", 1), ("nor_conv_3x3", 2))


@pytest.mark.parametrize("text, message", [
    ("|nor_conv_3x3~0|+|nor_conv_3x3~0|", "3 nodes joined by"),
    (BEST.replace("nor_conv_1x1", "conv_9x9"), "unknown operation 'conv_9x9'"),
    (BEST.replace("skip_connect~0", "skip_connect~3"), "must name an earlier node 0..2"),
    (BEST.replace("skip_connect~0", "skip_connect~1"), "must list every earlier node 0..2 exactly once"),
])
def test_bad_strings_name_the_problem(text: str, message: str) -> None:
    with pytest.raises(GenotypeError, match=message):
        NB201Arch.from_string(text)


def test_forward_and_cell_wiring() -> None:
    model = NetworkNB201(BEST, C=4, layers=1).eval()
    logits, aux = model(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 10) and aux is None
    cell = model.cells[0]
    assert [type(op).__name__ for op in cell.ops] == ["ReLUConvBN", "ReLUConvBN", "ReLUConvBN", "Identity",
                                                      "ReLUConvBN", "ReLUConvBN"]
    assert cell.ops[0].op[1].bias is None  # evaluation convs: affine BN, no bias


def test_spaces_refuse_each_others_cells(tmp_path: Path) -> None:
    with pytest.raises(GenotypeError, match="NAS-Bench-201 architecture string"):
        NetworkCIFAR(BEST)
    with pytest.raises(GenotypeError, match="DARTS-space genotype cannot build"):
        NetworkNB201(GENOTYPES["PDARTS"].to_string())
    path = tmp_path / "genotype.json"
    write_genotype_file(path, genotype_record(GENOTYPES["PDARTS"], space="nb201"))
    with pytest.raises(GenotypeError, match="space nb201"):
        NetworkCIFAR(str(path))


def test_model_info_reports_the_benchmark_count() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "model_info.py"), RF_DARTS, "--net", "nb201",
                           "--num-classes", "100", "--json"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    assert info["params"] == 1_294_356 and info["macs"] > 0
    bad = subprocess.run([sys.executable, str(ROOT / "tools" / "model_info.py"), "|x~0|", "--net", "nb201"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.startswith("error: ") and len(bad.stderr.strip().splitlines()) == 1
