"""The rows of a study: genotypes (registry names, genotype files, search run folders) and baseline networks."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pdarts_wild.genotype import Genotype, GenotypeError, read_genotype_file
from pdarts_wild.messages import one_line
from pdarts_wild.zoo import available_genotypes, resolve_genotype

from .errors import StudyError, unknown

GENOTYPE, BASELINE = "genotype", "baseline"
SEARCH_RESULT = "genotype.json"

# Each ecosystem's own reference network for a baseline row (mmdet: detection_configs/<detector>_<it>_fpn_1x_coco.py,
# MMDetection's ResNet-50 / MobileNetV2 started from the timm ImageNet checkpoint).
BASELINES: dict[str, dict[str, str]] = {
    "resnet50": {"timm": "resnet50", "mmdet": "r50", "torchreid": "resnet50"},
    "mobilenetv2": {"timm": "mobilenetv2_100", "mmdet": "mobilenetv2", "torchreid": "mobilenetv2_x1_0"},
}


@dataclass(frozen=True)
class Row:
    """One row of the study's table; its name names its cell folders (``OUT/<name>/<task>/``)."""

    name: str
    kind: str                          # GENOTYPE or BASELINE
    spec: str | None = None            # what the tools get: a registry name, a genotype file's path or a DARTS string
    genotype: str | None = None        # the DARTS string (None for a baseline)
    search: dict[str, Any] | None = None  # a search run's own result: dataset, final validation accuracy, file

    def record(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "spec": self.spec, "genotype": self.genotype,
                "search": self.search}


def resolve_rows(genotypes: str, baselines: str) -> list[Row]:
    """The rows of ``--genotypes`` then ``--baselines`` (comma-separated), with distinct names."""
    rows = [genotype_row(spec) for spec in _split(genotypes)]
    rows += [baseline_row(name) for name in _split(baselines)]
    if not rows:
        raise StudyError("nothing to compare: give --genotypes and/or --baselines")
    seen: dict[str, Row] = {}
    for row in rows:
        if row.name in seen:
            raise StudyError(f"two rows are named {row.name!r} ({seen[row.name].spec or 'baseline'} and "
                             f"{row.spec or 'baseline'}): list each once, or rename a run folder")
        seen[row.name] = row
    return rows


def _split(spec: str) -> list[str]:
    """The comma-separated parts of ``spec``; a comma inside brackets (a DARTS string's lists) does not split."""
    parts, depth, start = [], 0, 0
    for i, char in enumerate(spec + ","):
        depth += (char in "([{") - (char in ")]}")
        if char == "," and depth <= 0:
            parts.append(spec[start:i].strip())
            start = i + 1
    return [part for part in parts if part]


def genotype_row(spec: str) -> Row:
    """A registry name (its own spelling), a DARTS string (``custom-<hash>``), a genotype file or a search run folder
    (named after the run folder)."""
    registry = {name.upper(): name for name in available_genotypes()}
    if spec.upper() in registry:
        name = registry[spec.upper()]
        return Row(name, GENOTYPE, name, resolve_genotype(name).to_string())
    if spec.startswith("Genotype("):
        try:
            text = Genotype.from_string(spec).to_string()
        except GenotypeError as e:
            raise StudyError(f"--genotypes: {e}") from None
        return Row(f"custom-{hashlib.sha1(text.encode()).hexdigest()[:8]}", GENOTYPE, text, text)
    path = Path(spec).expanduser().resolve()
    if path.is_dir():
        file = path / SEARCH_RESULT
        if not file.is_file():
            raise StudyError(f"{path} holds no {SEARCH_RESULT}: not a finished search run folder")
    elif path.is_file():
        file = path
    else:
        raise unknown("genotype (registry name, genotype file or search run folder)", spec, available_genotypes())
    try:
        genotype, record = read_genotype_file(file)
    except GenotypeError as e:
        raise StudyError(str(e)) from None
    name = file.parent.name if file.name in (SEARCH_RESULT, "genotype.txt") else file.stem
    if not name or any(not char.isprintable() for char in name):
        raise StudyError(f"row name {one_line(repr(name), 60)}, from its folder or file name, is empty or holds a "
                         "control character: rename it")
    return Row(name, GENOTYPE, str(file), genotype.to_string(), _search_result(record, file))


def _search_result(record: dict[str, Any], file: Path) -> dict[str, Any] | None:
    """The search's own validation accuracy (percent) on its proxy dataset, where its genotype.json records it."""
    accuracy = record.get("final_valid_acc")
    if not isinstance(accuracy, (int, float)):
        return None
    return {"dataset": record.get("dataset"), "valid_acc": 100.0 * accuracy, "file": str(file)}


def baseline_row(name: str) -> Row:
    if name not in BASELINES:
        raise unknown("baseline", name, BASELINES)
    return Row(name, BASELINE)
