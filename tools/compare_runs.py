#!/usr/bin/env python
"""Compare several searches (seeds or algorithms) to decide which genotype to train.

For each RUN_DIR (a search's run folder, or its genotype.json) one table row reports:
  params     parameters of the CIFAR-10 evaluation network (36 channels, 20 cells, auxiliary head
             excluded), in millions
  skips      skip_connect count in the normal / reduce cell
  entropy    FINAL alpha entropy per cell, normal / reduce: mean over the 14 edges of the entropy (nats)
             of each edge's op weights. genotype.json keeps only the last stage's alphas, so earlier
             stages' entropies cannot be reported
  changes    per-stage genotype changes: for each stage after the first, how many (cell, node, input,
             op) choices are new compared with the stage before (from stage_genotypes; '-' if absent)
  agreement  mean Jaccard index of this run's (cell, node, input, op) choice set with every other run's

NAS-Bench-201 runs (searched with --space nb201) are compared among themselves; their cell is one cell
type with 6 edges, so the columns become:
  params     parameters of the NAS-Bench-201 network (16 channels, 5 cells per stage) with the classes
             of the record's dataset (cifar100: 100; otherwise 10), in millions
  skips      skip_connect count in the cell
  entropy    FINAL alpha entropy: mean over the 6 edges of the entropy (nats) of each edge's op weights
  changes    as above ('-' for the usual one-stage nb201 search)
  agreement  mean Jaccard index of the (node, input, op) choice sets, node 1..3 and input node 0..2 as in
             the arch string; every edge is a choice, 'none' edges included
Runs of the NAS-Bench-201 space and of the DARTS spaces cannot be mixed in one comparison.

Below the table: each run's genotype, the choices all runs share (per cell), and the Jaccard matrix.

--json and --plot never replace a file they did not write: an existing file there is refused (a run's
genotype.json, config.json, checkpoint.pt or cell picture, say) unless it is an earlier --json output
(a JSON object of runs, agreement, shared and choice_counts) or an earlier --plot (its metadata title
reads "pdarts-wild tools/compare_runs.py"). Both are checked before anything is computed and written
to a temporary file that is then renamed, so a failed write leaves any earlier file intact.

Examples:
  tools/compare_runs.py runs/seed1 runs/seed2 runs/seed3
  tools/compare_runs.py runs/* --markdown --plot compare.png --json compare.json
  tools/compare_runs.py runs/nb201-seed1 runs/nb201-seed2
"""
from __future__ import annotations

import argparse
import io
import itertools
import json
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from pdarts_wild.cli import ToolParser
from pdarts_wild.data import DATASETS, dataset_info
from pdarts_wild.files import atomic_write
from pdarts_wild.genotype import Genotype, GenotypeError, read_genotype_file
from pdarts_wild.messages import one_line
from pdarts_wild.nb201 import NB201_NODES, NB201Arch, NetworkNB201
from pdarts_wild.networks import NetworkCIFAR, count_parameters
from pdarts_wild.search import run_tool
from pdarts_wild.spaces import CELL_TYPES, SPACES

RECORD = "genotype.json"
Arch = Genotype | NB201Arch  # a DARTS-family genotype (two cell types) or a NAS-Bench-201 cell (one)
Choice = tuple[str, int, int, str]  # (cell, node, input state, op)
(NB201_CELL,) = SPACES["nb201"].cell_types  # the cell type the nb201 alphas are stored under
NETWORKS = {"darts": "CIFAR-10 36ch 20 cells", "nb201": "NAS-Bench-201 16ch 5 cells/stage"}  # plot titles
JSON_KEYS = {"runs", "agreement", "shared", "choice_counts"}  # what --json writes: marks a file a rerun may replace
PLOT_MARK = "pdarts-wild tools/compare_runs.py"  # the --plot metadata title: marks a file a rerun may replace
PLOT_FORMATS = (".png", ".svg", ".pdf")
MAX_OUTPUT_BYTES = 1 << 24  # a larger file is no output of ours (a plot is ~100 kB): not even read


class CompareError(ValueError):
    """A run folder or record that cannot be compared; the message names the problem."""


