"""Pictures of searched cells (DAGs in the style of the DARTS paper) and of architecture weights.

Only matplotlib is needed (no graphviz). It is imported inside the functions and figures are drawn
on its Agg canvas without pyplot, so importing this module stays light and no global backend is
switched. Every picture is written as PNG and SVG; SVG text stays ``<text>``, so labels are searchable.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, NamedTuple, Sequence

from .genotype import Genotype, Pair
from .nb201 import NB201_EDGES, NB201_NODES, NB201Arch
from .spaces import CELL_TYPES, edge_inputs

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch
    from matplotlib.transforms import Bbox

Point = tuple[float, float]
Alphas = Mapping[str, Sequence[Mapping[str, float]]]

IMAGE_SUFFIXES = (".png", ".svg", ".pdf", ".jpg", ".jpeg")
INPUT_NAMES = ("c_{k-2}", "c_{k-1}")
OUTPUT_NAME = "c_{k}"

# Fixed colours for the usual primitives, so an op looks the same in every picture.
OP_COLOURS = {
    "none": "#9e9e9e",
    "skip_connect": "#5f5f5f",
    "max_pool_3x3": "#d62728",
    "avg_pool_3x3": "#ff7f0e",
    "sep_conv_3x3": "#1f77b4",
    "sep_conv_5x5": "#17becf",
    "sep_conv_7x7": "#3949ab",
    "dil_conv_3x3": "#2ca02c",
    "dil_conv_5x5": "#9467bd",
    "conv_7x1_1x7": "#8c564b",
    "nor_conv_1x1": "#2ca02c",
    "nor_conv_3x3": "#1f77b4",
    "noise": "#e377c2",
}
EXTRA_COLOURS = ("#e377c2", "#bcbd22", "#ad494a", "#637939", "#843c39", "#7b4173")
NODE_STYLE = {"input": ("#c1e1c1", (1.15, 0.55)), "node": ("#add8e6", (0.6, 0.55)), "output": ("#eee8aa", (0.95, 0.55))}

LAYER_GAP = 3.5  # data units between node layers, left to right
ROW_GAP = 1.6  # data units between the nodes of one layer
INCHES_PER_UNIT = 0.8
MARGIN = 0.45
RADII = (0.0, 0.18, -0.18, 0.32, -0.32, 0.48, -0.48, 0.65, -0.65)
LABEL_SPOTS = (0.5, 0.44, 0.56, 0.38, 0.62, 0.32, 0.68, 0.26, 0.74)
DPI = 150
NB201_EDGE_LABELS = tuple(f"n{i}<-n{j}" for i, j in NB201_EDGES)  # 6 edges: no DARTS cell has as many


class Edge(NamedTuple):
    """One arrow of a cell picture: states ``src`` -> ``dst``, labelled ``op`` (None: a concat arrow)."""

    src: int
    dst: int
    op: str | None


# ------------------------------------------------------------------------------------------- files


def image_paths(path: str | Path) -> tuple[Path, Path]:
    """``<path>.png`` and ``<path>.svg``; an image suffix already on ``path`` is replaced."""
    path = Path(path)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        path = path.with_suffix("")
    return path.with_name(path.name + ".png"), path.with_name(path.name + ".svg")


def _save(fig: "Figure", path: str | Path) -> list[Path]:
    """Write ``fig`` as PNG and SVG (text as text, no date stamp) and return both paths."""
    import matplotlib

    png, svg = image_paths(path)
    png.parent.mkdir(parents=True, exist_ok=True)
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "pdarts-wild"}):
        fig.savefig(png, dpi=DPI)
        fig.savefig(svg, metadata={"Date": None})
    return [png, svg]


def _new_figure(**kwargs: object) -> "Figure":
    """A figure on an Agg canvas, outside pyplot's global state."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(**kwargs)
    FigureCanvasAgg(fig)
    return fig


def op_colours(ops: Sequence[str]) -> dict[str, str]:
    """A colour per op: the fixed one of a known primitive, else the next of a small cycle."""
    unknown = [op for op in dict.fromkeys(ops) if op not in OP_COLOURS]
    extra = {op: EXTRA_COLOURS[i % len(EXTRA_COLOURS)] for i, op in enumerate(unknown)}
    return {op: OP_COLOURS.get(op) or extra[op] for op in ops}


