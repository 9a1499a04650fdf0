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

Below the table: each run's genotype, the choices all runs share (per cell), and the Jaccard matrix.

Examples:
  tools/compare_runs.py runs/seed1 runs/seed2 runs/seed3
  tools/compare_runs.py runs/* --markdown --plot compare.png --json compare.json
"""
from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from pdarts_wild.genotype import Genotype, GenotypeError, read_genotype_file
from pdarts_wild.networks import NetworkCIFAR, count_parameters
from pdarts_wild.search import run_tool
from pdarts_wild.spaces import CELL_TYPES

RECORD = "genotype.json"
Choice = tuple[str, int, int, str]  # (cell, node, input state, op)


class CompareError(ValueError):
    """A run folder or record that cannot be compared; the message names the problem."""


@dataclass
class RunSummary:
    """The numbers reported for one run."""

    label: str
    algorithm: str | None
    dataset: str | None
    seed: int | None
    genotype: str
    params: int
    skips: dict[str, int]
    entropy: dict[str, float] | None
    stage_changes: list[int] | None


# ------------------------------------------------------------------------------------------ numbers


def choices(genotype: Genotype) -> set[Choice]:
    """The (cell, node, input, op) choices of both cells of ``genotype``."""
    return {(cell, k // 2, j, op) for cell in CELL_TYPES for k, (op, j) in enumerate(getattr(genotype, cell))}


def cifar_params(genotype: Genotype) -> int:
    """Parameters of ``NetworkCIFAR(genotype)`` (36 channels, 20 cells, no auxiliary head), built on meta."""
    with torch.device("meta"):
        return count_parameters(NetworkCIFAR(genotype))


def skip_counts(genotype: Genotype) -> dict[str, int]:
    """Number of ``skip_connect`` pairs per cell type."""
    return {cell: sum(op == "skip_connect" for op, _ in getattr(genotype, cell)) for cell in CELL_TYPES}


def edge_entropy(weights: Mapping[str, float]) -> float:
    """Entropy (nats) of one edge's op weights, normalised to sum to one."""
    values = [float(w) for w in weights.values()]
    total = sum(values)
    if not values or total <= 0 or any(w < 0 or not math.isfinite(w) for w in values):
        raise CompareError(f"op weights must be non-negative with a positive sum, got {dict(weights)}")
    return -sum(w / total * math.log(w / total) for w in values if w > 0)


def alpha_entropy(alphas: Mapping[str, Sequence[Mapping[str, float]]]) -> dict[str, float]:
    """Mean over edges of each edge's op-weight entropy, per cell type."""
    try:
        return {cell: sum(map(edge_entropy, alphas[cell])) / len(alphas[cell]) for cell in CELL_TYPES}
    except (KeyError, TypeError, AttributeError, ZeroDivisionError):
        raise CompareError(f"'alphas' must map {' and '.join(CELL_TYPES)} to lists of {{op: weight}} tables") from None


def stage_changes(stage_genotypes: Sequence[str]) -> list[int]:
    """For each stage after the first, how many choices are new compared with the previous stage."""
    stages = [choices(Genotype.from_string(text)) for text in stage_genotypes]
    return [len(new - old) for old, new in zip(stages, stages[1:])]


def jaccard(a: set[Choice], b: set[Choice]) -> float:
    """|a & b| / |a | b| (1.0 for two empty sets)."""
    union = a | b
    return len(a & b) / len(union) if union else 1.0


def agreement_matrix(sets: Sequence[set[Choice]]) -> list[list[float]]:
    """Pairwise Jaccard indices of the runs' choice sets."""
    return [[jaccard(a, b) for b in sets] for a in sets]


def shared_choices(sets: Sequence[set[Choice]]) -> list[Choice]:
    """Choices present in every run, sorted by cell, node, input."""
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


def summarize(run: Path) -> tuple[RunSummary, set[Choice]]:
    """Read one run and compute its numbers and choice set."""
    path = record_path(run)
    genotype, record = read_genotype_file(path)
    try:
        entropy = alpha_entropy(record["alphas"]) if "alphas" in record else None
        stages = record.get("stage_genotypes")
        changes = stage_changes(stages) if stages else None
    except (CompareError, GenotypeError) as e:
        raise CompareError(f"{path}: {e}") from None
    summary = RunSummary(str(run), record.get("algorithm"), record.get("dataset"), record.get("seed"),
                         genotype.to_string(), cifar_params(genotype), skip_counts(genotype), entropy, changes)
    return summary, choices(genotype)


# ------------------------------------------------------------------------------------------ output


def table_rows(runs: Sequence[RunSummary], agreement: Sequence[Sequence[float]]) -> list[list[str]]:
    """The header and one row of text cells per run."""
    rows = [["run", "algorithm", "seed", "params (M)", "skips N/R", "entropy N/R", "changes", "agreement"]]
    for i, run in enumerate(runs):
        others = [a for j, a in enumerate(agreement[i]) if j != i]
        rows.append([
            run.label, run.algorithm or "-", "-" if run.seed is None else str(run.seed), f"{run.params / 1e6:.3f}",
            f"{run.skips['normal']}/{run.skips['reduce']}",
            "-" if run.entropy is None else f"{run.entropy['normal']:.3f}/{run.entropy['reduce']:.3f}",
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
    for cell in CELL_TYPES:
        picked = [f"({n}, {j}, {op})" for c, n, j, op in shared if c == cell]
        parts.append(f"{item}{cell}: {', '.join(picked) or 'none'}")
    parts += ["", f"{head}Agreement (Jaccard of (cell, node, input, op) sets)"]
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
    path.write_text(json.dumps(data, indent=2) + "\n")


def write_plot(path: Path, runs: Sequence[RunSummary], agreement: Sequence[Sequence[float]]) -> None:
    """Bar charts of params, skips and entropy per run, and the agreement heatmap, in one image."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    names = [str(i + 1) for i in range(len(runs))]
    x = list(range(len(runs)))
    fig = Figure(figsize=(11, 8), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots(2, 2)
    ax[0, 0].bar(x, [r.params / 1e6 for r in runs], color="#1f77b4")
    ax[0, 0].set(title="parameters (M), CIFAR-10 36ch 20 cells", xticks=x, xticklabels=names)
    for k, cell in enumerate(CELL_TYPES):
        shifted = [i + (k - 0.5) * 0.4 for i in x]
        ax[0, 1].bar(shifted, [r.skips[cell] for r in runs], width=0.4, label=cell)
        ax[1, 0].bar(shifted, [r.entropy[cell] if r.entropy else 0.0 for r in runs], width=0.4, label=cell)
    ax[0, 1].set(title="skip_connect per cell", xticks=x, xticklabels=names)
    ax[0, 1].yaxis.set_major_locator(MaxNLocator(integer=True))
    ax[1, 0].set(title="final alpha entropy (nats, mean over edges)", xticks=x, xticklabels=names)
    ax[0, 1].legend()
    ax[1, 0].legend()
    image = ax[1, 1].imshow(agreement, vmin=0.0, vmax=1.0, cmap="viridis")
    ax[1, 1].set(title="agreement (Jaccard)", xticks=x, xticklabels=names, yticks=x, yticklabels=names)
    for i, j in itertools.product(x, x):
        colour = "white" if agreement[i][j] < 0.6 else "black"
        ax[1, 1].text(j, i, f"{agreement[i][j]:.2f}", ha="center", va="center", color=colour)
    fig.colorbar(image, ax=ax[1, 1])
    fig.suptitle("runs: " + ", ".join(f"{n} = {r.label}" for n, r in zip(names, runs)), fontsize=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


# ------------------------------------------------------------------------------------------ command line


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tools/compare_runs.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR", help="search run folders (or genotype.json files)")
    p.add_argument("--plot", type=Path, metavar="FILE.png", help="write bar charts and the agreement heatmap here")
    p.add_argument("--json", type=Path, metavar="FILE", help="write all numbers as JSON here")
    p.add_argument("--markdown", action="store_true", help="print Markdown tables instead of plain text")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def compare() -> None:
        summaries = [summarize(run) for run in args.runs]
        runs = [s for s, _ in summaries]
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
