"""P-DARTS rules: op dropping, final cell, skip-connect limit, skip-dropout schedule, strategy and config
defaults (spec pdarts.md §2-§7, darts-pcdarts.md §1.3)."""
from __future__ import annotations

import math

import pytest

from pdarts_wild.config import ConfigError, resolve_config
from pdarts_wild.genotype import Genotype, GenotypeError
from pdarts_wild.spaces import DARTS_PRIMITIVES as PRIMITIVES
from pdarts_wild.strategies.darts import DARTS
from pdarts_wild.strategies.pdarts import PDARTS, final_cell, keep_strongest, limit_skip_connects, skip_dropout_rate

# ------------------------------------------------------------------------------- spec test vector (§7)

_OPS = "0,3,4 | 3,4,6 | 0,3,5 | 3,4,7 | 1,3,4 | 3,4,5 | 0,3,6 | 2,3,4 | 3,5,6 | 0,3,4 | 3,4,7 | 3,5,7 | 0,3,6 | 3,4,5"
_P = (".30 .45 .25 | .50 .30 .20 | .20 .50 .30 | .40 .35 .25 | .25 .45 .30 | .55 .25 .20 | .30 .40 .30 | "
      ".20 .48 .32 | .44 .36 .20 | .25 .50 .25 | .60 .25 .15 | .35 .40 .25 | .30 .38 .32 | .42 .33 .25")


def spec_vector() -> list[dict[str, float]]:
    return [{PRIMITIVES[int(o)]: float(p) for o, p in zip(ops.split(","), ps.split())}
            for ops, ps in zip(_OPS.split("|"), _P.split("|"))]


SKIP, SEP3, SEP5 = "skip_connect", "sep_conv_3x3", "sep_conv_5x5"
UNRESTRICTED = ((SKIP, 0), (SKIP, 1), (SKIP, 0), (SKIP, 2), (SKIP, 0), (SKIP, 2), (SKIP, 0), (SKIP, 1))
M2 = ((SEP3, 0), (SEP3, 1), (SEP3, 1), (SEP3, 2), (SKIP, 0), (SEP5, 3), (SKIP, 1), (SEP5, 2))
M0 = ((SEP3, 0), (SEP3, 1), (SEP3, 1), (SEP3, 2), (SEP3, 2), (SEP5, 3), (SEP5, 2), (SEP3, 4))


def skips(cell) -> int:
    return sum(op == SKIP for op, _ in cell)


def test_vector_is_as_in_the_spec():
    vector = spec_vector()
    assert len(vector) == 14
    assert vector[0] == {"none": 0.30, "skip_connect": 0.45, "sep_conv_3x3": 0.25}
    assert vector[13] == {"skip_connect": 0.42, "sep_conv_3x3": 0.33, "sep_conv_5x5": 0.25}


def test_final_cell_unrestricted_has_eight_skips():
    cell = final_cell(spec_vector())
    assert cell == UNRESTRICTED
    assert skips(cell) == 8


def test_limit_skip_connects_spec_vector():
    vector = spec_vector()
    before = [dict(e) for e in vector]
    result = limit_skip_connects(vector)
    assert sorted(result) == list(range(8))  # every M below the unrestricted count of 8
    assert result[2] == M2
    assert result[0] == M0
    for m, cell in result.items():
        assert skips(cell) <= m
    assert vector == before  # the caller's weights are not modified


def test_limit_keeps_the_strongest_skip_edges():
    # the author (#35): the loop equals keeping the M strongest skip edges; at M=2 those are P .60 and .55
    result = limit_skip_connects(spec_vector())
    assert [pair for pair in result[2] if pair[0] == SKIP] == [(SKIP, 0), (SKIP, 1)]
    assert result[2][4] == (SKIP, 0)  # node 2, edge 5 (input 0), skip P .55
    assert result[2][6] == (SKIP, 1)  # node 3, edge 10 (input 1), skip P .60
    assert skips(result[1]) == 1 and (SKIP, 1) in result[1][6:]


def uniform_skip_cell(skip: float = 0.5, sep: float = 0.3) -> list[dict[str, float]]:
    return [{"skip_connect": skip, "sep_conv_3x3": sep} for _ in range(14)]