def _tint(colour: str, amount: float = 0.82) -> tuple[float, float, float]:
    """``colour`` mixed with white (``amount`` of white)."""
    from matplotlib.colors import to_rgb

    r, g, b = to_rgb(colour)
    return r + (1.0 - r) * amount, g + (1.0 - g) * amount, b + (1.0 - b) * amount


def state_name(state: int) -> str:
    """``c_{k-2}``, ``c_{k-1}`` for the cell inputs, else the intermediate node's number."""
    return INPUT_NAMES[state] if state < 2 else str(state - 2)


# ------------------------------------------------------------------------------------ cell layout


def _cell_pairs(genotype: Genotype, cell: str) -> tuple[tuple[Pair, ...], tuple[int, ...]]:
    """The (op, input) pairs and concat list of ``cell``; ValueError names the valid cells."""
    if cell not in CELL_TYPES:
        raise ValueError(f"unknown cell {cell!r}; valid cells: {', '.join(CELL_TYPES)}")
    return tuple(getattr(genotype, cell)), tuple(getattr(genotype, cell + "_concat"))


def _node_inputs(pairs: Sequence[Pair]) -> list[list[int]]:
    """Input states of every state; the two cell inputs have none."""
    steps = len(pairs) // 2
    return [[], []] + [[j for _, j in pairs[2 * n: 2 * n + 2]] for n in range(steps)]


def _layers(inputs: Sequence[Sequence[int]]) -> list[int]:
    """The layer (longest path from the cell inputs) of every state."""
    depth: list[int] = []
    for srcs in inputs:
        depth.append(1 + max(depth[j] for j in srcs) if srcs else 0)
    return depth


def cell_layout(pairs: Sequence[Pair], concat: Sequence[int]) -> list[Point]:
    """Centres of states 0.. and, last, of the output: layers left to right, each sorted by its inputs' height."""
    inputs = _node_inputs(pairs) + [list(concat)]
    depth = _layers(inputs[:-1])
    depth.append(max(depth) + 1)
    return _place(inputs, depth)


def _place(inputs: Sequence[Sequence[int]], depth: Sequence[int]) -> list[Point]:
    """Centres of the states in their layers (``depth``), left to right, each layer sorted by its inputs' height."""
    pos: list[Point] = [(0.0, 0.0)] * len(inputs)
    for layer in range(depth[-1] + 1):
        members = [s for s, d in enumerate(depth) if d == layer]
        if layer:
            members.sort(key=lambda s: -sum(pos[j][1] for j in inputs[s]) / len(inputs[s]))
        for k, s in enumerate(members):
            pos[s] = (layer * LAYER_GAP, ((len(members) - 1) / 2 - k) * ROW_GAP)
    return pos


def _kind(state: int, n_states: int, n_inputs: int = 2) -> str:
    """Box style of ``state``; state ``n_states`` is the output."""
    return "input" if state < n_inputs else "output" if state == n_states else "node"


def _bezier(a: Point, b: Point, rad: float, t: float) -> Point:
    """The point at ``t`` of matplotlib's ``arc3,rad=rad`` curve from ``a`` to ``b``."""
    (x1, y1), (x2, y2) = a, b
    cx, cy = (x1 + x2) / 2 + rad * (y2 - y1), (y1 + y2) / 2 - rad * (x2 - x1)
    u = 1.0 - t
    return u * u * x1 + 2 * u * t * cx + t * t * x2, u * u * y1 + 2 * u * t * cy + t * t * y2


def _inside(p: Point, centre: Point, size: tuple[float, float], pad: float) -> bool:
    return abs(p[0] - centre[0]) <= size[0] / 2 + pad and abs(p[1] - centre[1]) <= size[1] / 2 + pad


