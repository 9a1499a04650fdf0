"""The tools' argument parser: a command-line mistake is one ``error:`` line with the closest names, exit code 2."""
from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

from pdarts_wild.cli import ToolParser, range_problem

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import transfer  # noqa: E402  (tools/transfer.py)
import export_onnx  # noqa: E402  (tools/export_onnx.py)
import train_cifar  # noqa: E402  (tools/train_cifar.py)


def parser() -> ToolParser:
    p = ToolParser(prog="tools/x.py")
    p.add_argument("--algorithm", choices=("darts", "pdarts", "pc-darts"), default="pdarts")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--lr", type=float, default=0.1)
    commands = p.add_subparsers(dest="command")
    commands.add_parser("run").add_argument("--out", required=True)
    return p


@pytest.mark.parametrize("argv, message", [
    (["--algorithm", "pdart"], "argument --algorithm: invalid choice 'pdart' (closest: pdarts, darts, pc-darts; all: "
                               "tools/x.py --help)"),
    (["--lrr=3"], "unrecognized arguments: --lrr=3 (closest: --lr; all: tools/x.py --help)"),
    (["--epochs", "ten"], "argument --epochs: invalid int value: 'ten' (see tools/x.py --help)"),
    (["runn"], "argument command: invalid choice 'runn' (closest: run; all: tools/x.py --help)"),
    (["run"], "the following arguments are required: --out (see tools/x.py run --help)"),
], ids=["choice", "option", "value", "subcommand", "required"])
def test_a_mistake_is_one_error_line(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        parser().parse_args(argv)
    assert stop.value.code == 2
    assert capsys.readouterr().err == f"error: {message}\n"


def test_the_tools_use_it(capsys: pytest.CaptureFixture[str]) -> None:
    """Three tools (a study's sub-command, a training tool through backbones.train_cli, a network size of 0): the
    line, no usage dump."""
    for main, argv, message in [
        (transfer.main, ["run", "--tasks", "cifar10", "--out", "x", "--preset", "tiy"],
         "argument --preset: invalid choice 'tiy' (closest: tiny; all: tools/transfer.py run --help)"),
        (train_cifar.main, ["--dataset", "cifar11"],
         "argument --dataset: invalid choice 'cifar11' (closest: cifar10, cifar100; all: tools/train_cifar.py --help)"),
        (export_onnx.main, ["pdarts_c10", "--out", "x.onnx", "--channels", "0"],
         "argument --channels: must be a positive integer, got 0 (see tools/export_onnx.py --help)"),
    ]:
        with pytest.raises(SystemExit) as stop:
            main(argv)
        assert stop.value.code == 2
        assert capsys.readouterr().err == f"error: {message}\n"


@pytest.mark.parametrize("ranges, problem", [
    ({"positive": {"--lr": math.nan}}, "--lr must be finite and > 0, got nan"),
    ({"positive": {"--lr": math.inf}}, "--lr must be finite and > 0, got inf"),
    ({"positive": {"--lr": 0.0}}, "--lr must be finite and > 0, got 0.0"),
    ({"non_negative": {"--wd": math.nan}}, "--wd must be finite and >= 0, got nan"),
    ({"non_negative": {"--wd": math.inf}}, "--wd must be finite and >= 0, got inf"),
    ({"non_negative": {"--wd": -1.0}}, "--wd must be finite and >= 0, got -1.0"),
    ({"fractions": {"--momentum": math.nan}}, "--momentum must be in [0, 1), got nan"),
    ({"fractions": {"--momentum": 1.0}}, "--momentum must be in [0, 1), got 1.0"),
    ({"positive_counts": {"--epochs": 0}}, "--epochs must be > 0, got 0"),
    ({"counts": {"--workers": -1}}, "--workers must be >= 0, got -1"),
    ({"positive": {"--lr": 0.1, "--arch-lr": -1.0}, "counts": {"--workers": -1}},
     "--arch-lr must be finite and > 0, got -1.0"),  # the first problem only
    ({"positive": {"--lr": None}, "non_negative": {"--wd": None}, "fractions": {"--momentum": None},
      "positive_counts": {"--epochs": None}, "counts": {"--workers": None}}, None),  # unset settings pass
    ({"positive": {"--lr": 1e-9}, "non_negative": {"--wd": 0.0}, "fractions": {"--momentum": 0.0},
      "positive_counts": {"--epochs": 1}, "counts": {"--workers": 0}}, None),  # the edges inside the ranges
])
def test_range_problem_refuses_nan_and_infinity(ranges: dict, problem: str | None) -> None:
    """The one range check of the search's and the training tools' settings."""
    assert range_problem(**ranges) == problem
