"""The Genotype: DARTS string and JSON file forms (parsed without ``eval``), and the DARTS derivation rule."""
from __future__ import annotations

import ast
import json
import math
import re
from pathlib import Path
from typing import Any, Iterable, Mapping, NamedTuple, Sequence

from .files import atomic_write
from .ops import OPS
from .spaces import node_edges, edge_inputs

FORMAT_VERSION = 1
MAX_STATES = 64  # far beyond any published cell; bounds what a genotype string or file can make us build:
MAX_NODES = MAX_STATES - 2  # its ranges and concat lists, and its pair lists (2 per node after the 2 cell inputs)
FIELDS = ("normal", "normal_concat", "reduce", "reduce_concat")

Pair = tuple[str, int]


class GenotypeError(ValueError):
    """A genotype string, file or value that cannot be used; the message names the problem."""


class Genotype(NamedTuple):
    """A searched cell pair, field for field the DARTS ``Genotype`` namedtuple.

    ``normal``/``reduce``: (op, input state) pairs, two per intermediate node in node order;
    input state 0 = c_{k-2}, 1 = c_{k-1}, 2.. = earlier nodes. ``*_concat``: states concatenated
    into the cell output.
    """

    normal: tuple[Pair, ...]
    normal_concat: tuple[int, ...]
    reduce: tuple[Pair, ...]
    reduce_concat: tuple[int, ...]

    @classmethod
    def make(
        cls,
        normal: Iterable[Sequence[Any]],
        normal_concat: Iterable[int],
        reduce: Iterable[Sequence[Any]],
        reduce_concat: Iterable[int],
        known_ops: Iterable[str] | None = None,
    ) -> "Genotype":
        """Build from any sequences (lists of lists from JSON included) and validate."""
        genotype = cls(_pairs(normal, "normal"), _ints(normal_concat, "normal_concat"),
                       _pairs(reduce, "reduce"), _ints(reduce_concat, "reduce_concat"))
        genotype.validate(known_ops)
        return genotype

    @property
    def steps(self) -> int:
        """Number of intermediate nodes of the normal cell."""
        return len(self.normal) // 2

    def validate(self, known_ops: Iterable[str] | None = None) -> None:
        """Raise :class:`GenotypeError` for unknown ops, bad input indices or concat entries, and for cells larger than
        :data:`MAX_NODES` (a file of 4000 pairs would take minutes to build)."""
        known = set(OPS if known_ops is None else known_ops)
        for cell in ("normal", "reduce"):
            pairs: tuple[Pair, ...] = getattr(self, cell)
            if not pairs or len(pairs) % 2:
                raise GenotypeError(f"{cell}: needs two (op, input) pairs per node, got {len(pairs)} pairs")
            if len(pairs) > 2 * MAX_NODES:
                raise GenotypeError(f"{cell}: {len(pairs)} pairs make {len(pairs) // 2} nodes, more than any cell "
                                    f"({MAX_NODES} nodes, {MAX_STATES} states)")
            for k, (op, j) in enumerate(pairs):
                node = k // 2
                if op not in known:
                    raise GenotypeError(f"{cell}: unknown operation {op!r} in pair {k}; known: {', '.join(sorted(known))}")
                if not 0 <= j < node + 2:
                    raise GenotypeError(
                        f"{cell}: pair {k} ({op!r}, {j}) feeds node {node}, whose inputs are 0..{node + 1}"
                    )
            concat: tuple[int, ...] = getattr(self, cell + "_concat")
            if len(concat) > MAX_STATES:
                raise GenotypeError(f"{cell}_concat: {len(concat)} entries, more than any cell ({MAX_STATES} states)")
            states = len(pairs) // 2 + 2
            bad = [i for i in concat if not 0 <= i < states]
            if not concat or bad:
                raise GenotypeError(f"{cell}_concat: {list(concat)} must list states in 0..{states - 1}")

    def to_string(self) -> str:
        """The DARTS ``Genotype(normal=[...], normal_concat=range(2, 6), ...)`` form."""
        parts = []
        for cell in ("normal", "reduce"):
            pairs = ", ".join(f"({op!r}, {j})" for op, j in getattr(self, cell))
            parts.append(f"{cell}=[{pairs}]")
            parts.append(f"{cell}_concat={_concat_repr(getattr(self, cell + '_concat'))}")
        return f"Genotype({', '.join(parts)})"

    def to_dict(self) -> dict[str, Any]:
        """The genotype fields as JSON-ready lists."""
        return {
            "genotype": self.to_string(),
            "normal": [[op, j] for op, j in self.normal],
            "normal_concat": list(self.normal_concat),
            "reduce": [[op, j] for op, j in self.reduce],
            "reduce_concat": list(self.reduce_concat),
        }

    @classmethod
    def from_string(cls, text: str, known_ops: Iterable[str] | None = None) -> "Genotype":
        """Parse the DARTS string form (``range(a, b)`` or lists for concat) without evaluating it."""
        text = text.strip()
        try:
            call = ast.parse(text, mode="eval").body
        except SyntaxError as e:
            raise GenotypeError(f"malformed genotype string (syntax error at column {e.offset}): {_clip(text)}") from None
        if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "Genotype"):
            raise GenotypeError(f"a genotype string must look like Genotype(normal=[...], ...), got: {_clip(text)}")
        if len(call.args) > len(FIELDS):
            raise GenotypeError(f"Genotype takes {len(FIELDS)} fields, got {len(call.args)} positional values")
        values: dict[str, Any] = {}
        for field, node in zip(FIELDS, call.args):
            values[field] = _literal(node, field)
        for kw in call.keywords:
            if kw.arg not in FIELDS:
                raise GenotypeError(f"unknown Genotype field {kw.arg!r}; fields: {', '.join(FIELDS)}")
            if kw.arg in values:
                raise GenotypeError(f"Genotype field {kw.arg!r} given twice")
            values[kw.arg] = _literal(kw.value, kw.arg)
        missing = [f for f in FIELDS if f not in values]
        if missing:
            raise GenotypeError(f"genotype string lacks field(s): {', '.join(missing)}")
        return cls.make(**values, known_ops=known_ops)