def route_edges(edges: Sequence[Edge], pos: Sequence[Point], kinds: Sequence[str] | None = None) -> list[float]:
    """An ``arc3`` radius per edge: clear of other boxes, apart from earlier edges, as straight as possible.
    ``kinds``: the box style of every state (default: a DARTS cell's, the last state being the output)."""
    samples = [i / 40 for i in range(2, 39)]
    kinds = kinds or [_kind(s, len(pos) - 1) for s in range(len(pos))]
    drawn: list[Point] = []
    used: set[tuple[int, int, float]] = set()
    radii = []
    for e in edges:
        def cost(rad: float) -> float:
            pts = [_bezier(pos[e.src], pos[e.dst], rad, t) for t in samples]
            hits = sum(_inside(p, pos[s], NODE_STYLE[kinds[s]][1], 0.15)
                       for p in pts for s in range(len(pos)) if s not in (e.src, e.dst))
            away = [p for p in pts if min(math.dist(p, pos[e.src]), math.dist(p, pos[e.dst])) > 1.0]
            crowd = sum(any(math.dist(p, q) < 0.22 for q in drawn) for p in away)
            return 10 * hits + 0.05 * crowd + 2 * abs(rad) + 100 * ((e.src, e.dst, rad) in used)

        rad = min(RADII, key=cost)
        used.add((e.src, e.dst, rad))
        drawn += [_bezier(pos[e.src], pos[e.dst], rad, t) for t in samples]
        radii.append(rad)
    return radii


# ----------------------------------------------------------------------------------- cell drawing


def _draw_boxes(ax: "Axes", pos: Sequence[Point], kinds: Sequence[str], names: Sequence[str]) -> list["Patch"]:
    """The state boxes with their names; returns the box patches."""
    from matplotlib.patches import FancyBboxPatch

    boxes = []
    for (x, y), kind, name in zip(pos, kinds, names):
        fill, (w, h) = NODE_STYLE[kind]
        box = FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0,rounding_size=0.14",
                             fc=fill, ec="#333333", lw=1.2, zorder=3)
        ax.add_patch(box)
        ax.text(x, y, name, ha="center", va="center", fontsize=11, zorder=4)
        boxes.append(box)
    return boxes


def _draw_arrows(ax: "Axes", edges: Sequence[Edge], radii: Sequence[float], pos: Sequence[Point],
                 boxes: Sequence["Patch"], colours: Mapping[str, str]) -> None:
    """Solid op arrows coloured by op, dashed grey arrows into the output."""
    from matplotlib.patches import FancyArrowPatch

    for e, rad in zip(edges, radii):
        colour = "#777777" if e.op is None else colours[e.op]
        ax.add_artist(FancyArrowPatch(
            pos[e.src], pos[e.dst], connectionstyle=f"arc3,rad={rad}", patchA=boxes[e.src], patchB=boxes[e.dst],
            arrowstyle="-|>", mutation_scale=13, shrinkA=0, shrinkB=1, color=colour,
            lw=1.1 if e.op is None else 1.6, linestyle="--" if e.op is None else "-", zorder=1 if e.op is None else 2,
        ))


def _overlap(a: "Bbox", b: "Bbox") -> float:
    """Area shared by two display boxes."""
    w = min(a.x1, b.x1) - max(a.x0, b.x0)
    h = min(a.y1, b.y1) - max(a.y0, b.y0)
    return max(w, 0.0) * max(h, 0.0)


def _draw_labels(ax: "Axes", edges: Sequence[Edge], radii: Sequence[float], pos: Sequence[Point],
                 boxes: Sequence["Patch"], colours: Mapping[str, str]) -> None:
    """Op names in coloured boxes, each slid along its arrow to where it covers the least: other
    labels and boxes first, then crossings with other arrows."""
    import numpy as np

    renderer = ax.figure.canvas.get_renderer()
    taken = [b.get_window_extent(renderer).padded(2) for b in boxes]
    curves = [ax.transData.transform([_bezier(pos[e.src], pos[e.dst], rad, i / 40) for i in range(41)])
              for e, rad in zip(edges, radii)]
    for k, (e, rad) in enumerate(zip(edges, radii)):
        if e.op is None:
            continue
        text = ax.text(0, 0, e.op, ha="center", va="center", fontsize=8, zorder=5, color="#111111",
                       bbox=dict(boxstyle="round,pad=0.22", fc=_tint(colours[e.op]), ec=colours[e.op], lw=0.9))
        others = np.concatenate([pts for i, pts in enumerate(curves) if i != k])

        def cost(t: float) -> float:
            text.set_position(_bezier(pos[e.src], pos[e.dst], rad, t))
            extent = text.get_window_extent(renderer).padded(5)
            crossed = np.count_nonzero((others >= extent.min).all(axis=1) & (others <= extent.max).all(axis=1))
            return sum(_overlap(extent, other) for other in taken) + 40 * crossed + 100 * abs(t - 0.5)

        cost(min(LABEL_SPOTS, key=cost))
        taken.append(text.get_window_extent(renderer).padded(5))


