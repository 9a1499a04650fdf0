"""What the training tools leave for whoever collects their results: ``metrics.json`` and run-folder names.

Every target tool (tools/train_cifar.py, tools/train_imagenet.py, tools/train_reid.py, and the MMDetection hook
of backbones/mmdet_metrics.py) writes one ``metrics.json`` beside its logs when it finishes::

    {"tool": ..., "model": ..., "genotype": DARTS string or null, "dataset": ..., "epochs": ...,
     "input_size": [H, W], "params": ..., "macs": ... or null, "metrics": [{"name", "value", "higher_is_better",
     "dataset"}, ...], "source": the tool's own log the numbers come from, ...}

Values are percentages (0-100). Default run folders carry the genotype's name (:func:`genotype_label`).
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from pdarts_wild.zoo import available_genotypes

METRICS = "metrics.json"
GENOTYPE_FILES = ("genotype.json", "genotype.txt")  # what tools/search.py writes into its run folder


def metric(name: str, value: float | None, dataset: str, higher_is_better: bool = True) -> dict[str, Any]:
    """One entry of ``metrics`` (``value`` None: not defined on this data, e.g. COCO's AP of a size it lacks)."""
    return {"name": name, "value": None if value is None else float(value), "higher_is_better": higher_is_better,
            "dataset": dataset}


def write_metrics(folder: str | Path, record: dict[str, Any]) -> Path:
    """Write ``record`` to ``folder/metrics.json`` atomically (a temporary file, then a rename)."""
    path = Path(folder) / METRICS
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(tmp, path)
    return path


def genotype_label(spec: str | Path) -> str:
    """A short name for a genotype given as a registry name (its registered spelling), a file (the search's run
    folder for ``genotype.json``/``genotype.txt``, else the file's stem) or a DARTS string (``custom``)."""
    text = str(spec).strip()
    names = {name.upper(): name for name in available_genotypes()}
    if text.upper() in names:
        return names[text.upper()]
    if text.startswith("Genotype("):
        return "custom"
    path = Path(text)
    name = path.parent.resolve().name if path.name in GENOTYPE_FILES else path.stem
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", name).strip("_.") or "custom"
