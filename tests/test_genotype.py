"""Genotype string and file forms (parsed without eval), their error messages, the zoo resolver and
the DARTS derivation rule (spec search-space-and-networks.md §4, §5, §10)."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from pdarts_wild.config import resolve_config
from pdarts_wild.genotype import (
    FORMAT_VERSION,
    Genotype,
    GenotypeError,
    derive_darts_cell,
    genotype_from_record,
    genotype_record,
    read_genotype_file,
    write_genotype_file,
)
from pdarts_wild.spaces import DARTS_PRIMITIVES
from pdarts_wild.strategies.darts import DARTS
from pdarts_wild.zoo import GENOTYPES, available_genotypes, resolve_genotype

PDARTS_STRING = GENOTYPES["PDARTS"].to_string()

# The P-DARTS repository's spelling: irregular spacing, no space after some commas.
PDARTS_IRREGULAR = (
    "Genotype(normal=[('skip_connect', 0), ('dil_conv_3x3', 1), ('skip_connect', 0),('sep_conv_3x3', 1), "
    "('sep_conv_3x3', 1), ('sep_conv_3x3', 3), ('sep_conv_3x3',0), ('dil_conv_5x5', 4)], normal_concat=range(2, 6), "
    "reduce=[('avg_pool_3x3', 0), ('sep_conv_5x5', 1), ('sep_conv_3x3', 0), ('dil_conv_5x5', 2), "
    "('max_pool_3x3', 0), ('dil_conv_3x3', 1), ('dil_conv_3x3', 1), ('dil_conv_5x5', 3)], reduce_concat=range(2,6))"
)

NORMAL = "[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('skip_connect', 0), ('sep_conv_3x3', 1), " \
         "('skip_connect', 0), ('sep_conv_5x5', 2), ('dil_conv_3x3', 2), ('skip_connect', 4)]"
REDUCE = "[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), " \
         "('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), ('avg_pool_3x3', 0)]"


def genotype_text(normal: str = NORMAL, normal_concat: str = "range(2, 6)", reduce: str = REDUCE,
                  reduce_concat: str = "[2, 3, 4, 5]", extra: str = "") -> str:
    return (f"Genotype(normal={normal}, normal_concat={normal_concat}, reduce={reduce}, "
            f"reduce_concat={reduce_concat}{extra})")


def one_line_error(excinfo: pytest.ExceptionInfo) -> str:
    message = str(excinfo.value)
    assert message and "\n" not in message, f"error message is not a single line: {message!r}"
    return message


# ------------------------------------------------------------------------------------------ round trips


@pytest.mark.parametrize("name", sorted(GENOTYPES))
def test_string_round_trip_of_every_published_genotype(name):
    genotype = GENOTYPES[name]
    text = genotype.to_string()
    assert text.startswith("Genotype(normal=[")
    assert Genotype.from_string(text) == genotype


def test_published_genotypes_hold_the_spec_data():
    darts_v2 = GENOTYPES["DARTS_V2"]
    assert darts_v2.normal[5] == ("skip_connect", 0) and darts_v2.normal[7] == ("dil_conv_3x3", 2)
    assert darts_v2.normal_concat == (2, 3, 4, 5)
    nasnet = GENOTYPES["NASNet"]
    assert nasnet.steps == 5 and nasnet.normal_concat == (2, 3, 4, 5, 6) and nasnet.reduce_concat == (4, 5, 6)
    assert GENOTYPES["AmoebaNet"].reduce_concat == (3, 4, 6)
    assert GENOTYPES["AmoebaNet"].reduce[8] == ("conv_7x1_1x7", 0)
    # A non-contiguous concat is written as a list, a contiguous one as range(), both parse back.
    assert "reduce_concat=[3, 4, 6]" in GENOTYPES["AmoebaNet"].to_string()
    assert "normal_concat=range(2, 6)" in GENOTYPES["DARTS_V1"].to_string()


@pytest.mark.parametrize("name", sorted(GENOTYPES))
def test_json_record_round_trip(tmp_path, name):
    genotype = GENOTYPES[name]
    alphas = {"normal": [{"none": 0.1, "skip_connect": 0.25, "sep_conv_3x3": 0.65}], "reduce": [{"max_pool_3x3": 1.0}]}
    record = genotype_record(genotype, "darts", algorithm="pdarts", dataset="cifar10", seed=2, alphas=alphas,
                             pairs_like=["sep_conv_3x3", 7], note='brackets [ "x", 1 ] inside a string')
    assert record["version"] == FORMAT_VERSION == 1
    assert record["space"] == "darts"
    assert record["genotype"] == genotype.to_string()
    assert record["normal"] == [[op, j] for op, j in genotype.normal]
    assert record["reduce_concat"] == list(genotype.reduce_concat)
    assert set(record) == {"version", "space", "genotype", "normal", "normal_concat", "reduce", "reduce_concat",
                           "algorithm", "dataset", "seed", "alphas", "pairs_like", "note"}

    path = tmp_path / "genotype.json"
    write_genotype_file(path, record)
    assert not (tmp_path / "genotype.json.tmp").exists()
    text = path.read_text()
    assert f'[{json.dumps(genotype.normal[0][0])}, {genotype.normal[0][1]}]' in text  # one pair per line
    assert json.loads(text) == record

    read, read_record = read_genotype_file(path)
    assert read == genotype
    assert read_record == record
    assert read_record["alphas"] == alphas and read_record["seed"] == 2 and read_record["algorithm"] == "pdarts"


def test_write_replaces_an_existing_file(tmp_path):
    path = tmp_path / "genotype.json"
    write_genotype_file(path, genotype_record(GENOTYPES["DARTS_V1"]))
    write_genotype_file(path, genotype_record(GENOTYPES["PDARTS"], seed=5))
    genotype, record = read_genotype_file(str(path))
    assert genotype == GENOTYPES["PDARTS"] and record["seed"] == 5


def test_record_with_only_the_string_and_the_lists_take_precedence():
    genotype = GENOTYPES["PC_DARTS_cifar"]
    assert genotype_from_record({"version": 1, "genotype": genotype.to_string()}) == genotype
    lists_only = {k: v for k, v in genotype_record(genotype).items() if k != "genotype"}
    assert genotype_from_record(lists_only) == genotype


def test_text_file_holding_a_darts_string(tmp_path):
    path = tmp_path / "genotype.txt"
    path.write_text("\n  " + PDARTS_IRREGULAR.replace("], ", "],\n    ") + "\n\n")
    genotype, record = read_genotype_file(path)
    assert genotype == GENOTYPES["PDARTS"]
    assert record == {}


# -------------------------------------------------------------------------------------- parsing forms


def test_pdarts_irregular_spacing_parses():
    assert Genotype.from_string(PDARTS_IRREGULAR) == GENOTYPES["PDARTS"]


def test_range_and_list_concat_are_equal():
    with_range = Genotype.from_string(genotype_text(normal_concat="range(2, 6)", reduce_concat="range(2, 6)"))
    with_list = Genotype.from_string(genotype_text(normal_concat="[2, 3, 4, 5]", reduce_concat="[2, 3, 4, 5]"))
    with_tuple = Genotype.from_string(genotype_text(normal_concat="(2, 3, 4, 5)", reduce_concat="range(2, 6)"))
    assert with_range == with_list == with_tuple
    assert with_range.normal_concat == (2, 3, 4, 5)
    assert Genotype.from_string(genotype_text(normal_concat="range(6)")).normal_concat == (0, 1, 2, 3, 4, 5)
    assert Genotype.from_string(genotype_text(normal_concat="[5]")).normal_concat == (5,)


def test_multi_line_string():
    reduce = REDUCE.replace("), (", "),\n    (")
    text = "\n".join(["Genotype(", f"  normal={NORMAL},", "  normal_concat=range(2, 6),",
                      f"  reduce={reduce},", "  reduce_concat=[2, 3, 4, 5],", ")"])
    genotype = Genotype.from_string(text)
    assert genotype.normal[1] == ("sep_conv_3x3", 1)
    assert genotype.reduce[7] == ("avg_pool_3x3", 0)
    assert genotype.steps == 4


def test_positional_fields():
    positional = Genotype.from_string(f"Genotype({NORMAL}, range(2, 6), {REDUCE}, [2, 3, 4, 5])")
    mixed = Genotype.from_string(f"Genotype({NORMAL}, range(2, 6), reduce={REDUCE}, reduce_concat=[2, 3, 4, 5])")
    assert positional == mixed == Genotype.from_string(genotype_text())
    assert positional.reduce[0] == ("max_pool_3x3", 0)


def test_known_ops_restricts_the_operations():
    nasnet = GENOTYPES["NASNet"].to_string()
    assert Genotype.from_string(nasnet).reduce[1] == ("sep_conv_7x7", 0)
    with pytest.raises(GenotypeError, match="unknown operation 'sep_conv_7x7'"):
        Genotype.from_string(nasnet, known_ops=DARTS_PRIMITIVES)


@pytest.mark.parametrize("template", [
    "Genotype(normal=open({target!r}, 'w'), normal_concat=range(2, 6), reduce=[], reduce_concat=[2])",
    "Genotype(normal=[('sep_conv_3x3', __import__('os').system('touch ' + {target!r}))], normal_concat=[2], "
    "reduce=[], reduce_concat=[2])",
    "Genotype(normal=[], normal_concat=range(2, open({target!r}, 'w').write('x')), reduce=[], reduce_concat=[2])",
    "Genotype(normal=[], normal_concat=range(2, 6), reduce=[], reduce_concat=(lambda: open({target!r}, 'w'))())",
    "open({target!r}, 'w')",
    "__import__('pathlib').Path({target!r}).touch()",
])
def test_code_in_a_string_is_rejected_and_never_run(tmp_path, template):
    target = str(tmp_path / "pwned")
    with pytest.raises(GenotypeError) as excinfo:
        Genotype.from_string(template.format(target=target))
    one_line_error(excinfo)
    assert not Path(target).exists(), "parsing executed code from the genotype string"
    assert list(tmp_path.iterdir()) == []


def test_code_in_a_genotype_file_is_rejected_and_never_run(tmp_path):
    target = tmp_path / "pwned"
    path = tmp_path / "genotype.txt"
    path.write_text(genotype_text(normal=f"[('sep_conv_3x3', open({str(target)!r}, 'w').write('x'))]"))
    with pytest.raises(GenotypeError, match="not a literal value"):
        read_genotype_file(path)
    with pytest.raises(GenotypeError):
        resolve_genotype(path)
    assert not target.exists()


# ------------------------------------------------------------------------------------------- errors


STRING_ERRORS = [
    pytest.param(genotype_text(normal=NORMAL.replace("sep_conv_5x5", "sep_conv_9x9")),
                 r"normal: unknown operation 'sep_conv_9x9' in pair 5; known: .*sep_conv_3x3", id="unknown-op"),
    pytest.param(genotype_text(normal=NORMAL.replace("('sep_conv_3x3', 1)", "('sep_conv_3x3', 2)", 1)),
                 r"normal: pair 1 \('sep_conv_3x3', 2\) feeds node 0, whose inputs are 0\.\.1", id="bad-input"),
    pytest.param(genotype_text(reduce=REDUCE.replace("('avg_pool_3x3', 0)", "('avg_pool_3x3', 6)")),
                 r"reduce: pair 7 \('avg_pool_3x3', 6\) feeds node 3, whose inputs are 0\.\.4", id="bad-input-reduce"),
    pytest.param(genotype_text(normal=NORMAL.replace("('sep_conv_3x3', 0), ", "('sep_conv_3x3', -1), ", 1)),
                 r"normal: pair 0 \('sep_conv_3x3', -1\) feeds node 0, whose inputs are 0\.\.1", id="negative-input"),
    pytest.param(genotype_text(normal="[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('skip_connect', 0)]"),
                 r"normal: needs two \(op, input\) pairs per node, got 3 pairs", id="odd-pairs"),
    pytest.param(genotype_text(reduce="[]"), r"reduce: needs two \(op, input\) pairs per node, got 0 pairs",
                 id="no-pairs"),
    pytest.param(genotype_text(normal_concat="[2, 9]"), r"normal_concat: \[2, 9\] must list states in 0\.\.5",
                 id="bad-concat"),
    pytest.param(genotype_text(reduce_concat="[]"), r"reduce_concat: \[\] must list states in 0\.\.5",
                 id="empty-concat"),
    pytest.param(genotype_text(normal_concat="range(2, 6, 1)"), r"normal_concat: range\(\) takes one or two integers",
                 id="range-three-args"),
    pytest.param(genotype_text(normal_concat="range(2.0, 6)"), r"normal_concat: range\(\) takes one or two integers",
                 id="range-float"),
    pytest.param(genotype_text(normal_concat="'2345'"), r"normal_concat: expected a list of state indices",
                 id="concat-not-a-list"),
    pytest.param(genotype_text(normal="[('sep_conv_3x3', 0, 1)]"),
                 r"normal: each entry must be an \(op name, input index\) pair", id="triple"),
    pytest.param(genotype_text(normal="[('sep_conv_3x3', True), ('sep_conv_3x3', 1)]"),
                 r"normal: each entry must be an \(op name, input index\) pair", id="bool-input"),
    pytest.param(genotype_text(reduce="'max_pool_3x3'"), r"reduce: expected a list of \(op, input\) pairs, got str",
                 id="pairs-not-a-list"),
    pytest.param(genotype_text()[:-20], r"malformed genotype string \(syntax error at column \d+\): Genotype\(normal=",
                 id="syntax"),
    pytest.param("Genotype(normal=[\n('sep_conv_3x3', 0),\n", r"malformed genotype string .*: Genotype\(normal=\[ \(",
                 id="syntax-multi-line"),
    pytest.param("", r"malformed genotype string", id="empty"),
    pytest.param(genotype_text().replace("Genotype(", "Genome(", 1), r"must look like Genotype\(normal=\[\.\.\.\], \.\.\.\), got: Genome\(",
                 id="other-call"),
    pytest.param("[('sep_conv_3x3', 0)]", r"must look like Genotype", id="not-a-call"),
    pytest.param("genotypes.Genotype(normal=[])", r"must look like Genotype", id="attribute-call"),
    pytest.param(genotype_text(extra=", drop_prob=0.2"),
                 r"unknown Genotype field 'drop_prob'; fields: normal, normal_concat, reduce, reduce_concat",
                 id="unknown-field"),
    pytest.param(genotype_text(extra=f", normal={NORMAL}"), r"Genotype field 'normal' given twice", id="duplicate-keyword"),
    pytest.param(f"Genotype({NORMAL}, normal={NORMAL}, normal_concat=[2], reduce={REDUCE}, reduce_concat=[2])",
                 r"Genotype field 'normal' given twice", id="duplicate-positional"),
    pytest.param(f"Genotype(normal={NORMAL}, reduce={REDUCE})",
                 r"genotype string lacks field\(s\): normal_concat, reduce_concat", id="missing-fields"),
    pytest.param(f"Genotype({NORMAL}, [2], {REDUCE}, [2], [2])", r"Genotype takes 4 fields, got 5 positional values",
                 id="too-many-positional"),
    pytest.param(genotype_text(normal="[('sep_conv_3x3', x)]"), r"normal: not a literal value: \[\('sep_conv_3x3', x\)\]",
                 id="name-not-literal"),
]


@pytest.mark.parametrize("text, message", STRING_ERRORS)
def test_string_errors(text, message):
    with pytest.raises(GenotypeError, match=message) as excinfo:
        Genotype.from_string(text)
    one_line_error(excinfo)


def test_make_validates_lists_from_json():
    genotype = GENOTYPES["DARTS_V2"]
    assert Genotype.make([list(p) for p in genotype.normal], range(2, 6), genotype.reduce, [2, 3, 4, 5]) == genotype
    with pytest.raises(GenotypeError, match=r"reduce_concat: \[1, 6\] must list states in 0\.\.5"):
        Genotype.make(genotype.normal, [2, 3], genotype.reduce, [1, 6])


def write(tmp_path: Path, name: str, content: str | dict) -> Path:
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def test_bad_json_file_names_the_file(tmp_path):
    path = write(tmp_path, "broken.json", '{"version": 1,\n "normal": [}')
    with pytest.raises(GenotypeError, match=re.escape(str(path)) + r": not valid JSON \(line 2: ") as excinfo:
        read_genotype_file(path)
    one_line_error(excinfo)


def test_deeply_nested_json_file_is_a_genotype_error(tmp_path):
    path = write(tmp_path, "genotype.json", '{"version": 1, "normal": ' + "[" * 100_000)  # json.loads: RecursionError
    with pytest.raises(GenotypeError, match=re.escape(f"{path}: not a genotype record (JSON nested too deeply)")):
        read_genotype_file(path)


@pytest.mark.parametrize("version, shown", [(2, "2"), (0, "0"), ("1", "'1'"), (None, "None")])
def test_unsupported_version(tmp_path, version, shown):
    record = genotype_record(GENOTYPES["PDARTS"])
    if version is None:
        del record["version"]
    else:
        record["version"] = version
    path = write(tmp_path, "genotype.json", record)
    with pytest.raises(GenotypeError, match=re.escape(f"{path}: unsupported genotype file version {shown} "
                                                      f"(this pdarts-wild reads 1..1)")) as excinfo:
        read_genotype_file(path)
    one_line_error(excinfo)


def test_record_without_genotype_fields(tmp_path):
    path = write(tmp_path, "genotype.json", {"version": 1, "space": "darts", "genotype": ["not", "a", "string"],
                                             "normal": [["sep_conv_3x3", 0]]})
    with pytest.raises(GenotypeError, match=re.escape(
            f"{path}: genotype record needs the fields normal, normal_concat, reduce, reduce_concat or a 'genotype' string")
    ) as excinfo:
        read_genotype_file(path)
    one_line_error(excinfo)


def test_invalid_genotype_inside_a_record_names_the_file(tmp_path):
    record = genotype_record(GENOTYPES["DARTS_V1"])
    record["normal"][3] = ["conv_9x9", 1]
    path = write(tmp_path, "genotype.json", record)
    with pytest.raises(GenotypeError, match=re.escape(f"{path}: normal: unknown operation 'conv_9x9' in pair 3")):
        read_genotype_file(path)


def test_invalid_string_in_a_text_file_names_the_file(tmp_path):
    path = write(tmp_path, "genotype.txt", "Genotype(normal=[('sep_conv_3x3', 0)")
    with pytest.raises(GenotypeError, match=re.escape(f"{path}: malformed genotype string")) as excinfo:
        read_genotype_file(path)
    one_line_error(excinfo)


def test_nonexistent_file(tmp_path):
    path = tmp_path / "missing.json"
    with pytest.raises(GenotypeError, match=re.escape(f"cannot read genotype file {path}: No such file or directory")
                       ) as excinfo:
        read_genotype_file(path)
    one_line_error(excinfo)


def test_unreadable_path(tmp_path):
    with pytest.raises(GenotypeError, match=re.escape(f"cannot read genotype file {tmp_path}: ")) as excinfo:
        read_genotype_file(tmp_path)  # a directory
    one_line_error(excinfo)


def test_binary_file_is_a_genotype_error(tmp_path):
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(b"\x80\x02\x8a\nl\xfc\x9cF\xf9 j\xa8P\x19.\xff\xfe")
    with pytest.raises(GenotypeError, match=re.escape(str(path))):
        read_genotype_file(path)


# ------------------------------------------------------------------------------------------- resolver


@pytest.mark.parametrize("spec, name", [
    ("PDARTS", "PDARTS"), ("pdarts", "PDARTS"), ("  PdArTs ", "PDARTS"), ("darts_v1", "DARTS_V1"),
    ("DARTS", "DARTS_V2"), ("darts", "DARTS_V2"), ("PCDARTS", "PC_DARTS_cifar"), ("pcdarts", "PC_DARTS_cifar"),
    ("pc_darts_image", "PC_DARTS_image"), ("amoebanet", "AmoebaNet"), ("opp_darts", "OPP_DARTS"),
])
def test_resolve_names_case_insensitive_with_aliases(spec, name):
    assert resolve_genotype(spec) == GENOTYPES[name]


def test_available_names_include_aliases():
    names = available_genotypes()
    assert names == sorted(names)
    assert {"DARTS", "PCDARTS", "DARTS_V1", "DARTS_V2", "PDARTS", "PC_DARTS_cifar", "NASNet"} <= set(names)


def test_resolve_files_strings_and_genotypes(tmp_path, monkeypatch):
    genotype = GENOTYPES["OPP_DARTS"]
    json_path = tmp_path / "search" / "genotype.json"
    json_path.parent.mkdir()
    write_genotype_file(json_path, genotype_record(genotype, algorithm="darts"))
    text_path = write(tmp_path, "cell.txt", GENOTYPES["DARTS_V1"].to_string() + "\n")
    assert resolve_genotype(json_path) == genotype
    assert resolve_genotype(str(json_path)) == genotype
    assert resolve_genotype(text_path) == GENOTYPES["DARTS_V1"]
    monkeypatch.chdir(tmp_path)
    assert resolve_genotype("search/genotype.json") == genotype
    assert resolve_genotype(PDARTS_IRREGULAR) == GENOTYPES["PDARTS"]
    assert resolve_genotype(genotype) is genotype


def test_resolve_unknown_name_suggests_the_closest_ones(tmp_path):
    with pytest.raises(GenotypeError) as excinfo:
        resolve_genotype("PDARTS_V3")
    message = one_line_error(excinfo)
    assert message == ("'PDARTS_V3' is neither a published genotype (closest: DARTS_V2, DARTS_V1, PDARTS; all: "
                       "tools/model_info.py --list) nor an existing genotype file")
    assert set(available_genotypes()) >= {"DARTS_V2", "DARTS_V1", "PDARTS"}
    with pytest.raises(GenotypeError, match="nor an existing genotype file"):
        resolve_genotype(tmp_path / "missing.json")


def test_resolve_invalid_string_reports_the_parse_error():
    with pytest.raises(GenotypeError, match="unknown operation 'conv_2x2'"):
        resolve_genotype(genotype_text(normal=NORMAL.replace("sep_conv_5x5", "conv_2x2")))


# ----------------------------------------------------------------------------------------- derivation


def edge(rest: float = 0.01, **weights: float) -> dict[str, float]:
    """An edge's op -> weight map in primitive order; unnamed ops get ``rest``."""
    return {op: weights.get(op, rest) for op in DARTS_PRIMITIVES}


