"""The study's numbers in long format, read only from the finished cells' ``metrics.json`` and the search runs'
``genotype.json``: ``results.csv`` and ``results.json`` (a baseline's name stands in the genotype column)."""
from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any

from .cells import FINISHED, METRICS, metrics_problem, read_status
from .errors import StudyError

COLUMNS = ("genotype", "task", "dataset", "metric", "value", "higher_is_better", "params", "macs", "epochs", "iters",
           "input_size", "source_file")
SEARCH_TASK = "search"      # the task column of a search run's own validation accuracy
SEARCH_METRIC = "valid_acc"


def collect(out: Path, study: dict[str, Any]) -> list[dict[str, Any]]:
    """One line per (row, task, dataset, metric) of every finished cell, then the searches' own accuracies."""
    lines = []
    for cell in study["cells"]:
        folder = out / cell["folder"]
        if read_status(folder).get("state") != FINISHED:
            continue
        problem = metrics_problem(folder / METRICS)
        if problem:
            raise StudyError(f"{folder}: finished, but {problem}; delete its status.json to run the cell again (its "
                             "tool's finished run only gives the file back)")
        record = json.loads((folder / METRICS).read_text())
        size = record.get("input_size")
        for metric in (m for m in record["metrics"] if m["value"] is not None):  # None: not defined here
            lines.append({
                "genotype": cell["row"], "task": cell["task"], "dataset": metric.get("dataset", record.get("dataset")),
                "metric": metric["name"], "value": float(metric["value"]),
                "higher_is_better": bool(metric.get("higher_is_better", True)), "params": record.get("params"),
                "macs": record.get("macs"), "epochs": record.get("epochs"), "iters": record.get("iters"),
                "input_size": "x".join(map(str, size)) if isinstance(size, list) else size,
                "source_file": str(Path(cell["folder"]) / METRICS),
            })
    for row in study["rows"]:
        search = row.get("search")
        if search:
            lines.append({**dict.fromkeys(COLUMNS), "genotype": row["name"], "task": SEARCH_TASK,
                          "dataset": search["dataset"], "metric": SEARCH_METRIC, "value": search["valid_acc"],
                          "higher_is_better": True, "source_file": search["file"]})
    return lines


def write(out: Path, lines: list[dict[str, Any]]) -> None:
    """``results.csv`` and ``results.json`` in ``out``, each written atomically."""
    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(lines)
    for name, text in (("results.csv", table.getvalue()), ("results.json", json.dumps(lines, indent=1) + "\n")):
        tmp = out / f"{name}.{os.getpid()}.tmp"  # a report and a runner may write at once
        tmp.write_text(text)
        os.replace(tmp, out / name)