def _clip(text: str, width: int = 80) -> str:
    one_line = " ".join(text.split())
    return one_line if len(one_line) <= width else one_line[: width - 3] + "..."


def _concat_repr(concat: Sequence[int]) -> str:
    contiguous = len(concat) > 1 and list(concat) == list(range(concat[0], concat[-1] + 1))
    return f"range({concat[0]}, {concat[-1] + 1})" if contiguous else str(list(concat))


def _literal(node: ast.expr, field: str) -> Any:
    """A literal value, or the integers of ``range(a[, b])``; nothing is evaluated."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "range":
        args = [_literal(a, field) for a in node.args]
        if node.keywords or not 1 <= len(args) <= 2 or not all(type(a) is int for a in args):
            raise GenotypeError(f"{field}: range() takes one or two integers")
        if len(range(*args)) > MAX_STATES:
            raise GenotypeError(f"{field}: {ast.unparse(node)} is longer than any cell ({MAX_STATES} states)")
        return list(range(*args))
    try:
        return ast.literal_eval(node)
    except ValueError:
        raise GenotypeError(f"{field}: not a literal value: {_clip(ast.unparse(node))}") from None


def _pairs(value: Any, field: str) -> tuple[Pair, ...]:
    if not isinstance(value, (list, tuple)):
        raise GenotypeError(f"{field}: expected a list of (op, input) pairs, got {type(value).__name__}")
    pairs = []
    for item in value:
        if not (isinstance(item, (list, tuple)) and len(item) == 2 and isinstance(item[0], str)
                and isinstance(item[1], int) and not isinstance(item[1], bool)):
            raise GenotypeError(f"{field}: each entry must be an (op name, input index) pair, got {item!r}")
        pairs.append((item[0], item[1]))
    return tuple(pairs)


def _ints(value: Any, field: str) -> tuple[int, ...]:
    if isinstance(value, range):
        value = list(value)
    if not (isinstance(value, (list, tuple)) and all(isinstance(i, int) and not isinstance(i, bool) for i in value)):
        raise GenotypeError(f"{field}: expected a list of state indices, got {value!r}")
    return tuple(value)


# ---------------------------------------------------------------------------------------------- files


def genotype_record(genotype: Genotype, space: str = "darts", **metadata: Any) -> dict[str, Any]:
    """The ``genotype.json`` content: format version, space, genotype fields, then ``metadata``."""
    return {"version": FORMAT_VERSION, "space": space, **genotype.to_dict(), **metadata}


def write_genotype_file(path: str | Path, record: Mapping[str, Any]) -> None:
    """Write a ``genotype.json`` record atomically, one (op, input) pair per line."""
    text = re.sub(r'\[\s+("[^"]+"),\s+(\d+)\s+\]', r"[\1, \2]", json.dumps(record, indent=2))
    atomic_write(path, text + "\n")


def read_genotype_file(path: str | Path, known_ops: Iterable[str] | None = None) -> tuple[Genotype, dict[str, Any]]:
    """Read a ``genotype.json`` (returns its whole record too) or a text file holding a DARTS string."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise GenotypeError(f"cannot read genotype file {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise GenotypeError(f"{path} is not a text file (expected genotype.json or a DARTS Genotype string)") from None
    if not text.lstrip().startswith("{"):
        try:
            return Genotype.from_string(text, known_ops), {}
        except GenotypeError as e:
            raise GenotypeError(f"{path}: {e}") from None
    try:
        record = json.loads(text)
    except json.JSONDecodeError as e:
        raise GenotypeError(f"{path}: not valid JSON (line {e.lineno}: {e.msg})") from None
    except RecursionError:
        raise GenotypeError(f"{path}: not a genotype record (JSON nested too deeply)") from None
    try:
        return genotype_from_record(record, known_ops), record
    except GenotypeError as e:
        raise GenotypeError(f"{path}: {e}") from None


def genotype_from_record(record: Mapping[str, Any], known_ops: Iterable[str] | None = None) -> Genotype:
    """The genotype of a ``genotype.json`` record (its field lists, or else its DARTS string)."""
    version = record.get("version")
    if type(version) is not int or not 1 <= version <= FORMAT_VERSION:
        raise GenotypeError(f"unsupported genotype file version {version!r} (this pdarts-wild reads 1..{FORMAT_VERSION})")
    if record.get("space") == "nb201":
        raise GenotypeError("holds a NAS-Bench-201 cell (space nb201), not a DARTS-space genotype: build it with "
                            "pdarts_wild.nb201.NetworkNB201 (tools/model_info.py --net nb201)")
    if all(f in record for f in FIELDS):
        return Genotype.make(*(record[f] for f in FIELDS), known_ops=known_ops)
    if isinstance(record.get("genotype"), str):
        return Genotype.from_string(record["genotype"], known_ops)
    raise GenotypeError(f"genotype record needs the fields {', '.join(FIELDS)} or a 'genotype' string")


# ----------------------------------------------------------------------------------------- derivation

EdgeWeights = Sequence[Mapping[str, float]]


def check_finite(edge: int, weights: Iterable[float]) -> None:
    """A GenotypeError when an op weight of ``edge`` is NaN or infinite (a diverged search): no comparison picks an
    op by it, so a derivation would make one up or find none."""
    if not all(math.isfinite(w) for w in weights):
        raise GenotypeError(f"edge {edge} has op weights that are not finite (the search diverged)")


def derive_darts_cell(weights: EdgeWeights, steps: int = 4, edge_scale: Sequence[float] | None = None) -> tuple[Pair, ...]:
    """The DARTS rule for one cell type.

    ``weights[e]`` maps each op on edge ``e`` to its softmax weight. Each node keeps its two edges with
    the largest non-``none`` weight (ties: lower input first), strongest first, each with its
    argmax non-``none`` op (first maximum wins). ``edge_scale`` multiplies each edge's weights first
    (PC-DARTS edge normalisation).
    """
    inputs = edge_inputs(steps)
    pairs: list[Pair] = []
    for edges in node_edges(steps):
        best: list[tuple[float, int, str]] = []
        for e in edges:
            scale = 1.0 if edge_scale is None else edge_scale[e]
            ops = [(w * scale, op) for op, w in weights[e].items() if op != "none"]
            if not ops:
                raise GenotypeError(f"edge {e} holds no operation other than 'none'")
            check_finite(e, [w for w, _ in ops])
            top = max(w for w, _ in ops)
            best.append((top, inputs[e][1], next(op for w, op in ops if w == top)))
        best.sort(key=lambda item: -item[0])  # stable: ties keep the lower input first
        pairs += [(op, j) for _, j, op in best[:2]]
    return tuple(pairs)