def flat(value: float = 0.02) -> dict[str, float]:
    return {op: value for op in DARTS_PRIMITIVES}


def hand_made_cell() -> list[dict[str, float]]:
    weights = [flat() for _ in range(14)]
    # node 0 (edges 0, 1): the stronger edge (input 1) comes first.
    weights[0] = edge(sep_conv_3x3=0.3, skip_connect=0.2)
    weights[1] = edge(dil_conv_5x5=0.6)
    # node 1 (edges 2, 3, 4): inputs 1 and 2 win, input 1 first.
    weights[2] = edge(max_pool_3x3=0.3)
    weights[3] = edge(sep_conv_5x5=0.5)
    weights[4] = edge(avg_pool_3x3=0.4)
    # node 2 (edges 5-8): `none` dominates edge 5 but scores nothing; ops of equal weight: first wins.
    weights[5] = edge(none=0.9, skip_connect=0.05)
    weights[6] = edge(dil_conv_3x3=0.2)
    weights[7] = edge(sep_conv_3x3=0.1, sep_conv_5x5=0.1)
    weights[8] = edge(max_pool_3x3=0.08)
    # node 3 (edges 9-13): inputs 1 and 3 tie: the lower input comes first.
    weights[9] = edge(sep_conv_3x3=0.3)
    weights[10] = edge(skip_connect=0.4)
    weights[11] = edge(sep_conv_3x3=0.35)
    weights[12] = edge(dil_conv_3x3=0.4)
    weights[13] = edge(none=0.95, avg_pool_3x3=0.02)
    return weights