@dataclass
class RunSummary:
    """The numbers reported for one run."""

    label: str
    space: str  # the record's search space ("darts" for records that name none)
    algorithm: str | None
    dataset: str | None
    seed: int | None
    genotype: str
    params: int
    skips: dict[str, int]
    entropy: dict[str, float] | None
    stage_changes: list[int] | None


# ------------------------------------------------------------------------------------------ numbers


def cell_choices(arch: Arch) -> dict[str, list[tuple[int, int, str]]]:
    """The (node, input, op) choices per cell type ``arch`` has. DARTS cells: node 0..3, input state 0 = c_{k-2},
    1 = c_{k-1}, 2.. = nodes. The NAS-Bench-201 cell: node 1..3 and input node 0..2 as in the arch string,
    every edge ('none' included)."""
    if isinstance(arch, NB201Arch):
        nodes = [node for node in range(1, NB201_NODES) for _ in range(node)]
        return {NB201_CELL: [(node, j, op) for node, (op, j) in zip(nodes, arch.edges)]}
    return {cell: [(k // 2, j, op) for k, (op, j) in enumerate(getattr(arch, cell))] for cell in CELL_TYPES}


def choices(arch: Arch) -> set[Choice]:
    """The (cell, node, input, op) choices of every cell type of ``arch``."""
    return {(cell, node, j, op) for cell, picks in cell_choices(arch).items() for node, j, op in picks}


def eval_params(arch: Arch, dataset: str | None) -> int:
    """Parameters of the network ``arch`` is evaluated in, built on meta: ``NetworkCIFAR`` (36 channels, 20 cells,
    no auxiliary head, 10 classes) for a DARTS genotype, ``NetworkNB201`` with ``dataset``'s classes (10 when
    unknown) for a NAS-Bench-201 cell."""
    with torch.device("meta"):
        if isinstance(arch, NB201Arch):
            classes = dataset_info(dataset).num_classes if dataset in DATASETS else 10
            return count_parameters(NetworkNB201(arch, num_classes=classes))
        return count_parameters(NetworkCIFAR(arch))


def skip_counts(arch: Arch) -> dict[str, int]:
    """Number of ``skip_connect`` choices per cell type."""
    return {cell: sum(op == "skip_connect" for _, _, op in picks) for cell, picks in cell_choices(arch).items()}


def edge_entropy(weights: Any, edge: str) -> float:
    """Entropy (nats) of one edge's op weights, normalised to sum to one; a CompareError naming ``edge`` unless they
    are an {op: weight} table of finite numbers >= 0 with a finite positive sum (a corrupt record's could be anything)."""
    table = weights if isinstance(weights, dict) else {}
    values = [float(w) for w in table.values() if type(w) in (int, float) and 0 <= w <= sys.float_info.max]
    total = sum(values)
    if not values or len(values) < len(table) or not 0 < total <= sys.float_info.max:
        raise CompareError(f"{edge}: expected {{op: weight}} of numbers >= 0 with a positive sum, "
                           f"got {one_line(repr(weights), 60)}")
    shares = [w / total for w in values]
    return -sum(p * math.log(p) for p in shares if p > 0)


def alpha_entropy(alphas: Any, cells: Sequence[str]) -> dict[str, float]:
    """Mean over edges of each edge's op-weight entropy, for each of the cell types ``cells``."""
    if not (isinstance(alphas, dict) and all(isinstance(alphas.get(cell), list) and alphas[cell] for cell in cells)):
        raise CompareError(f"'alphas' must map {' and '.join(cells)} to lists of {{op: weight}} tables")
    return {cell: sum(edge_entropy(weights, f"alphas.{cell}[{k}]") for k, weights in enumerate(alphas[cell]))
            / len(alphas[cell]) for cell in cells}


def stage_changes(stage_genotypes: list[Any], arch_type: type[Arch]) -> list[int]:
    """For each stage after the first, how many choices are new compared with the previous stage; the stages'
    strings are parsed as ``arch_type`` (the run's final architecture's class)."""
    stages = []
    for k, text in enumerate(stage_genotypes):
        if not isinstance(text, str):
            raise CompareError(f"stage_genotypes[{k}]: expected a genotype string, got {one_line(repr(text), 60)}")
        try:
            stages.append(choices(arch_type.from_string(text)))
        except GenotypeError as e:
            raise CompareError(f"stage_genotypes[{k}]: {e}") from None
    return [len(new - old) for old, new in zip(stages, stages[1:])]


def jaccard(a: set[Choice], b: set[Choice]) -> float:
    """|a & b| / |a | b| (1.0 for two empty sets)."""
    union = a | b
    return len(a & b) / len(union) if union else 1.0


def agreement_matrix(sets: Sequence[set[Choice]]) -> list[list[float]]:
    """Pairwise Jaccard indices of the runs' choice sets."""
    return [[jaccard(a, b) for b in sets] for a in sets]


def shared_choices(sets: Sequence[set[Choice]]) -> list[Choice]:
    """Choices present in every run, sorted by cell (normal first), node, input."""
    return sorted(set.intersection(*sets), key=lambda c: (CELL_TYPES.index(c[0]), c[1], c[2], c[3]))


def choice_counts(sets: Sequence[set[Choice]]) -> dict[Choice, int]:
    """In how many runs each choice appears."""
    counts: dict[Choice, int] = {}
    for s in sets:
        for c in s:
            counts[c] = counts.get(c, 0) + 1
    return counts


# ------------------------------------------------------------------------------------------ reading


def record_path(run: Path) -> Path:
    """``run/genotype.json``, or ``run`` itself when it is a file."""
    path = run if run.is_file() else run / RECORD
    if not path.is_file():
        raise CompareError(f"{run} holds no {RECORD} (is it a finished search's run folder?)")
    return path


def read_arch(path: Path) -> tuple[Arch, dict[str, Any]]:
    """The architecture and whole record of ``path``: an ``NB201Arch`` for a record of space nb201, else the
    DARTS-family genotype of a genotype.json or of a text file holding a Genotype string (record ``{}``)."""
    try:
        record = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        record = None  # read_genotype_file says what is wrong
    if not isinstance(record, dict) or record.get("space") != "nb201":
        return read_genotype_file(path)
    try:
        return NB201Arch.from_string(str(record.get("genotype", ""))), record
    except GenotypeError as e:
        raise GenotypeError(f"{path}: {e}") from None


def record_field(record: Mapping[str, Any], name: str, kind: type, what: str, default: Any = None) -> Any:
    """``record[name]`` (``default`` when absent or null); a CompareError naming the field when it is no ``kind``
    (a hand-edited or corrupt record's 5 or [..] would crash the report)."""
    value = record.get(name)
    if value is None:
        return default
    if not isinstance(value, kind) or isinstance(value, bool):
        raise CompareError(f"'{name}' must be {what}, got {one_line(repr(value), 60)}")
    return value


def summarize(run: Path) -> tuple[RunSummary, set[Choice]]:
    """Read one run and compute its numbers and choice set."""
    path = record_path(run)
    arch, record = read_arch(path)
    try:
        space = record_field(record, "space", str, "a string", "darts")
        algorithm, dataset = (record_field(record, name, str, "a string") for name in ("algorithm", "dataset"))
        seed = record_field(record, "seed", int, "an integer")
        entropy = alpha_entropy(record["alphas"], list(cell_choices(arch))) if "alphas" in record else None
        stages = record_field(record, "stage_genotypes", list, "a list of genotype strings")
        changes = stage_changes(stages, type(arch)) if stages else None
    except CompareError as e:
        raise CompareError(f"{path}: {e}") from None
    summary = RunSummary(str(run), space, algorithm, dataset, seed, arch.to_string(), eval_params(arch, dataset),
                         skip_counts(arch), entropy, changes)
    return summary, choices(arch)


def check_one_space_family(runs: Sequence[RunSummary]) -> None:
    """``CompareError`` naming each run's space unless all runs are nb201 runs or none is."""
    nb201 = sum(run.space == "nb201" for run in runs)
    if 0 < nb201 < len(runs):
        spaces = "; ".join(f"{run.label} is {run.space}" for run in runs)
        raise CompareError(f"cannot compare NAS-Bench-201 (nb201) runs with DARTS-space runs: {spaces}")


# ------------------------------------------------------------------------------------------ output


def cell_types(runs: Sequence[RunSummary]) -> list[str]:
    """The cell types the runs have (all runs have the same ones: see :func:`check_one_space_family`)."""
    return list(runs[0].skips)


def table_rows(runs: Sequence[RunSummary], agreement: Sequence[Sequence[float]]) -> list[list[str]]:
    """The header and one row of text cells per run; per-cell columns show each cell type, e.g. "skips N/R"."""
    cells = cell_types(runs)
    per_cell = "" if len(cells) == 1 else " " + "/".join(cell[0].upper() for cell in cells)
    rows = [["run", "algorithm", "seed", "params (M)", f"skips{per_cell}", f"entropy{per_cell}", "changes",
             "agreement"]]
    for i, run in enumerate(runs):
        others = [a for j, a in enumerate(agreement[i]) if j != i]
        rows.append([
            run.label, run.algorithm or "-", "-" if run.seed is None else str(run.seed), f"{run.params / 1e6:.3f}",
            "/".join(str(run.skips[cell]) for cell in cells),
            "-" if run.entropy is None else "/".join(f"{run.entropy[cell]:.3f}" for cell in cells),
            " ".join(map(str, run.stage_changes)) if run.stage_changes else "-",
            f"{sum(others) / len(others):.2f}" if others else "-",
        ])
    return rows


def format_table(rows: Sequence[Sequence[str]], markdown: bool) -> str:
    """Rows as a padded plain-text table or a Markdown table."""
    if markdown:
        lines = ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join([lines[0], "|" + "---|" * len(rows[0]), *lines[1:]])
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows)


def report(runs: Sequence[RunSummary], shared: Sequence[Choice], agreement: Sequence[Sequence[float]],
           markdown: bool) -> str:
    """The whole text report: table, genotypes, shared choices, agreement matrix."""
    item = "- " if markdown else "  "
    head = "### " if markdown else ""
    parts = [format_table(table_rows(runs, agreement), markdown), "", f"{head}Genotypes"]
    parts += [f"{item}{r.label}: {'`' + r.genotype + '`' if markdown else r.genotype}" for r in runs]
    parts += ["", f"{head}Choices shared by all {len(runs)} runs (node, input, op)"]
    cells = cell_types(runs)
    for cell in cells:
        picked = [f"({n}, {j}, {op})" for c, n, j, op in shared if c == cell]
        parts.append(f"{item}{cell}: {', '.join(picked) or 'none'}")
    parts += ["", f"{head}Agreement (Jaccard of ({'cell, ' if len(cells) > 1 else ''}node, input, op) sets)"]
    names = [str(i + 1) for i in range(len(runs))]
    matrix = [["", *names]] + [[names[i], *(f"{a:.2f}" for a in row)] for i, row in enumerate(agreement)]
    parts.append(format_table(matrix, markdown))
    parts += [f"{item}{n}: {r.label}" for n, r in zip(names, runs)]
    return "\n".join(parts)


def write_json(path: Path, runs: Sequence[RunSummary], sets: Sequence[set[Choice]],
               agreement: Sequence[Sequence[float]]) -> None:
    """All numbers as JSON."""
    counts = choice_counts(sets)
    data: dict[str, Any] = {
        "runs": [asdict(r) for r in runs],
        "agreement": {"labels": [r.label for r in runs], "jaccard": agreement},
        "shared": [list(c) for c in shared_choices(sets)],
        "choice_counts": [{"cell": c[0], "node": c[1], "input": c[2], "op": c[3], "runs": n}
                          for c, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))],
    }
    atomic_write(path, json.dumps(data, indent=2) + "\n")


