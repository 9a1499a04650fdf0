"""NAS-Bench-201: the architecture string and the benchmark's network (TinyNetwork) built from it."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, NamedTuple, Sequence

import torch
from torch import nn

from .genotype import GenotypeError
from .ops import GlobalAvgPool, ReLUConvBN, build_op
from .spaces import SPACES

NB201_OPS = SPACES["nb201"].primitives
NB201_NODES = 4  # node 0 is the cell input; nodes 1..3 sum one edge from every earlier node
# (node, source) of the 6 edges in alpha-row order, in the benchmark's numbering (node 0 = the cell input)
NB201_EDGES = tuple((node + 1, source) for node, source in SPACES["nb201"].edges)


class NB201Arch(NamedTuple):
    """A NAS-Bench-201 cell: ``edges[k]`` = (op, source node) for nodes 1..3 in order (1<-0, 2<-0, 2<-1, ...)."""

    edges: tuple[tuple[str, int], ...]

    @classmethod
    def from_string(cls, text: str) -> "NB201Arch":
        """Parse ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``; ``GenotypeError`` names what is wrong."""
        nodes = text.strip().split("+")
        if len(nodes) != NB201_NODES - 1:
            raise GenotypeError(f"a NAS-Bench-201 string has {NB201_NODES - 1} nodes joined by '+', got: {text!r}")
        edges = []
        for i, node in enumerate(nodes, start=1):
            items = [item for item in node.split("|") if item]
            sources = []
            for item in items:
                op, _, source = item.partition("~")
                if op not in NB201_OPS:
                    raise GenotypeError(f"node {i}: unknown operation {op!r}; known: {', '.join(NB201_OPS)}")
                if not source.isdigit() or int(source) >= i:
                    raise GenotypeError(f"node {i}: {item!r} must name an earlier node 0..{i - 1}")
                sources.append(int(source))
                edges.append((op, int(source)))
            if sorted(sources) != list(range(i)):
                raise GenotypeError(f"node {i} must list every earlier node 0..{i - 1} exactly once, got {node!r}")
        return cls(tuple(edges))

    @classmethod
    def resolve(cls, spec: "str | Path | NB201Arch") -> "NB201Arch":
        """An arch string, or the ``genotype.json`` of an nb201 search; ``GenotypeError`` says why not."""
        if isinstance(spec, NB201Arch):
            return spec
        text = str(spec).strip()
        if text.startswith("Genotype("):
            raise GenotypeError("a DARTS-space genotype cannot build a NAS-Bench-201 network; give a "
                                "'|op~0|+|op~0|op~1|+...' string")
        if not text.startswith("|") and Path(text).is_file():
            try:
                record = json.loads(Path(text).read_text())
            except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
                raise GenotypeError(f"{text}: not a genotype.json file") from None
            if not isinstance(record, dict) or record.get("space") != "nb201":
                space = record.get("space", "darts") if isinstance(record, dict) else "?"
                raise GenotypeError(f"{text} holds a genotype of space {space}, not a NAS-Bench-201 cell (space nb201)")
            text = str(record.get("genotype", ""))
        return cls.from_string(text)

    def to_string(self) -> str:
        parts, k = [], 0
        for i in range(1, NB201_NODES):
            parts.append("|" + "".join(f"{op}~{j}|" for op, j in self.edges[k:k + i]))
            k += i
        return "+".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """The ``genotype.json`` fields: the arch string, as the benchmark's look-ups take it."""
        return {"genotype": self.to_string()}


def derive_nb201(weights: Sequence[Mapping[str, float]]) -> NB201Arch:
    """NAS-Bench-201's rule: every edge keeps its largest-weight op, ``none`` included (first maximum wins)."""
    if len(weights) != len(NB201_EDGES):
        raise GenotypeError(f"a NAS-Bench-201 cell has {len(NB201_EDGES)} edges, got weights for {len(weights)}")
    return NB201Arch(tuple((max(w, key=w.__getitem__), j) for w, (_, j) in zip(weights, NB201_EDGES)))


class NB201Cell(nn.Module):
    """Node i = sum over j < i of op(node j); the output is the last node (channels unchanged)."""

    def __init__(self, arch: NB201Arch, channels: int) -> None:
        super().__init__()
        self.sources = [j for _, j in arch.edges]
        self.ops = nn.ModuleList(build_op(op, channels, 1, affine=True) for op, _ in arch.edges)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes, k = [x], 0
        for i in range(1, NB201_NODES):
            nodes.append(sum(self.ops[k + n](nodes[self.sources[k + n]]) for n in range(i)))
            k += i
        return nodes[-1]


class ResidualReduction(nn.Module):
    """The benchmark's ResNet basic block between stages: stride 2, channels doubled."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, 2, 1)
        self.conv_b = ReLUConvBN(c_out, c_out, 3, 1, 1)
        self.downsample = nn.Sequential(nn.AvgPool2d(2, 2), nn.Conv2d(c_in, c_out, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.downsample(x) + self.conv_b(self.conv_a(x))


class NetworkNB201(nn.Module):
    """NAS-Bench-201's TinyNetwork: stem, three stages of ``layers`` cells (C, 2C, 4C) joined by residual
    reductions, BN-ReLU, global pooling, classifier. Returns ``(logits, None)`` like the DARTS networks."""

    def __init__(self, arch: NB201Arch | str | Path, C: int = 16, num_classes: int = 10, layers: int = 5) -> None:
        super().__init__()
        arch = NB201Arch.resolve(arch)
        self.stem = nn.Sequential(nn.Conv2d(3, C, 3, padding=1, bias=False), nn.BatchNorm2d(C))
        blocks: list[nn.Module] = []
        for stage, channels in enumerate((C, 2 * C, 4 * C)):
            if stage:
                blocks.append(ResidualReduction(channels // 2, channels))
            blocks += [NB201Cell(arch, channels) for _ in range(layers)]
        self.cells = nn.Sequential(*blocks)
        self.lastact = nn.Sequential(nn.BatchNorm2d(4 * C), nn.ReLU(inplace=True))
        self.global_pooling = GlobalAvgPool()
        self.classifier = nn.Linear(4 * C, num_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        features = self.global_pooling(self.lastact(self.cells(self.stem(x)))).flatten(1)
        return self.classifier(features), None
