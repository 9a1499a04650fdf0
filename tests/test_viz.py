"""Cell and alpha pictures: files, image sanity, labels really drawn and not piled on each other."""
from __future__ import annotations

import itertools
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from matplotlib.image import imread
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from pdarts_wild.genotype import Genotype
from pdarts_wild.spaces import DARTS_PRIMITIVES
from pdarts_wild.viz import cell_figure, plot_alphas, plot_cell, plot_cells
from pdarts_wild.zoo import GENOTYPES

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def svg_texts(path: Path) -> list[str]:
    """Every ``<text>`` string of an SVG, in document order."""
    root = ET.parse(path).getroot()
    return ["".join(el.itertext()).strip() for el in root.iter() if el.tag.endswith("}text")]


def check_png(path: Path, min_bytes: int = 10_000) -> tuple[int, int]:
    """Assert a real, non-trivial PNG; return its (width, height)."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert len(data) > min_bytes
    height, width = imread(path).shape[:2]
    return width, height


def op_labels(fig) -> list:
    """The op-name texts of a cell figure (the ones drawn in a box)."""
    return [t for t in fig.axes[0].texts if t.get_bbox_patch() is not None]


def test_plot_cell_writes_png_and_svg_with_every_label(tmp_path: Path) -> None:
    genotype = GENOTYPES["PDARTS"]
    paths = plot_cell(genotype, "normal", tmp_path / "sub" / "pdarts_normal")
    assert paths == [tmp_path / "sub" / "pdarts_normal.png", tmp_path / "sub" / "pdarts_normal.svg"]
    width, height = check_png(paths[0])
    assert 600 <= width <= 4000 and 250 <= height <= 3000 and width > height
    texts = svg_texts(paths[1])
    for name in ["c_{k-2}", "c_{k-1}", "c_{k}", "0", "1", "2", "3", "normal cell"]:
        assert name in texts
    ops = [op for op, _ in genotype.normal]
    assert sorted(t for t in texts if t in DARTS_PRIMITIVES) == sorted(ops)  # one label per pair


def test_suffix_is_replaced_and_plot_cells_names_files(tmp_path: Path) -> None:
    assert plot_cell(GENOTYPES["DARTS_V2"], "reduce", tmp_path / "r.png") == [tmp_path / "r.png", tmp_path / "r.svg"]
    paths = plot_cells(GENOTYPES["PDARTS"], tmp_path / "cells")
    assert [p.name for p in paths] == ["cell_normal.png", "cell_normal.svg", "cell_reduce.png", "cell_reduce.svg"]
    assert all(p.stat().st_size > 5_000 for p in paths)
    assert {op for op, _ in GENOTYPES["PDARTS"].reduce} <= set(svg_texts(paths[3]))


def test_five_node_nasnet_with_non_contiguous_concat(tmp_path: Path) -> None:
    genotype = GENOTYPES["NASNet"]
    assert genotype.reduce_concat == (4, 5, 6)
    png, svg = plot_cell(genotype, "reduce", tmp_path / "nasnet_reduce")
    check_png(png)
    texts = svg_texts(svg)
    assert {"0", "1", "2", "3", "4", "c_{k}"} <= set(texts)
    assert {op for op, _ in genotype.reduce} <= set(texts)
    arrows = [a for a in cell_figure(genotype, "reduce").axes[0].get_children() if isinstance(a, FancyArrowPatch)]
    dashed = [a for a in arrows if a.get_linestyle() != "-"]
    assert len(arrows) == len(genotype.reduce) + 3 and len(dashed) == 3


def test_concat_may_hold_a_cell_input() -> None:
    pairs = [("sep_conv_3x3", 0), ("skip_connect", 1)] * 2 + [("max_pool_3x3", 2), ("dil_conv_3x3", 3)] * 2
    genotype = Genotype.make(pairs, [0, 3, 5], pairs, [2, 3, 4, 5])
    children = cell_figure(genotype, "normal").axes[0].get_children()
    assert sum(isinstance(a, FancyArrowPatch) and a.get_linestyle() != "-" for a in children) == 3


@pytest.mark.parametrize("name", ["PDARTS", "NASNet", "AmoebaNet"])
@pytest.mark.parametrize("cell", ["normal", "reduce"])
def test_op_labels_do_not_overlap(name: str, cell: str) -> None:
    fig = cell_figure(GENOTYPES[name], cell)
    renderer = fig.canvas.get_renderer()
    labels = [t.get_window_extent(renderer) for t in op_labels(fig)]
    boxes = [p.get_window_extent(renderer) for p in fig.axes[0].patches if isinstance(p, FancyBboxPatch)]
    assert len(labels) == len(getattr(GENOTYPES[name], cell))
    for a, b in itertools.combinations(labels, 2):
        assert not a.overlaps(b), (a, b)
    for a, b in itertools.product(labels, boxes):
        assert not a.overlaps(b), (a, b)


def test_bad_cell_name_lists_valid_ones(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="normal, reduce"):
        plot_cell(GENOTYPES["PDARTS"], "reduction", tmp_path / "x")
    assert not list(tmp_path.iterdir())


def test_plot_alphas_with_differing_op_sets(tmp_path: Path) -> None:
    ops = list(DARTS_PRIMITIVES)
    normal = [{op: 0.05 + 0.01 * ((e + i) % 7) for i, op in enumerate(ops[e % 3:])} for e in range(14)]
    normal[4] = {"sep_conv_3x3": 0.3, "skip_connect": 0.2}
    normal[0]["sep_conv_7x7"] = 0.77  # an op only one edge holds: one annotated cell, the rest blank
    reduce = [{op: 0.125 for op in ops[:4]} for _ in range(14)]
    png, svg = plot_alphas({"normal": normal, "reduce": reduce}, tmp_path / "alphas.svg")
    assert (png.name, svg.name) == ("alphas.png", "alphas.svg")
    width, height = check_png(png)
    assert width > height > 300
    texts = svg_texts(svg)
    assert {"normal cell", "reduce cell", "n0<-c_{k-2}", "n0<-c_{k-1}", "n1<-n0", "n3<-n2"} <= set(texts)
    column_order = list(dict.fromkeys(op for row in normal for op in row))
    assert [t for t in texts if t in column_order][: len(column_order)] == column_order
    assert texts.count("0.77") == 1
    assert texts.count("0.12") == 14 * 4  # reduce: every edge holds the same four ops


def test_plot_alphas_five_nodes_and_bad_edge_count(tmp_path: Path) -> None:
    rows = [{"skip_connect": 0.4, "sep_conv_3x3": 0.6} for _ in range(20)]
    _, svg = plot_alphas({"normal": rows}, tmp_path / "a5")
    assert {"n4<-n3", "skip_connect", "sep_conv_3x3"} <= set(svg_texts(svg))
    with pytest.raises(ValueError, match="13 edges"):
        plot_alphas({"normal": rows[:13]}, tmp_path / "bad")


def test_import_does_not_load_matplotlib() -> None:
    code = "import sys, pdarts_wild.viz; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