def test_derive_darts_cell_hand_made():
    assert derive_darts_cell(hand_made_cell()) == (
        ("dil_conv_5x5", 1), ("sep_conv_3x3", 0),
        ("sep_conv_5x5", 1), ("avg_pool_3x3", 2),
        ("dil_conv_3x3", 1), ("sep_conv_3x3", 2),
        ("skip_connect", 1), ("dil_conv_3x3", 3),
    )


def test_derive_never_picks_none_even_on_an_all_none_node():
    weights = [flat() for _ in range(14)]
    weights[0] = edge(rest=0.0, none=0.99, skip_connect=0.001, sep_conv_3x3=0.002)
    weights[1] = edge(rest=0.0, none=0.98, max_pool_3x3=0.003)
    cell = derive_darts_cell(weights)
    assert cell[:2] == (("max_pool_3x3", 1), ("sep_conv_3x3", 0))
    assert all(op != "none" for op, _ in cell)


def test_derive_ties_between_edges_keep_the_lower_input_first():
    cell = derive_darts_cell([flat(0.1) for _ in range(14)])
    # every edge ties, every op ties: the first non-none op, the two lowest inputs in ascending order
    assert cell == tuple(("max_pool_3x3", j) for _ in range(4) for j in (0, 1))


def test_edge_scale_changes_the_ranking_not_the_op():
    weights = hand_made_cell()
    scale = [1.0] * 14
    scale[2] = 3.0   # node 1: edge 2 (input 0, max 0.3 -> 0.9) becomes the strongest
    scale[1] = 0.1   # node 0: edge 1 (0.6 -> 0.06) falls behind edge 0
    scale[13] = 100.0  # node 3: edge 13's best non-none op 0.02 -> 2.0; `none` stays excluded
    cell = derive_darts_cell(weights, edge_scale=scale)
    assert cell[:2] == (("sep_conv_3x3", 0), ("dil_conv_5x5", 1))
    assert cell[2:4] == (("max_pool_3x3", 0), ("sep_conv_5x5", 1))
    assert cell[4:6] == (("dil_conv_3x3", 1), ("sep_conv_3x3", 2))
    assert cell[6:8] == (("avg_pool_3x3", 4), ("skip_connect", 1))


