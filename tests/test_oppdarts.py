"""OPP-DARTS: ops added to the supernet in place, the largest-loss rule, the schedule, and its search."""
from __future__ import annotations

import copy
import json
import math
import sys
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

from kill_at import assert_log_replays, assert_no_file_lost, run_killed
from pdarts_wild.config import resolve_config
from pdarts_wild.genotype import read_genotype_file
from pdarts_wild.search import Search
from pdarts_wild.spaces import CELL_TYPES, get_space
from pdarts_wild.strategies import Growth
from pdarts_wild.strategies.oppdarts import OPPDARTS, PARAMETRIC_OPS
from pdarts_wild.supernet import Supernet

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import search as search_tool  # noqa: E402  (tools/search.py)

TINY = ["--algorithm", "opp-darts", "--dataset", "digits", "--preset", "tiny", "--device", "cpu", "--no-progress"]
SPACE = get_space("darts")
EDGES = SPACE.num_edges


def single_op_supernet(op: str = "sep_conv_3x3", seed: int = 0) -> Supernet:
    torch.manual_seed(seed)
    return Supernet(SPACE, {cell: [(op,)] * EDGES for cell in CELL_TYPES}, num_classes=10, channels=4, layers=3)


def fixed_batch(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(16, 3, 8, 8, generator=g), torch.randint(0, 10, (16,), generator=g)


# ------------------------------------------------------------------------------------------- add_op


@pytest.mark.parametrize("op", ["dil_conv_5x5", "max_pool_3x3", "none", "skip_connect"])
def test_add_op_keeps_weights_and_alphas_and_adds_one_op_per_edge(op: str) -> None:
    model = single_op_supernet()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    old_modules = [edge.ops[0] for cell in model.cells for edge in cell.edges]
    old_params = [[p.detach().clone() for p in m.parameters()] for m in old_modules]
    model.add_op(op)
    for cell in CELL_TYPES:
        assert model.candidates[cell] == [SPACE.ordered(("sep_conv_3x3", op))] * EDGES
        mask = getattr(model, f"active_{cell}")
        assert mask[:, SPACE.primitives.index(op)].all() and mask.sum() == 2 * EDGES
        assert torch.equal(model.alphas[cell][:, SPACE.primitives.index("sep_conv_3x3")],
                           before[f"alphas.{cell}"][:, SPACE.primitives.index("sep_conv_3x3")])
        assert all(len(edge) == 2 for edge in model.alpha_table()[cell])
    edges = [edge for cell in model.cells for edge in cell.edges]
    assert all(len(edge.ops) == (1 if op == "none" else 2) for edge in edges)
    assert all(any(m is old for m in edge.ops) for edge, old in zip(edges, old_modules))  # same modules, untouched
    for name, p in model.named_parameters():
        if "alphas" not in name and ".edges." not in name:
            assert torch.equal(p, before[name])  # stem, preprocessing, classifier
    assert all(torch.equal(p, q) for m, old in zip(old_modules, old_params) for p, q in zip(m.parameters(), old))
    # a supernet built with the grown op sets has the same parameters and buffers: resume can load the state
    fresh = Supernet(SPACE, model.candidates, num_classes=10, channels=4, layers=3)
    assert {k: v.shape for k, v in fresh.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}
    fresh.load_state_dict(model.state_dict())
    x, _ = fixed_batch()
    model.eval(), fresh.eval()
    assert torch.equal(model(x), fresh(x))
    with pytest.raises(ValueError, match="already holds"):
        model.add_op(op)


# ------------------------------------------------------------------------------------- the loss rule


def test_added_op_is_the_one_with_the_largest_training_loss() -> None:
    """Replay the strategy's draws: each candidate's loss computed here, independently; the choice is the argmax."""
    model = single_op_supernet()
    x, y = fixed_batch()

    @torch.no_grad()
    def train_loss(m: Supernet) -> float:
        m.train()
        return F.cross_entropy(m(x), y).item()

    strategy = OPPDARTS(resolve_config("opp-darts", "digits", "tiny"))
    rng = torch.get_rng_state()
    grown = strategy.grow(1, Growth(model, build=None, loss=lambda m: train_loss(copy.deepcopy(m))))  # type: ignore[arg-type]
    assert grown is not None
    torch.set_rng_state(rng)
    remaining = ["none", "max_pool_3x3", "avg_pool_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5"]
    trials, losses = {}, {}
    for op in remaining:
        trials[op] = copy.deepcopy(model)
        trials[op].add_op(op)
        losses[op] = train_loss(copy.deepcopy(trials[op]))
    assert len(set(losses.values())) == len(losses)  # no tie: the rule alone decides
    expected = max(losses, key=losses.__getitem__)
    assert expected != remaining[0]  # not merely the first candidate
    assert grown.candidates["normal"] == [SPACE.ordered(("sep_conv_3x3", expected))] * EDGES
    # the kept supernet is the scored copy: same fresh weights and alpha column
    for (name, p), q in zip(grown.state_dict().items(), trials[expected].state_dict().values()):
        assert torch.equal(p, q), name
    assert model.candidates["normal"][0] == ("sep_conv_3x3",)  # the supernet passed in is left as it was


def fake_growth(model: Supernet, scores: dict[str, float]) -> Growth:
    """A loss that is the score of the op the supernet has beyond ``model``'s (ties and schedule tests)."""
    held = set(model.candidates["normal"][0])

    def loss(m: Supernet) -> float:
        (extra,) = set(m.candidates["normal"][0]) - held if len(m.candidates["normal"][0]) > 1 else m.candidates["normal"][0]
        return scores[extra]

    def build(candidates: dict) -> Supernet:
        return Supernet(SPACE, candidates, num_classes=10, channels=4, layers=3)

    return Growth(model, build, loss)


def test_start_is_the_parametric_op_with_the_largest_init_loss_ties_keep_the_earlier() -> None:
    strategy = OPPDARTS(resolve_config("opp-darts", "digits", "tiny"))
    scores = {"sep_conv_3x3": 1.0, "sep_conv_5x5": 2.0, "dil_conv_3x3": 3.0, "dil_conv_5x5": 3.0}
    start = strategy.grow(0, fake_growth(single_op_supernet(), scores))
    assert start is not None and start.candidates["reduce"] == [("dil_conv_3x3",)] * EDGES


def test_schedule_adds_one_op_per_add_op_epochs_and_skip_connect_last() -> None:
    config = resolve_config("opp-darts", "digits", "tiny", add_op_epochs=2)
    strategy = OPPDARTS(config)
    model = single_op_supernet("dil_conv_5x5")
    order = []
    for epoch in range(1, 20):
        scores = {op: float(i) for i, op in enumerate(SPACE.primitives)}  # the later op in the list is louder
        held = model.candidates["normal"][0]
        grown = strategy.grow(epoch, fake_growth(model, scores))
        if grown is None:
            continue
        assert epoch % 2 == 0
        order.append(next(op for op in grown.candidates["normal"][0] if op not in held))
        assert all(len(e) == len(held) + 1 for c in CELL_TYPES for e in grown.candidates[c])
        model = grown
    assert order == ["dil_conv_3x3", "sep_conv_5x5", "sep_conv_3x3", "avg_pool_3x3", "max_pool_3x3", "none",
                     "skip_connect"]


# ----------------------------------------------------------------------------------------- scoring


def test_search_scoring_loss_is_train_mode_mean_and_restores_bn_statistics(tmp_path: Path) -> None:
    config = resolve_config("opp-darts", "digits", "tiny")
    search = Search(config, tmp_path, torch.device("cpu"))
    model = search._supernet(search.plan[0], {cell: [("sep_conv_3x3",)] * EDGES for cell in CELL_TYPES})
    model.eval()
    buffers = [b.clone() for b in model.buffers()]
    torch.manual_seed(5)  # the training half's augmentation draws from it
    loss = search.data.train_loss(model, 3)
    assert all(torch.equal(b, s) for b, s in zip(model.buffers(), buffers)) and not model.training
    torch.manual_seed(5)
    loader = search.data.loader(search.data.weights, 3, 2)
    total, n = 0.0, 0
    with torch.no_grad():
        for (x, y), _ in zip(loader, range(config.opp_score_batches)):
            check = copy.deepcopy(model).train()
            total += F.cross_entropy(check(x.to(memory_format=search.memory_format)), y, reduction="sum").item()
            n += y.numel()
    assert loss == pytest.approx(total / n, rel=1e-6)


# -------------------------------------------------------------------------------------- the search


@pytest.fixture(scope="module")
def opp_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("opp") / "run"
    assert search_tool.main([*TINY, "--out", str(out)]) == 0
    return out


def test_search_grows_one_op_per_stage_skip_last_and_writes_a_genotype(opp_run: Path) -> None:
    genotype, record = read_genotype_file(opp_run / "genotype.json")
    assert record["algorithm"] == "opp-darts" and len(genotype.normal) == 8
    growth = record["op_growth"]
    assert [g["epoch"] for g in growth] == list(range(8))  # tiny: an addition before every epoch
    assert [len(g["ops"]) for g in growth] == list(range(1, 9))
    assert growth[0]["ops"][0] in PARAMETRIC_OPS
    assert "skip_connect" not in growth[-2]["ops"] and "skip_connect" in growth[-1]["ops"]
    assert set(growth[-1]["ops"]) == set(SPACE.primitives)
    for cell in CELL_TYPES:
        assert all(len(edge) == 8 for edge in record["alphas"][cell])
    log = (opp_run / "search.log").read_text()
    assert log.count("OPP-DARTS: adding") == 6 + 5 + 4 + 3 + 2 + 1 and log.count("OPP-DARTS start:") == 4


def test_each_addition_restarts_the_cosine_from_the_current_lr(opp_run: Path) -> None:
    config = json.loads((opp_run / "config.json").read_text())
    history = torch.load(opp_run / "checkpoint.pt", weights_only=True)["history"]
    lrs, epochs, lr_min = [h["lr"] for h in history], config["epochs"][0], config["lr_min"]
    assert lrs[0] == config["lr"]
    for e in range(len(lrs) - 1):  # the cosine restarted at epoch e runs over the epochs - e epochs left
        assert lrs[e + 1] == pytest.approx(lr_min + (lrs[e] - lr_min) * (1 + math.cos(math.pi / (epochs - e))) / 2)


def test_killed_while_scoring_and_while_checkpointing_resumes_bit_identical(tmp_path: Path, opp_run: Path) -> None:
    """kill -9 while epoch 4's addition scores its 2nd candidate (scores 1-4 start, 5-10 epoch 2, 11-15 epoch 3,
    16-19 epoch 4), then, resumed after epoch 3, while the checkpoint of epoch 6 is half written; resumed after epoch 5
    (its addition replayed): the uninterrupted run's op growth, alphas, files, TensorBoard scalars and log lines."""
    out = tmp_path / "killed"
    args = [*TINY, "--out", str(out)]
    resume = [*args, "--resume"]
    run_killed("search.py", [(args, "call:pdarts_wild.search_data:SearchData.train_loss:17"),
                             (resume, "save:checkpoint.pt.tmp:3"),
                             (resume, None)], tmp_path)
    resumed, reference = (json.loads((o / "genotype.json").read_text()) for o in (out, opp_run))
    assert resumed["op_growth"] == reference["op_growth"] and resumed["genotype"] == reference["genotype"]
    assert resumed["alphas"] == reference["alphas"]  # bit for bit
    assert_no_file_lost(out, opp_run)
    assert_log_replays(out, opp_run, "search.log")


def test_second_order_search_grows_too(tmp_path: Path) -> None:
    out = tmp_path / "unrolled"
    assert search_tool.main([*TINY, "--unrolled", "--epochs", "3", "--out", str(out)]) == 0
    _, record = read_genotype_file(out / "genotype.json")
    assert [len(g["ops"]) for g in record["op_growth"]] == [1, 2, 3]
    assert all(len(edge) == 3 for edge in record["alphas"]["normal"])


def test_reference_scoring_runs_trained_cells_in_eval_mode_and_the_new_op_in_train_mode() -> None:
    """--opp-score-bn reference: as the authors' code, the copy's trained cells use running statistics
    (eval mode), the stem and the added op's modules batch statistics; the default scores in train mode."""
    model = single_op_supernet()
    model.train()
    modes: dict[str, tuple[bool, bool, bool, bool]] = {}

    def loss(m: Supernet) -> float:
        extra = next(op for op in m.candidates["normal"][0] if op != "sep_conv_3x3")
        edge = m.cells[0].edges[0]
        new = edge.ops[edge.computed.index(edge.op_names.index(extra))] if extra != "none" else None
        old = edge.ops[edge.computed.index(edge.op_names.index("sep_conv_3x3"))]
        modes[extra] = (m.stem.training, old.training, m.cells[0].preprocess1.training,
                        True if new is None else new.training)
        return 0.0

    reference = OPPDARTS(resolve_config("opp-darts", "digits", "tiny", opp_score_bn="reference"))
    reference.grow(1, Growth(model, build=None, loss=loss))  # type: ignore[arg-type]
    assert modes["dil_conv_3x3"] == (True, False, False, True) and modes["max_pool_3x3"] == (True, False, False, True)
    default = OPPDARTS(resolve_config("opp-darts", "digits", "tiny"))
    default.grow(1, Growth(model, build=None, loss=loss))  # type: ignore[arg-type]
    assert modes["dil_conv_3x3"] == (True, True, True, True)
    assert model.training and all(m.training for m in model.modules())  # the supernet passed in is untouched


def test_reference_scoring_keeps_the_running_statistics_it_updates(tmp_path: Path) -> None:
    config = resolve_config("opp-darts", "digits", "tiny", opp_score_bn="reference")
    search = Search(config, tmp_path, torch.device("cpu"))
    model = search._supernet(search.plan[0], {cell: [("sep_conv_3x3",)] * EDGES for cell in CELL_TYPES})
    before = model.stem[1].running_mean.clone()
    search.data.train_loss(model, 0)
    assert not torch.equal(model.stem[1].running_mean, before)
