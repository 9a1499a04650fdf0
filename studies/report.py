"""What a study shows: the status of its cells, the pivot of headline metrics with ranks, and the proxy plot.

Pivot: one row per genotype and baseline, one column per task's headline metric (ReID: rank-1 and mAP on the
target), each value with its rank in the column (1 = best; ties share the better rank) and the mean rank over
the columns a row has. Plot: the proxy accuracy (CIFAR-10 top-1, else CIFAR-100's, else the search's own
validation accuracy) against each target metric, one point per genotype (baselines were not searched on the
proxy), with Kendall's tau (scipy) where three or more genotypes have both numbers.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from .cells import BLOCKED, FAILED, PENDING, QUEUED, RUNNING, read_status
from .errors import StudyError
from .launch import slurm_job_gone
from .results import SEARCH_METRIC, SEARCH_TASK
from .tasks import REID, parse_tasks

Column = tuple[str, str]  # (task, metric)


def headline_columns(study: dict[str, Any]) -> list[Column]:
    return [(task.name, metric) for task in parse_tasks(",".join(study["tasks"])) for metric in task.headline]


def _values(lines: list[dict[str, Any]], study: dict[str, Any]) -> dict[tuple[str, Column], tuple[float, bool]]:
    """(row, (task, metric)) -> (value, higher is better); ReID columns read the task's target dataset."""
    targets = {task.name: task.target for task in parse_tasks(",".join(study["tasks"])) if task.tool == REID}
    found = {}
    for line in lines:
        if line["task"] in targets and line["dataset"] != targets[line["task"]]:
            continue
        found[(line["genotype"], (line["task"], line["metric"]))] = (line["value"], line["higher_is_better"])
    return found


def pivot(lines: list[dict[str, Any]], study: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The header and rows of the pivot table (values with ranks, and the mean rank)."""
    from scipy.stats import rankdata

    columns, rows = headline_columns(study), [row["name"] for row in study["rows"]]
    values = _values(lines, study)
    ranks: dict[tuple[str, Column], int] = {}
    for column in columns:
        have = [(row, values[(row, column)]) for row in rows if (row, column) in values]
        scores = [-v if higher else v for _, (v, higher) in have]
        ranks.update({(row, column): int(r) for (row, _), r in zip(have, rankdata(scores, method="min"))})
    table = []
    for row in rows:
        cells = [f"{values[(row, c)][0]:.2f} ({ranks[(row, c)]})" if (row, c) in values else "-" for c in columns]
        mine = [ranks[(row, c)] for c in columns if (row, c) in ranks]
        table.append([row, *cells, f"{sum(mine) / len(mine):.2f}" if mine else "-"])
    return ["genotype", *(f"{task} {metric}" for task, metric in columns), "mean rank"], table


def render(header: list[str], rows: list[list[str]], markdown: bool) -> str:
    """A Markdown table, or the same columns aligned as plain text."""
    if markdown:
        lines = [header, ["---"] * len(header), *rows]
        return "\n".join("| " + " | ".join(line) + " |" for line in lines)
    widths = [max(len(line[i]) for line in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in [header, *rows])


def plot(lines: list[dict[str, Any]], study: dict[str, Any], path: Path) -> dict[Column, float]:
    """Proxy accuracy against each target metric, one point per genotype; Kendall's tau per target where >= 3
    genotypes have both numbers (returned too)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy.stats import kendalltau

    values = _values(lines, study)
    genotypes = [row["name"] for row in study["rows"] if row["kind"] == "genotype"]
    candidates = [("cifar10", "top1"), ("cifar100", "top1"), (SEARCH_TASK, SEARCH_METRIC)]
    proxy = next((c for c in candidates if any((g, c) in values for g in genotypes)), None)
    targets = [c for c in headline_columns(study) if c != proxy and c[0] not in ("cifar10", "cifar100")]
    if proxy is None or not targets:
        raise StudyError("--plot needs a proxy (cifar10, cifar100 or a search run's accuracy) and a target task "
                         "(imagenet, coco-*, a ReID task) with results for the genotypes")
    taus: dict[Column, float] = {}
    fig, axes = plt.subplots(1, len(targets), figsize=(4.2 * len(targets), 3.8), squeeze=False)
    for ax, target in zip(axes[0], targets):
        points = [(g, values[(g, proxy)][0], values[(g, target)][0]) for g in genotypes
                  if (g, proxy) in values and (g, target) in values]
        ax.scatter([x for _, x, _ in points], [y for _, _, y in points])
        for name, x, y in points:
            ax.annotate(name, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
        title = f"{target[0]} {target[1]}"
        if len(points) >= 3:
            tau, p = kendalltau([x for _, x, _ in points], [y for _, _, y in points])
            if math.isnan(tau):  # one of the two is constant
                title += f"\nKendall's tau undefined (n {len(points)}, a constant)"
            else:
                taus[target] = float(tau)
                title += f"\nKendall's tau {tau:.2f} (p {p:.2f}, n {len(points)})"
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(f"proxy: {proxy[0]} {proxy[1]}")
        ax.set_ylabel(target[1])
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return taus


def status_lines(out: Path, study: dict[str, Any], driven: bool) -> list[str]:
    """One line per cell: its state, attempts, times and the reason of a failure; then the count per state.

    Shown as ``interrupted``: a ``running`` local cell while no runner drives the study; as ``gone``: a queued or
    running cell whose Slurm job is no more; as ``blocked``: a pending or queued cell whose ImageNet cell failed
    (Slurm cancels such a job)."""
    header = ["cell", "state", "attempts", "start", "end", "reason"]
    rows, counts = [], {}
    for cell in study["cells"]:
        s = read_status(out / cell["folder"])
        state, reason = s.get("state", PENDING), s.get("error") or ""
        if state == RUNNING and not driven and not s.get("job_id"):
            state = "interrupted"
        if slurm_job_gone(out, s):
            state, reason = "gone", f"its Slurm job {s['job_id']} is gone: run the study again (the tool resumes)"
        dependency = read_status(out / cell["depends_on"]) if cell["depends_on"] else {}
        if state in (PENDING, QUEUED) and dependency.get("state") in (FAILED, BLOCKED):
            state, reason = BLOCKED, f"waits for {cell['depends_on']}, which is {dependency['state']}"
        counts[state] = counts.get(state, 0) + 1
        rows.append([cell["folder"], state, str(s.get("attempts", 0)), s.get("start") or "-", s.get("end") or "-",
                     reason[:160]])
    summary = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
    lines = render(header, rows, markdown=False).splitlines()
    return [*lines, "", f"{len(rows)} cells: {summary}" + ("; a runner is driving the study now" if driven else "")]