def test_final_cell_ties_later_edge_and_later_op_win():
    weights = [{"sep_conv_3x3": 0.4, "sep_conv_5x5": 0.4} for _ in range(14)]
    # every edge ties: nodes 1-3 keep their two highest edges; every op ties: the later op survives
    assert final_cell(weights) == ((SEP5, 0), (SEP5, 1), (SEP5, 1), (SEP5, 2), (SEP5, 2), (SEP5, 3),
                                   (SEP5, 3), (SEP5, 4))


def test_final_cell_ignores_none_and_lists_pairs_by_ascending_input():
    weights = [{"none": 0.1, "sep_conv_3x3": 0.5, "dil_conv_3x3": 0.4} for _ in range(14)]
    weights[9] = {"none": 0.97, "max_pool_3x3": 0.02, "avg_pool_3x3": 0.01}   # node 3, input 0: weak despite none
    weights[13] = {"none": 0.05, "dil_conv_5x5": 0.9, "sep_conv_5x5": 0.05}   # node 3, input 4: strongest
    weights[11] = {"none": 0.05, "avg_pool_3x3": 0.8, "sep_conv_5x5": 0.15}   # node 3, input 2
    cell = final_cell(weights)
    assert cell[6:] == (("avg_pool_3x3", 2), ("dil_conv_5x5", 4))
    assert all(op != "none" for op, _ in cell)
    weights[9] = {"none": 0.2, "max_pool_3x3": 0.85}
    assert final_cell(weights)[6:] == (("max_pool_3x3", 0), ("dil_conv_5x5", 4))


def test_limit_ties_remove_the_lower_edge_skip_first():
    result = limit_skip_connects(uniform_skip_cell())
    assert sorted(result) == list(range(8))
    # all skips tie at 0.5: edge 0 (node 0, input 0) loses its skip first
    assert result[7] == ((SEP3, 0), (SKIP, 1), (SKIP, 1), (SKIP, 2), (SKIP, 2), (SKIP, 3), (SKIP, 3), (SKIP, 4))
    assert result[6][:2] == ((SEP3, 0), (SEP3, 1))
    assert result[0] == final_cell([{"sep_conv_3x3": 0.3} for _ in range(14)])


def test_limit_returns_nothing_above_the_unrestricted_count():
    weights = spec_vector()
    for e in range(14):
        weights[e]["skip_connect"] = 0.01
    weights[10]["skip_connect"] = 0.9
    assert skips(final_cell(weights)) == 1
    result = limit_skip_connects(weights)
    assert list(result) == [0]
    assert skips(result[0]) == 0
    weights[10]["skip_connect"] = 0.01
    assert limit_skip_connects(weights) == {}


def test_a_skip_with_no_other_op_on_its_edge_stays_where_its_node_needs_it():
    # With 2 ops kept per edge (or RobustDARTS' S2/S3 spaces), an edge can hold only none and skip_connect. Its skip
    # can go only where its node has two other edges with an op; this search used to loop forever here.
    only_skip = {"none": 0.4, "skip_connect": 0.6}
    weights = [dict(only_skip) for _ in range(14)]
    assert skips(final_cell(weights)) == 8 and limit_skip_connects(weights) == {}  # no skip can go anywhere
    weights[5] = weights[6] = {"skip_connect": 0.7, "sep_conv_3x3": 0.3}  # node 2 (edges 5-8), inputs 0 and 1
    weights[11] = {"skip_connect": 0.2, "sep_conv_3x3": 0.1}  # node 3 (edges 9-13), input 2: the weakest skip
    result = limit_skip_connects(weights)
    assert sorted(result) == [5, 6, 7]  # 8 skips, 3 of them on edges with another op
    # as in the paper's loop, an edge that lost its skip ranks by its other ops (a skip-only edge: below every other),
    # so a node may take another skip edge in its place: node 1 (pairs 2-3) holds two skips throughout
    assert result[7] == ((SKIP, 0), (SKIP, 1), (SKIP, 0), (SKIP, 2), (SKIP, 0), (SKIP, 1), (SEP3, 2), (SKIP, 4))
    assert result[5] == ((SKIP, 0), (SKIP, 1), (SKIP, 0), (SKIP, 2), (SEP3, 0), (SEP3, 1), (SEP3, 2), (SKIP, 4))
    # the limit of 2 cannot be reached: the derived cell has the fewest skips that can
    derived = PDARTS(resolve_config("pdarts", "cifar10")).derive({"normal": weights, "reduce": spec_vector()}, {})
    assert derived.genotype.normal == result[5]