def test_derive_rejects_an_edge_with_only_none():
    weights = hand_made_cell()
    weights[3] = {"none": 1.0}
    with pytest.raises(GenotypeError, match="edge 3 holds no operation other than 'none'"):
        derive_darts_cell(weights)


def test_darts_strategy_derives_both_cells_independently():
    normal, reduce = hand_made_cell(), [flat() for _ in range(14)]
    reduce[0] = edge(skip_connect=0.7)
    derivation = DARTS(resolve_config("darts", "cifar10")).derive({"normal": normal, "reduce": reduce}, {})
    genotype = derivation.genotype
    assert genotype.normal == derive_darts_cell(normal)
    assert genotype.reduce[0] == ("skip_connect", 0) and genotype.reduce[2] == ("max_pool_3x3", 0)
    assert genotype.normal_concat == genotype.reduce_concat == (2, 3, 4, 5)
    genotype.validate()


def test_huge_range_is_refused_before_allocating():
    text = GENOTYPES["PDARTS"].to_string().replace("normal_concat=range(2, 6)", "normal_concat=range(0, 10000000000)")
    with pytest.raises(GenotypeError, match="longer than any cell"):
        Genotype.from_string(text)


def cell_of(nodes: int) -> list[tuple[str, int]]:
    return [("sep_conv_3x3", 0), ("sep_conv_3x3", 1)] * nodes


def test_largest_cell_is_accepted_and_a_larger_one_refused_before_building(tmp_path):
    largest = Genotype.make(cell_of(62), range(2, 64), cell_of(2), [2, 3])
    assert largest.steps == 62
    with pytest.raises(GenotypeError, match=re.escape("normal: 126 pairs make 63 nodes, more than any cell "
                                                      "(62 nodes, 64 states)")):
        Genotype.make(cell_of(63), [2], cell_of(2), [2, 3])
    with pytest.raises(GenotypeError, match=re.escape("reduce_concat: 65 entries, more than any cell (64 states)")):
        Genotype.make(cell_of(2), [2, 3], cell_of(2), [2] * 65)
    record = {**genotype_record(GENOTYPES["PDARTS"]), "normal": [list(p) for p in cell_of(2000)]}
    path = write(tmp_path, "genotype.json", record)  # 4000 pairs: model_info took over 100 s to build it
    with pytest.raises(GenotypeError, match=re.escape(f"{path}: normal: 4000 pairs make 2000 nodes")) as excinfo:
        read_genotype_file(path)
    one_line_error(excinfo)