def write_plot(path: Path, runs: Sequence[RunSummary], agreement: Sequence[Sequence[float]]) -> None:
    """Bar charts of params, skips and entropy per run, and the agreement heatmap, in one image."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    names = [str(i + 1) for i in range(len(runs))]
    x = list(range(len(runs)))
    cells = cell_types(runs)
    width = 0.8 / len(cells)
    network = NETWORKS["nb201" if runs[0].space == "nb201" else "darts"]
    fig = Figure(figsize=(11, 8), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots(2, 2)
    ax[0, 0].bar(x, [r.params / 1e6 for r in runs], color="#1f77b4")
    ax[0, 0].set(title=f"parameters (M), {network}", xticks=x, xticklabels=names)
    for k, cell in enumerate(cells):
        shifted = [i + (k - (len(cells) - 1) / 2) * width for i in x]
        ax[0, 1].bar(shifted, [r.skips[cell] for r in runs], width=width, label=cell)
        ax[1, 0].bar(shifted, [r.entropy[cell] if r.entropy else 0.0 for r in runs], width=width, label=cell)
    ax[0, 1].set(title="skip_connect per cell" if len(cells) > 1 else "skip_connect", xticks=x, xticklabels=names)
    ax[0, 1].yaxis.set_major_locator(MaxNLocator(integer=True))
    ax[1, 0].set(title="final alpha entropy (nats, mean over edges)", xticks=x, xticklabels=names)
    if len(cells) > 1:
        ax[0, 1].legend()
        ax[1, 0].legend()
    image = ax[1, 1].imshow(agreement, vmin=0.0, vmax=1.0, cmap="viridis")
    ax[1, 1].set(title="agreement (Jaccard)", xticks=x, xticklabels=names, yticks=x, yticklabels=names)
    for i, j in itertools.product(x, x):
        colour = "white" if agreement[i][j] < 0.6 else "black"
        ax[1, 1].text(j, i, f"{agreement[i][j]:.2f}", ha="center", va="center", color=colour)
    fig.colorbar(image, ax=ax[1, 1])
    fig.suptitle("runs: " + ", ".join(f"{n} = {r.label}" for n, r in zip(names, runs)), fontsize=9)
    image_file = io.BytesIO()
    fig.savefig(image_file, format=path.suffix[1:].lower(), dpi=120, metadata={"Title": PLOT_MARK})
    atomic_write(path, image_file.getvalue())


def earlier_output(path: Path, option: str) -> bool:
    """Whether the regular file ``path`` holds what ``option`` (--json or --plot) writes, so a rerun may replace it."""
    if path.stat().st_size > MAX_OUTPUT_BYTES:
        return False
    data = path.read_bytes()
    if option == "--plot":
        return PLOT_MARK.encode() in data
    try:
        record = json.loads(data)
    except (ValueError, RecursionError):
        return False
    return isinstance(record, dict) and set(record) == JSON_KEYS


def check_output(path: Path | None, option: str) -> None:
    """A CompareError, before anything is computed, for an output ``option`` cannot write (a plot format matplotlib
    does not know, no such folder), or that would replace a file it did not write (a run's genotype.json, say: the
    search result would be lost for good)."""
    if path is None:
        return
    if option == "--plot" and path.suffix.lower() not in PLOT_FORMATS:
        raise CompareError(f"--plot {path}: the file name must end in {', '.join(PLOT_FORMATS)}")
    if not path.parent.is_dir():
        raise CompareError(f"{option} {path}: no folder {path.parent}")
    if path.exists() and not (path.is_file() and earlier_output(path, option)):
        raise CompareError(f"{option} {path} exists and is no earlier {option} output of compare_runs; "
                           "not replaced, choose another file")


# ------------------------------------------------------------------------------------------ command line


def build_parser() -> argparse.ArgumentParser:
    p = ToolParser(prog="tools/compare_runs.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR", help="search run folders (or genotype.json files)")
    p.add_argument("--plot", type=Path, metavar="FILE.png",
                   help="write bar charts and the agreement heatmap here, as .png, .svg or .pdf (new file or an "
                        "earlier --plot; its folder must exist)")
    p.add_argument("--json", type=Path, metavar="FILE",
                   help="write all numbers as JSON here (new file or an earlier --json; its folder must exist)")
    p.add_argument("--markdown", action="store_true", help="print Markdown tables instead of plain text")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def compare() -> None:
        check_output(args.json, "--json")
        check_output(args.plot, "--plot")
        if args.json and args.plot and args.json.resolve() == args.plot.resolve():
            raise CompareError(f"--json and --plot name the same file {args.json}")
        summaries = [summarize(run) for run in args.runs]
        runs = [s for s, _ in summaries]
        check_one_space_family(runs)
        sets = [c for _, c in summaries]
        agreement = agreement_matrix(sets)
        print(report(runs, shared_choices(sets), agreement, args.markdown))
        if args.json:
            write_json(args.json, runs, sets, agreement)
        if args.plot:
            write_plot(args.plot, runs, agreement)

    return run_tool(compare, (CompareError, GenotypeError, OSError), lambda: "nothing was written")


if __name__ == "__main__":
    sys.exit(main())