def test_derivation_refuses_weights_that_are_not_finite():
    """A diverged search's NaN never beats another weight: P-DARTS chose '' ops, DARTS found no op (StopIteration)."""
    weights = spec_vector()
    weights[3] = {op: math.nan for op in weights[3]}
    message = r"edge 3 has op weights that are not finite \(the search diverged\)"
    with pytest.raises(GenotypeError, match=message):
        PDARTS(resolve_config("pdarts", "cifar10")).derive({"normal": spec_vector(), "reduce": weights}, {})
    weights[3] = {op: math.inf for op in weights[3]}
    with pytest.raises(GenotypeError, match=message):
        DARTS(resolve_config("darts", "cifar10")).derive({"normal": weights, "reduce": spec_vector()}, {})


# ------------------------------------------------------------------------------------ op dropping (§6)


def ranked(*values: float) -> dict[str, float]:
    return dict(zip(PRIMITIVES, values))


def test_keep_strongest_keeps_the_largest_in_original_order():
    weights = ranked(0.05, 0.30, 0.10, 0.20, 0.02, 0.15, 0.08, 0.10)
    assert keep_strongest(weights, 5) == ("max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_5x5",
                                          "dil_conv_5x5")
    assert keep_strongest(weights, 3) == ("max_pool_3x3", "skip_connect", "sep_conv_5x5")
    assert keep_strongest(weights, 1) == ("max_pool_3x3",)
    assert keep_strongest(weights, 8) == PRIMITIVES
    assert keep_strongest(weights, 10) == PRIMITIVES


def test_keep_strongest_ties_drop_the_earlier_op():
    weights = ranked(0.1, 0.1, 0.1, 0.1, 0.1, 0.2, 0.2, 0.2)
    assert keep_strongest(weights, 5) == ("skip_connect", "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5")
    assert keep_strongest({"a": 0.5, "b": 0.5, "c": 0.5}, 1) == ("c",)
    assert keep_strongest({"a": 0.5, "b": 0.5, "c": 0.1}, 1) == ("b",)


def test_keep_strongest_treats_none_like_any_other_op():
    weights = ranked(0.40, 0.05, 0.05, 0.20, 0.10, 0.09, 0.06, 0.05)
    assert keep_strongest(weights, 3) == ("none", "skip_connect", "sep_conv_3x3")
    # on an already reduced edge (5 ops in primitive order)
    assert keep_strongest({"none": 0.1, "skip_connect": 0.3, "sep_conv_3x3": 0.25, "sep_conv_5x5": 0.2,
                           "dil_conv_5x5": 0.15}, 3) == ("skip_connect", "sep_conv_3x3", "sep_conv_5x5")


# --------------------------------------------------------------------------------- skip dropout (§4)


R04 = {0: 0.384, 1: 0.368, 9: 0.240, 10: 0.400, 11: 0.327, 12: 0.268, 24: 0.024}
R07 = {0: 0.672, 9: 0.420, 10: 0.700, 11: 0.573, 24: 0.043}


@pytest.mark.parametrize("rate, values", [(0.4, R04), (0.7, R07)])
def test_skip_dropout_rate_matches_the_spec(rate, values):
    for epoch, expected in values.items():
        assert skip_dropout_rate(rate, epoch, 25, 10) == pytest.approx(expected, abs=6e-4), epoch


def test_skip_dropout_rate_shape():
    rates = [skip_dropout_rate(0.4, e, 25, 10) for e in range(25)]
    assert rates[:10] == pytest.approx([0.4 * (24 - e) / 25 for e in range(10)])
    assert rates[10:] == pytest.approx([0.4 * math.exp(-0.2 * (e - 10)) for e in range(10, 25)])
    assert all(a > b for a, b in zip(rates[:9], rates[1:10]))  # linear decay while alphas are frozen
    assert rates[10] > rates[9]                                  # jumps back to r when alphas start to train
    assert all(skip_dropout_rate(0.0, e, 25, 10) == 0.0 for e in range(25))


