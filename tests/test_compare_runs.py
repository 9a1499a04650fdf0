"""tools/compare_runs.py on real tiny searches and hand-made records: every number checked independently."""
from __future__ import annotations

import errno
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pdarts_wild import files
from pdarts_wild.genotype import Genotype, genotype_record, write_genotype_file
from pdarts_wild.nb201 import NB201Arch, NetworkNB201
from pdarts_wild.networks import NetworkCIFAR, count_parameters

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import compare_runs  # noqa: E402

TINY = ("--dataset", "digits", "--preset", "tiny", "--device", "cpu", "--no-progress")

NORMAL_A = [("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("skip_connect", 0), ("sep_conv_3x3", 1),
            ("skip_connect", 0), ("dil_conv_3x3", 2), ("sep_conv_5x5", 0), ("max_pool_3x3", 3)]
REDUCE = [("max_pool_3x3", 0), ("max_pool_3x3", 1), ("max_pool_3x3", 0), ("skip_connect", 2),
          ("skip_connect", 2), ("max_pool_3x3", 0), ("max_pool_3x3", 0), ("skip_connect", 2)]
# B differs from A in two normal choices: node 0 (1, sep_conv_5x5) and node 3 (4, avg_pool_3x3).
NORMAL_B = [*NORMAL_A[:1], ("sep_conv_5x5", 1), *NORMAL_A[2:7], ("avg_pool_3x3", 4)]
GENOTYPE_A = Genotype.make(NORMAL_A, range(2, 6), REDUCE, range(2, 6))
GENOTYPE_B = Genotype.make(NORMAL_B, range(2, 6), REDUCE, range(2, 6))

# normal: edge 0 uniform over 4 ops, the other 13 one-hot; reduce: every edge 1/4, 3/4.
ALPHAS = {
    "normal": [{"sep_conv_3x3": 0.25, "skip_connect": 0.25, "max_pool_3x3": 0.25, "none": 0.25}]
    + [{"sep_conv_3x3": 1.0, "none": 0.0}] * 13,
    "reduce": [{"max_pool_3x3": 0.75, "skip_connect": 0.25}] * 14,
}

# NAS-Bench-201 cells (6 edges each, 'none' edges are choices too). B differs from A in one edge (2<-0 is none),
# C in two (1<-0 skip_connect, 3<-2 avg_pool_3x3), so B and C differ in three.
NB201_A = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_1x1~1|nor_conv_3x3~2|"
NB201_B = "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_1x1~1|nor_conv_3x3~2|"
NB201_C = "|skip_connect~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_1x1~1|avg_pool_3x3~2|"
NB201_OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
# edge 0 uniform over the 5 ops, the other 5 edges one-hot: mean entropy log(5) / 6.
NB201_ALPHAS = {"normal": [dict.fromkeys(NB201_OPS, 0.2)] + [{**dict.fromkeys(NB201_OPS, 0.0), "none": 1.0}] * 5}


def run_tool(*args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = compare_runs.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def write_run(folder: Path, genotype: Genotype | NB201Arch, **metadata: Any) -> Path:
    folder.mkdir(parents=True)
    write_genotype_file(folder / "genotype.json", genotype_record(genotype, **metadata))
    return folder


def write_nb201_run(folder: Path, arch: str, **metadata: Any) -> Path:
    return write_run(folder, NB201Arch.from_string(arch), space="nb201", **metadata)


@pytest.fixture(scope="module")
def real_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny P-DARTS search (every stage) on digits."""
    out = tmp_path_factory.mktemp("runs") / "pdarts"
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "search.py"), *TINY, "--out", str(out)],
                          capture_output=True, text=True, cwd=out.parent, timeout=120)
    assert done.returncode == 0, done.stderr
    return out


def test_real_run_numbers_plot_and_markdown(real_run: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    other = write_run(tmp_path / "hand", GENOTYPE_A, algorithm="darts", seed=7)
    plot, numbers = tmp_path / "cmp.png", tmp_path / "cmp.json"
    code, out, err = run_tool(real_run, other, "--plot", plot, "--json", numbers, "--markdown", capsys=capsys)
    assert code == 0, err
    data = json.loads(numbers.read_text())
    summary = data["runs"][0]
    record = json.loads((real_run / "genotype.json").read_text())
    genotype = Genotype.make(*(record[f] for f in ("normal", "normal_concat", "reduce", "reduce_concat")))
    assert summary["params"] == count_parameters(NetworkCIFAR(genotype, C=36, num_classes=10, layers=20))
    assert summary["skips"] == {c: [op for op, _ in record[c]].count("skip_connect") for c in ("normal", "reduce")}
    for cell in ("normal", "reduce"):
        entropies = [-sum(w * math.log(w) for w in edge.values() if w > 0) for edge in record["alphas"][cell]]
        assert summary["entropy"][cell] == pytest.approx(sum(entropies) / 14, rel=1e-5)
    assert len(summary["stage_changes"]) == len(record["stage_genotypes"]) - 1
    assert summary["algorithm"] == record["algorithm"] and summary["seed"] == record["seed"]
    jaccard = data["agreement"]["jaccard"]
    assert jaccard[0][0] == jaccard[1][1] == 1.0 and jaccard[0][1] == jaccard[1][0] < 1.0
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert out.startswith("| run | algorithm |") and "\n|---|" in out
    assert "| pdarts | 2 |" in out and "| darts | 7 |" in out
    assert data["runs"][1]["params"] == count_parameters(NetworkCIFAR(GENOTYPE_A))


def test_identical_runs_agree_fully(real_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    numbers = tmp_path / "same.json"
    code, out, _ = run_tool(real_run, real_run / "genotype.json", "--json", numbers, capsys=capsys)
    assert code == 0
    data = json.loads(numbers.read_text())
    assert data["agreement"]["jaccard"] == [[1.0, 1.0], [1.0, 1.0]]
    assert len(data["shared"]) == 16  # every (cell, node, input, op) choice of both cells
    assert all(entry["runs"] == 2 for entry in data["choice_counts"])


def test_hand_made_entropy_jaccard_skips_and_stages(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_a = write_run(tmp_path / "a", GENOTYPE_A, algorithm="darts", seed=1, alphas=ALPHAS,
                      stage_genotypes=[GENOTYPE_B.to_string(), GENOTYPE_A.to_string()])
    run_b = write_run(tmp_path / "b", GENOTYPE_B, seed=2)
    numbers = tmp_path / "cmp.json"
    code, out, err = run_tool(run_a, run_b, "--json", numbers, capsys=capsys)
    assert code == 0, err
    data = json.loads(numbers.read_text())
    a, b = data["runs"]
    assert a["entropy"]["normal"] == pytest.approx(math.log(4) / 14)
    assert a["entropy"]["reduce"] == pytest.approx(-(0.25 * math.log(0.25) + 0.75 * math.log(0.75)))
    assert b["entropy"] is None and b["stage_changes"] is None
    assert a["stage_changes"] == [2]
    assert a["skips"] == b["skips"] == {"normal": 2, "reduce": 3}
    assert data["agreement"]["jaccard"][0][1] == pytest.approx(14 / 18)
    assert len(data["shared"]) == 14
    assert ["normal", 0, 1, "sep_conv_3x3"] not in data["shared"] and ["reduce", 3, 2, "skip_connect"] in data["shared"]
    assert "normal: (0, 0, sep_conv_3x3), (1, 0, skip_connect)" in out
    assert "0.78" in out


def test_nb201_runs_params_skips_entropy_and_agreement(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_a = write_nb201_run(tmp_path / "a", NB201_A, algorithm="darts", dataset="cifar10", seed=1,
                            alphas=NB201_ALPHAS, stage_genotypes=[NB201_A])
    run_b = write_nb201_run(tmp_path / "b", NB201_B, algorithm="darts", dataset="cifar100", seed=2)
    run_c = write_nb201_run(tmp_path / "c", NB201_C, algorithm="rf-darts", seed=3)
    plot, numbers = tmp_path / "cmp.png", tmp_path / "cmp.json"
    code, out, err = run_tool(run_a, run_b, run_c, "--markdown", "--plot", plot, "--json", numbers, capsys=capsys)
    assert code == 0, err
    params_a = count_parameters(NetworkNB201(NB201_A, num_classes=10))
    assert params_a == 1_073_466  # the figure the benchmark's TinyNetwork gives this cell
    # agreement: a-b 5/7 (one edge differs), a-c 4/8, b-c 3/9; each run's mean over the other two runs.
    assert out.startswith("| run | algorithm | seed | params (M) | skips | entropy | changes | agreement |\n")
    # params 1,073,466 -> 1.073 M; entropy log(5) / 6 = 0.268
    assert f"| {run_a} | darts | 1 | 1.073 | 1 | 0.268 | - | 0.61 |" in out
    assert f"| {run_b} | darts | 2 |" in out and "| 1 | - | - | 0.52 |" in out
    assert f"| {run_c} | rf-darts | 3 |" in out and "| 2 | - | - | 0.42 |" in out
    assert "Agreement (Jaccard of (node, input, op) sets)" in out
    assert "\n- normal: (2, 1, nor_conv_3x3), (3, 0, skip_connect), (3, 1, nor_conv_1x1)\n" in out
    data = json.loads(numbers.read_text())
    a, b, c = data["runs"]
    assert [r["space"] for r in data["runs"]] == ["nb201"] * 3
    assert a["params"] == params_a and c["params"] == count_parameters(NetworkNB201(NB201_C))
    assert b["params"] == count_parameters(NetworkNB201(NB201_B, num_classes=100))  # the record's dataset
    assert [r["skips"] for r in data["runs"]] == [{"normal": 1}, {"normal": 1}, {"normal": 2}]
    assert a["entropy"] == {"normal": pytest.approx(math.log(5) / 6)} and b["entropy"] is None
    assert a["stage_changes"] == [] and b["stage_changes"] is None
    jaccard = data["agreement"]["jaccard"]
    assert jaccard[0][1] == pytest.approx(5 / 7) and jaccard[0][2] == pytest.approx(4 / 8)
    assert jaccard[1][2] == pytest.approx(3 / 9)
    assert len(data["shared"]) == 3
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_nb201_and_darts_runs_do_not_mix(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # short paths: an error line holds at most 200 characters
    nb201 = write_nb201_run(Path("nb"), NB201_A, seed=1)
    darts = write_run(Path("darts"), GENOTYPE_A, seed=2)
    code, out, err = run_tool(nb201, darts, capsys=capsys)
    assert code == 2 and out == ""
    assert err == (f"error: cannot compare NAS-Bench-201 (nb201) runs with DARTS-space runs: {nb201} is nb201; "
                   f"{darts} is darts\n")


@pytest.mark.parametrize("case", ["no_record", "bad_json", "bad_alphas"])
def test_errors_are_one_line_exit_2(case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    if case == "no_record":
        run.mkdir()
    elif case == "bad_json":
        run.mkdir()
        (run / "genotype.json").write_text("{not json")
    else:
        write_run(run, GENOTYPE_A, alphas={"normal": [{"sep_conv_3x3": -1.0}]})
    code, out, err = run_tool(run, capsys=capsys)
    assert code == 2 and out == ""
    assert err.startswith("error: ") and err.count("\n") == 1


def test_command_line_error(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "compare_runs.py"), str(tmp_path)],
                          capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == f"error: {tmp_path} holds no genotype.json (is it a finished search's run folder?)\n"


@pytest.mark.parametrize("option, name", [
    ("--json", "genotype.json"), ("--json", "genotype.txt"), ("--json", "config.json"), ("--json", "checkpoint.pt"),
    ("--json", "search.log"), ("--plot", "alphas.png"), ("--plot", "cell_normal.svg")])
def test_outputs_never_replace_a_runs_files(option: str, name: str, real_run: Path, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)  # short paths: the whole line is checked
    run = Path("run")
    shutil.copytree(real_run, run)
    before = {path: path.read_bytes() for path in run.rglob("*") if path.is_file()}
    code, out, err = run_tool(real_run, run, option, run / name, capsys=capsys)
    assert code == 2 and out == ""  # refused before the report
    assert err == (f"error: {option} {run / name} exists and is no earlier {option} output of compare_runs; "
                   "not replaced, choose another file\n")
    assert {path: path.read_bytes() for path in run.rglob("*") if path.is_file()} == before


def test_a_rerun_replaces_its_own_earlier_outputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_a, run_b = write_run(tmp_path / "a", GENOTYPE_A), write_run(tmp_path / "b", GENOTYPE_B)
    numbers, plot = tmp_path / "cmp.json", tmp_path / "cmp.svg"
    assert run_tool(run_a, run_b, "--json", numbers, "--plot", plot, capsys=capsys)[0] == 0
    assert compare_runs.PLOT_MARK in plot.read_text() and str(run_b) in plot.read_text()
    code, _, err = run_tool(run_a, "--json", numbers, "--plot", plot, capsys=capsys)
    assert code == 0, err
    assert json.loads(numbers.read_text())["agreement"]["labels"] == [str(run_a)]
    assert str(run_b) not in plot.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "cmp.json", "cmp.svg"]  # no temporary file left


@pytest.mark.parametrize("option, name", [("--json", "cmp.json"), ("--plot", "cmp.png")])
def test_a_failed_write_keeps_the_earlier_output(option: str, name: str, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    run_a, run_b = write_run(tmp_path / "a", GENOTYPE_A), write_run(tmp_path / "b", GENOTYPE_B)
    output = tmp_path / name
    assert run_tool(run_a, option, output, capsys=capsys)[0] == 0
    earlier = output.read_bytes()
    monkeypatch.setattr(files.os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space left")))
    code, _, err = run_tool(run_a, run_b, option, output, capsys=capsys)
    assert code == 2 and err.startswith(f"error: {output}: not written (No space left)") and err.count("\n") == 1
    assert output.read_bytes() == earlier
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", name]


@pytest.mark.parametrize("args, message", [
    (["--plot", "cmp.json"], "--plot cmp.json: the file name must end in .png, .svg, .pdf"),
    (["--plot", "cmp"], "--plot cmp: the file name must end in .png, .svg, .pdf"),
    (["--plot", "new/cmp.png"], "--plot new/cmp.png: no folder new"),
    (["--json", "new/cmp.json"], "--json new/cmp.json: no folder new"),
    (["--json", "a"], "--json a exists and is no earlier --json output of compare_runs; not replaced, choose another file"),
    (["--json", "cmp.png", "--plot", "./cmp.png"], "--json and --plot name the same file cmp.png"),
], ids=["plot-json", "plot-no-suffix", "plot-no-folder", "json-no-folder", "json-a-folder", "same-file"])
def test_outputs_that_cannot_be_written_are_refused_before_the_report(
        args: list[str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    write_run(Path("a"), GENOTYPE_A)
    code, out, err = run_tool("a", *args, capsys=capsys)
    assert code == 2 and out == "" and err == f"error: {message}\n"
    assert [p.name for p in tmp_path.iterdir()] == ["a"]


NESTED = "[" * 100_000  # json.loads raises RecursionError on it


@pytest.mark.parametrize("fields, message", [
    pytest.param({"alphas": {"normal": [{"a": "x"}] * 14, "reduce": ALPHAS["reduce"]}},
                 "alphas.normal[0]: expected {op: weight} of numbers >= 0 with a positive sum, got {'a': 'x'}", id="text"),
    pytest.param({"alphas": {**ALPHAS, "reduce": [*ALPHAS["reduce"][:3], {"a": 1e308, "b": 1e308}]}},
                 "alphas.reduce[3]: expected {op: weight} of numbers >= 0 with a positive sum, "
                 "got {'a': 1e+308, 'b': 1e+308}", id="sum-overflows"),
    pytest.param({"alphas": {**ALPHAS, "normal": [[0.5, 0.5]]}},
                 "alphas.normal[0]: expected {op: weight} of numbers >= 0 with a positive sum, got [0.5, 0.5]",
                 id="not-a-table"),
    pytest.param({"stage_genotypes": [1, 2]}, "stage_genotypes[0]: expected a genotype string, got 1", id="stage-int"),
    pytest.param({"stage_genotypes": [GENOTYPE_B.to_string(), "Genotype(normal=[])"]},
                 "stage_genotypes[1]: genotype string lacks field(s): normal_concat, reduce, reduce_concat",
                 id="stage-unparsable"),
    pytest.param({"stage_genotypes": "Genotype()"},
                 "'stage_genotypes' must be a list of genotype strings, got 'Genotype()'", id="stages-string"),
    pytest.param({"algorithm": 5}, "'algorithm' must be a string, got 5", id="algorithm"),
    pytest.param({"seed": True}, "'seed' must be an integer, got True", id="seed"),
    pytest.param({"dataset": ["cifar10"]}, "'dataset' must be a string, got ['cifar10']", id="dataset"),
    pytest.param({"space": 5}, "'space' must be a string, got 5", id="space"),
    pytest.param('{"version": 1, "normal": ' + NESTED, "not a genotype record (JSON nested too deeply)", id="nested-json"),
    pytest.param(NESTED, "malformed genotype string (syntax error at column 201): " + "[" * 77 + "...",
                 id="nested-text"),
])
def test_corrupt_record_fields_are_one_line_naming_file_and_field(
        fields: dict[str, Any] | str, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    if isinstance(fields, str):  # the file's whole text
        Path("a").mkdir()
        Path("a/genotype.json").write_text(fields)
    else:
        write_run(Path("a"), GENOTYPE_A, **fields)
    code, out, err = run_tool("a", capsys=capsys)
    assert code == 2 and out == "" and err == f"error: {Path('a/genotype.json')}: {message}\n"