def _limits(edges: Sequence[Edge], radii: Sequence[float], pos: Sequence[Point]) -> tuple[Point, Point]:
    """(x0, x1), (y0, y1) holding every box and arrow, with a margin and room for the title."""
    pts = [_bezier(pos[e.src], pos[e.dst], rad, i / 20) for e, rad in zip(edges, radii) for i in range(21)]
    half = max(w for _, (w, _) in NODE_STYLE.values()) / 2
    xs = [p[0] for p in pts] + [x + d for x, _ in pos for d in (-half, half)]
    ys = [p[1] for p in pts] + [y + d for _, y in pos for d in (-0.4, 0.4)]
    return (min(xs) - MARGIN, max(xs) + MARGIN), (min(ys) - MARGIN, max(ys) + MARGIN + 0.35)


def cell_figure(genotype: Genotype, cell: str) -> "Figure":
    """The ``normal`` or ``reduce`` cell of ``genotype`` as a DAG drawn on a new figure."""
    pairs, concat = _cell_pairs(genotype, cell)
    pos = cell_layout(pairs, concat)
    out = len(pos) - 1
    edges = [Edge(j, 2 + k // 2, op) for k, (op, j) in enumerate(pairs)] + [Edge(s, out, None) for s in concat]
    kinds = [_kind(s, out) for s in range(len(pos))]
    names = [state_name(s) for s in range(out)] + [OUTPUT_NAME]
    return _graph_figure(f"{cell} cell", pos, edges, kinds, names)


def nb201_cell_figure(arch: NB201Arch) -> "Figure":
    """A NAS-Bench-201 cell: node 0 (the input) to node 3 (the output), one arrow per op that is not ``none``."""
    inputs = [list(range(i)) for i in range(NB201_NODES)]
    pos = _place(inputs, _layers(inputs))
    edges = [Edge(j, i, op) for (op, j), (i, _) in zip(arch.edges, NB201_EDGES) if op != "none"]
    kinds = [_kind(s, NB201_NODES - 1, n_inputs=1) for s in range(NB201_NODES)]
    return _graph_figure("NAS-Bench-201 cell", pos, edges, kinds, [str(s) for s in range(NB201_NODES)])


def _graph_figure(title: str, pos: Sequence[Point], edges: Sequence[Edge], kinds: Sequence[str],
                  names: Sequence[str]) -> "Figure":
    """Boxes at ``pos``, routed arrows with op labels, ``title`` top left, on a new figure."""
    radii = route_edges(edges, pos, kinds)
    (x0, x1), (y0, y1) = _limits(edges, radii, pos)
    fig = _new_figure(figsize=((x1 - x0) * INCHES_PER_UNIT, (y1 - y0) * INCHES_PER_UNIT))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_axis_off()
    ax.text(x0 + 0.15, y1 - 0.15, title, ha="left", va="top", fontsize=11, fontweight="bold")
    colours = op_colours([e.op for e in edges if e.op is not None])
    boxes = _draw_boxes(ax, pos, kinds, names)
    _draw_arrows(ax, edges, radii, pos, boxes, colours)
    _draw_labels(ax, edges, radii, pos, boxes, colours)
    return fig


def plot_cell(genotype: Genotype, cell: str, path: str | Path) -> list[Path]:
    """Draw the ``normal`` or ``reduce`` cell; writes ``<path>.png`` and ``<path>.svg`` and returns them."""
    return _save(cell_figure(genotype, cell), path)


def plot_cells(genotype: Genotype | NB201Arch, out_dir: str | Path, stem: str = "cell") -> list[Path]:
    """Both cells as ``<stem>_normal.png/.svg`` and ``<stem>_reduce.png/.svg`` in ``out_dir``; a NAS-Bench-201
    cell as ``<stem>_nb201.png/.svg``."""
    if isinstance(genotype, NB201Arch):
        return _save(nb201_cell_figure(genotype), Path(out_dir) / f"{stem}_nb201")
    return [p for cell in CELL_TYPES for p in plot_cell(genotype, cell, Path(out_dir) / f"{stem}_{cell}")]


# ------------------------------------------------------------------------------------------ alphas


def _steps_for(num_edges: int) -> int:
    """Intermediate nodes of a cell with ``num_edges`` edges (2 + 3 + ... inputs)."""
    steps = 1
    while len(edge_inputs(steps)) < num_edges:
        steps += 1
    if len(edge_inputs(steps)) != num_edges:
        raise ValueError(f"{num_edges} edges fit no cell (4 nodes have 14 edges, 5 nodes 20)")
    return steps


def edge_labels(steps: int) -> list[str]:
    """Row labels of the alpha edges: ``n0<-c_{k-2}``, ..., ``n3<-n2``."""
    return [f"n{node}<-{INPUT_NAMES[j] if j < 2 else f'n{j - 2}'}" for node, j in edge_inputs(steps)]


def _alpha_table(weights: Sequence[Mapping[str, float]]) -> tuple[list[str], list[str], list[list[float]]]:
    """Row labels, op columns in first-seen order, and the weights (NaN where an edge lacks the op)."""
    labels = NB201_EDGE_LABELS if len(weights) == len(NB201_EDGE_LABELS) else edge_labels(_steps_for(len(weights)))
    ops = list(dict.fromkeys(op for row in weights for op in row))
    return labels, ops, [[float(row[op]) if op in row else math.nan for op in ops] for row in weights]


def _heatmap(ax: "Axes", title: str, labels: Sequence[str], ops: Sequence[str], values: list[list[float]]) -> None:
    """One annotated heatmap: blank where an edge lacks an op, the op DARTS would keep (largest non-``none``) in bold."""
    import numpy as np
    from matplotlib import colormaps

    data = np.ma.masked_invalid(np.array(values, dtype=float))
    cmap = colormaps["Blues"].with_extremes(bad="white")
    image = ax.imshow(data, cmap=cmap, aspect="auto")
    low, high = float(data.min()), float(data.max())
    for r, row in enumerate(values):
        kept = max((v for op, v in zip(ops, row) if op != "none" and not math.isnan(v)), default=math.nan)
        for c, v in enumerate(row):
            if math.isnan(v):
                continue
            dark = high > low and (v - low) / (high - low) > 0.6
            ax.text(c, r, f"{v:.2f}", ha="center", va="center", fontsize=7, color="white" if dark else "#111111",
                    fontweight="bold" if v == kept else "normal")
    ax.set_xticks(range(len(ops)), ops, rotation=40, ha="right", fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.set_title(f"{title} cell", fontsize=11)
    ax.figure.colorbar(image, ax=ax, shrink=0.6, label="weight")


def plot_alphas(alphas: Alphas, path: str | Path) -> list[Path]:
    """Heatmaps of architecture weights, one per cell type in ``alphas``; writes PNG and SVG, returns them.

    ``alphas[cell][e]`` maps each op on edge ``e`` to its weight; edges may hold different ops.
    """
    if not alphas:
        raise ValueError("alphas holds no cell type")
    tables = {cell: _alpha_table(rows) for cell, rows in alphas.items()}
    width = sum(2.6 + 0.6 * len(ops) for _, ops, _ in tables.values())
    height = 1.9 + 0.3 * max(len(labels) for labels, _, _ in tables.values())
    fig = _new_figure(figsize=(width, height), layout="constrained")
    for ax, (cell, table) in zip(fig.subplots(1, len(tables), squeeze=False)[0], tables.items()):
        _heatmap(ax, cell, *table)
    return _save(fig, path)