def test_strategy_skip_dropout_per_stage():
    strategy = PDARTS(resolve_config("pdarts", "cifar10"))
    stages = strategy.stages()
    assert [strategy.skip_dropout(stages[0], e) for e in (0, 10, 24)] == [0.0, 0.0, 0.0]
    assert strategy.skip_dropout(stages[1], 9) == pytest.approx(0.240)
    assert strategy.skip_dropout(stages[1], 10) == pytest.approx(0.400)
    assert strategy.skip_dropout(stages[2], 0) == pytest.approx(0.672)
    assert strategy.skip_dropout(stages[2], 24) == pytest.approx(0.7 * math.exp(-2.8))


# ---------------------------------------------------------------------------------- strategy objects


def test_pdarts_stage_plan():
    stages = PDARTS(resolve_config("pdarts", "cifar10")).stages()
    assert [(s.layers, s.epochs, s.arch_frozen_epochs, s.skip_dropout, s.keep_ops) for s in stages] == [
        (5, 25, 10, 0.0, 5), (11, 25, 10, 0.4, 3), (17, 25, 10, 0.7, None)]


def test_pdarts_prune_through_the_strategy():
    strategy = PDARTS(resolve_config("pdarts", "cifar10"))
    stage1, stage2, _ = strategy.stages()
    all_ops = {cell: [PRIMITIVES] * 14 for cell in ("normal", "reduce")}
    normal = [ranked(0.05, 0.30, 0.10, 0.20, 0.02, 0.15, 0.08, 0.10)] * 14
    normal[3] = ranked(0.40, 0.05, 0.05, 0.20, 0.10, 0.09, 0.06, 0.05)
    reduce = [ranked(0.1, 0.1, 0.1, 0.1, 0.1, 0.2, 0.2, 0.2)] * 14
    pruned = strategy.prune(all_ops, {"normal": normal, "reduce": reduce}, stage1)
    assert set(pruned) == {"normal", "reduce"}
    assert all(len(ops) == 5 for cell in pruned.values() for ops in cell) and len(pruned["normal"]) == 14
    assert pruned["normal"][0] == ("max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_5x5", "dil_conv_5x5")
    assert pruned["normal"][3] == ("none", "skip_connect", "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3")
    assert pruned["reduce"][7] == ("skip_connect", "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5")

    # stage 2 sees the reduced edges (weights over each edge's own ops) and keeps 3
    table = {cell: [{op: float(i + 1) for i, op in enumerate(ops)} for ops in pruned[cell]] for cell in pruned}
    table["normal"][3] = {"none": 0.5, "skip_connect": 0.1, "sep_conv_3x3": 0.2, "sep_conv_5x5": 0.1,
                          "dil_conv_3x3": 0.1}
    pruned2 = strategy.prune(pruned, table, stage2)
    assert all(len(ops) == 3 for cell in pruned2.values() for ops in cell)
    assert pruned2["normal"][0] == ("skip_connect", "sep_conv_5x5", "dil_conv_5x5")
    assert pruned2["normal"][3] == ("none", "sep_conv_3x3", "dil_conv_3x3")


def test_pdarts_derive_uses_the_skip_limit():
    strategy = PDARTS(resolve_config("pdarts", "cifar10"))
    alphas = {"normal": spec_vector(), "reduce": spec_vector()}
    derivation = strategy.derive(alphas, {})
    genotype = derivation.genotype
    assert genotype.normal == M2
    assert genotype.reduce == UNRESTRICTED  # reduction cells are never limited
    assert genotype.normal_concat == genotype.reduce_concat == (2, 3, 4, 5)
    extras = derivation.extras
    assert extras["skip_limit"] == 2
    assert Genotype.from_string(extras["unrestricted"]) == Genotype(UNRESTRICTED, (2, 3, 4, 5), UNRESTRICTED, (2, 3, 4, 5))
    assert sorted(extras["by_skip_limit"], key=int) == [str(m) for m in range(8)]
    assert extras["by_skip_limit"]["2"] == genotype.to_string()
    assert Genotype.from_string(extras["by_skip_limit"]["0"]).normal == M0


