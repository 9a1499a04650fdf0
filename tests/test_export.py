"""Export: torch.export for every registered model, ONNX through tools/export_onnx.py checked with onnxruntime.

Networks are tiny (C=4, 3 cells: a normal cell, then the two reduction cells): the op types, stems,
FactorizedReduce paths and heads are those of the full networks, only fewer and narrower. Their BN
statistics are set from a batch first: at initialisation (mean 0, variance 1) the signal fades with
depth and every image gets nearly the same logits, which would make the comparisons vacuous.
"""
from __future__ import annotations

import sys
from pathlib import Path

import onnx
import pytest
import torch

import backbones  # noqa: F401  (registers the models)
from backbones.timm_pdarts import MODEL_NAMES, PUBLISHED_GENOTYPES, model_name
from pdarts_wild.genotype import genotype_record, write_genotype_file
from pdarts_wild.zoo import GENOTYPES

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import export_onnx as export_tool  # noqa: E402  (tools/export_onnx.py)

TINY = dict(C=4, layers=3)


def input_for(name: str, batch: int = 2) -> torch.Tensor:
    size = 64 if name.endswith("imagenet") else 32
    return torch.randn(batch, 3, size, size)


def calibrated(model: torch.nn.Module, images: torch.Tensor) -> torch.nn.Module:
    """``model`` in eval mode with each BN's running statistics those of ``images``."""
    for bn in model.modules():
        if isinstance(bn, torch.nn.BatchNorm2d):
            bn.reset_running_stats()
            bn.momentum = None  # a cumulative average: one batch sets the statistics
    with torch.no_grad():
        model.train()(images)
    return model.eval()


def tiny_model(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return calibrated(export_tool.build_model(name, **TINY), input_for(name, batch=8))


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_registered_model_exports_with_torch_export(name):
    model = tiny_model(name)
    program = torch.export.export(model, (input_for(name),), dynamic_shapes=({0: torch.export.Dim("batch")},))
    x = input_for(name, batch=3)
    with torch.no_grad():
        expected = model(x)
        torch.testing.assert_close(program.module()(x), expected, rtol=0, atol=1e-5)
    assert (expected[0] - expected[1]).abs().max() > 1e-2  # the logits do depend on the image


# One ONNX export per published genotype (each a few seconds), alternating the CIFAR and ImageNet networks.
ONNX_CASES = [model_name(g, "c10" if i % 2 == 0 else "imagenet") for i, g in enumerate(PUBLISHED_GENOTYPES)]


@pytest.mark.parametrize("name", ONNX_CASES)
def test_onnx_export_matches_pytorch_in_onnxruntime(name, tmp_path):
    model = tiny_model(name)
    path = tmp_path / f"{name}.onnx"
    input_size = tuple(input_for(name).shape[1:])
    export_tool.export_onnx(model, path, input_size)
    graph = onnx.load(str(path)).graph
    assert [i.name for i in graph.input] == ["input"] and [o.name for o in graph.output] == ["logits"]
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_param  # a symbolic (dynamic) batch size
    check = export_tool.compare_with_onnxruntime(model, path, input_size, batch=3)
    assert check.difference < 1e-4 and check.onnx_error < 1e-4


def test_cli_exports_a_genotype_file_at_a_non_square_size(tmp_path, capsys):
    genotype = tmp_path / "genotype.json"
    write_genotype_file(genotype, genotype_record(GENOTYPES["PDARTS"], algorithm="pdarts"))
    out = tmp_path / "searched.onnx"
    code = export_tool.main([str(genotype), "--net", "imagenet", "--num-classes", "7", "--channels", "4",
                             "--layers", "3", "--input-size", "64", "96", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert f"wrote {out} (input 3x64x96, dynamic batch)" in printed and "max |onnxruntime - torch|" in printed
    dims = onnx.load(str(out)).graph.output[0].type.tensor_type.shape.dim
    assert dims[1].dim_value == 7


@pytest.mark.parametrize(
    "args, message",
    [
        (["NOT_A_GENOTYPE", "--net", "cifar"], "neither a published genotype"),
        (["PDARTS"], "for a genotype, give --net"),
        (["pdarts_c10", "--input-size", "30"], "multiples of 4"),
        (["pdarts_c10", "--checkpoint", "missing.pt"], "checkpoint missing.pt not found"),
    ],
)
def test_cli_rejects_bad_input_with_one_line(args, message, tmp_path, capsys):
    assert export_tool.main([*args, "--channels", "4", "--layers", "3", "--out", str(tmp_path / "x.onnx")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and message in err and "\n" not in err
    assert not (tmp_path / "x.onnx").exists()