def test_pdarts_derive_other_limits():
    alphas = {"normal": spec_vector(), "reduce": spec_vector()}
    assert PDARTS(resolve_config("pdarts", "cifar10", skip_limit=0)).derive(alphas, {}).genotype.normal == M0
    assert PDARTS(resolve_config("pdarts", "cifar10", skip_limit=8)).derive(alphas, {}).genotype.normal == UNRESTRICTED
    few = spec_vector()
    for e in range(14):
        few[e]["skip_connect"] = 0.01
    derivation = PDARTS(resolve_config("pdarts", "cifar10")).derive({"normal": few, "reduce": spec_vector()}, {})
    assert derivation.genotype.normal == final_cell(few)
    assert skips(derivation.genotype.normal) == 0 and derivation.extras["by_skip_limit"] == {}


# ---------------------------------------------------------------------------------------------- config


def test_pdarts_cifar10_defaults():
    config = resolve_config("pdarts", "cifar10")
    assert config.algorithm == "pdarts" and config.dataset == "cifar10" and config.preset == "paper"
    assert config.layers == [5, 11, 17]
    assert config.epochs == [25, 25, 25]
    assert config.arch_frozen_epochs == [10, 10, 10]
    assert config.skip_dropout == [0.0, 0.4, 0.7]
    assert config.keep_ops == [5, 3]
    assert config.skip_limit == 2
    assert config.channels == 16 and config.batch_size == 96
    assert config.lr == 0.025 and config.lr_min == 0.0 and config.momentum == 0.9 and config.weight_decay == 3e-4
    assert config.arch_lr == 6e-4 and config.arch_betas == (0.5, 0.999) and config.arch_weight_decay == 1e-3
    assert config.arch_grad_clip == 5.0 and config.unrolled is False


def test_pdarts_cifar100_skip_dropout():
    config = resolve_config("pdarts", "cifar100")
    assert config.skip_dropout == [0.1, 0.2, 0.3]
    assert config.layers == [5, 11, 17] and config.epochs == [25, 25, 25]


def test_darts_defaults():
    config = resolve_config("darts", "cifar10")
    assert config.layers == [8] and config.epochs == [50] and config.arch_frozen_epochs == [0]
    assert config.lr_min == 0.001 and config.arch_lr == 3e-4 and config.arch_weight_decay == 1e-3
    assert config.batch_size == 64 and config.keep_ops == [] and config.skip_dropout == [0.0]
    assert config.arch_grad_clip == 0.0
    (stage,) = DARTS(config).stages()
    assert (stage.layers, stage.epochs, stage.arch_frozen_epochs, stage.skip_dropout, stage.keep_ops) == (8, 50, 0, 0.0, None)


def test_presets_and_overrides():
    tiny = resolve_config("pdarts", "cifar10", "tiny")
    assert tiny.channels == 4 and tiny.layers == [3, 4, 5] and tiny.epochs == [2, 2, 2]
    assert tiny.skip_dropout == [0.0, 0.4, 0.7]  # the preset keeps the paper rates
    config = resolve_config("pdarts", "cifar10", epochs=[10], arch_frozen_epochs=[2, 3, 4], seed=None)
    assert config.epochs == [10, 10, 10] and config.arch_frozen_epochs == [2, 3, 4] and config.seed == 2


@pytest.mark.parametrize("overrides, message", [
    ({"epochs": [25, 25]}, r"^--layers 5 11 17 makes 3 stages, but --epochs has 2 values \(25 25\): give it 1 or 3$"),
    ({"skip_dropout": [0.1, 0.2, 0.3, 0.4]}, r"^--layers 5 11 17 makes 3 stages, but --skip-dropout has 4 values "
                                             r"\(0.1 0.2 0.3 0.4\): give it 1 or 3$"),
    ({"arch_frozen_epochs": [10, 10]}, r"^--layers 5 11 17 makes 3 stages, but --arch-frozen-epochs has 2 values"),
    # the message names the cause (--layers), not only the default it does not fit
    ({"layers": [5, 11]}, r"^--layers 5 11 makes 2 stages, but --skip-dropout has 3 values \(0.0 0.4 0.7\): give it 1 "
                          r"or 2$"),
    ({"layers": [5, 11], "skip_dropout": [0.1]}, r"^--layers 5 11 makes 2 stages, but --keep-ops has 2 values: give it 1 "),
    ({"keep_ops": [5]}, r"^--layers 5 11 17 makes 3 stages, but --keep-ops has 1 value: give it 2 \(ops kept per edge"),
    ({"keep_ops": [5, 1]}, r"--keep-ops 5 1: an edge keeps at least 2 ops \(so one besides none\) and never more"),
    ({"keep_ops": [0, 0]}, r"--keep-ops 0 0: an edge keeps at least 2 ops"),
    ({"keep_ops": [3, 5]}, r"--keep-ops 3 5: an edge keeps at least 2 ops .* never more than it had"),
    ({"arch_frozen_epochs": [25]}, r"--arch-frozen-epochs 25 leaves no epoch to train the architecture in a 25-epoch stage"),
    ({"epochs": [5, 25, 25]}, r"--arch-frozen-epochs 10 leaves no epoch to train the architecture in a 5-epoch stage"),
    ({"channels": 15}, r"--channels must be even and at least 2, got 15"),
    ({"channels": 0}, r"--channels must be even and at least 2, got 0"),
    ({"skip_dropout": [1.0]}, r"--skip-dropout rates must lie in \[0, 1\)"),
    ({"layers": [2, 11, 17]}, r"--layers: a supernet needs at least 3 cells"),
    ({"unknown_knob": 1}, r"unknown setting\(s\): unknown_knob"),
])
def test_config_errors(overrides, message):
    with pytest.raises(ConfigError, match=message):
        resolve_config("pdarts", "cifar10", **overrides)


@pytest.mark.parametrize("algorithm, overrides, message", [
    # ignored by the algorithm before, and recorded in config.json as if applied
    ("darts", {"skip_dropout": [0.5], "skip_limit": 0, "add_op_epochs": 3},
     r"^--algorithm darts does not use --skip-dropout, --skip-limit, --add-op-epochs \(settings of opp-darts and "
     r"pdarts\): drop them$"),
    ("opp-darts", {"keep_ops": [3]}, r"^--algorithm opp-darts does not use --keep-ops \(settings of pdarts\): drop them$"),
    ("pc-darts", {"opp_score_bn": "reference"}, r"^--algorithm pc-darts does not use --opp-score-bn \(settings of "
                                                r"opp-darts\)"),
    ("pdarts", {"opp_score_batches": 2}, r"^--algorithm pdarts does not use --opp-score-batches \(settings of opp-darts"),
    ("darts", {"layers": [5, 8]}, r"^--algorithm darts searches one stage: give --layers one value"),
    ("rf-darts", {"layers": [5, 8], "skip_dropout": [0.0]}, r"^--algorithm rf-darts does not use --skip-dropout"),
    ("darts", {"rf_train_classifier": True}, r"^--rf-train-classifier needs --random-features"),
])
def test_settings_the_algorithm_does_not_use(algorithm, overrides, message):
    with pytest.raises(ConfigError, match=message):
        resolve_config(algorithm, "cifar10", **overrides)


def test_settings_of_the_algorithm_itself_are_taken():
    assert resolve_config("pdarts", "cifar10", skip_dropout=[0.1], skip_limit=0, keep_ops=[4, 2]).keep_ops == [4, 2]
    config = resolve_config("opp-darts", "cifar10", add_op_epochs=3, opp_score_batches=2, opp_score_bn="reference")
    assert (config.add_op_epochs, config.opp_score_batches, config.opp_score_bn) == (3, 2, "reference")
    assert resolve_config("rf-darts", "cifar10", rf_train_classifier=True).rf_train_classifier is True


def test_unknown_algorithm_and_preset():
    with pytest.raises(ConfigError, match=r"unknown algorithm 'enas'; known: darts, pdarts"):
        resolve_config("enas", "cifar10")
    with pytest.raises(ConfigError, match=r"unknown preset 'huge'; choose one of paper, quick, tiny"):
        resolve_config("pdarts", "cifar10", "huge")
    with pytest.raises(ConfigError, match=r"unknown search space 'no_such_space'"):
        resolve_config("darts", "cifar10", space="no_such_space")


def test_configs_do_not_share_default_lists():
    first = resolve_config("pdarts", "cifar10")
    first.layers[0] = 3
    first.keep_ops[0] = 7
    second = resolve_config("pdarts", "cifar10")
    try:
        assert second.layers == [5, 11, 17] and second.keep_ops == [5, 3]
    finally:
        PDARTS.DEFAULTS["layers"][:] = [5, 11, 17]
        PDARTS.DEFAULTS["keep_ops"][:] = [5, 3]
