"""RF-DARTS / RF-PCDARTS: only BatchNorm affine parameters and the architecture learn."""
from __future__ import annotations

import sys
from pathlib import Path

import torch

from pdarts_wild.spaces import get_space
from pdarts_wild.supernet import Supernet

SPACE = get_space("darts")
ROOT = Path(__file__).resolve().parents[1]


def test_trainable_parameters_are_exactly_bn_affine_and_alphas() -> None:
    model = Supernet(SPACE, SPACE.initial_candidates(), 10, 4, 3, affine=True)
    model.freeze_random_features()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    bn = {f"{n}.{k}" for n, m in model.named_modules() if isinstance(m, torch.nn.BatchNorm2d) for k in ("weight", "bias")}
    assert trainable == bn | {"alphas.normal", "alphas.reduce"}
    assert "stem.1.weight" in trainable and "cells.0.edges.2.ops.0.1.weight" in trainable  # pool BN is affine
    assert not any(n.startswith("classifier") for n in trainable)
    with_classifier = Supernet(SPACE, SPACE.initial_candidates(), 10, 4, 3, affine=True)
    with_classifier.freeze_random_features(train_classifier=True)
    assert "classifier.weight" in {n for n, p in with_classifier.named_parameters() if p.requires_grad}


def test_search_keeps_every_conv_bit_identical(tmp_path: Path, monkeypatch) -> None:
    sys.path.insert(0, str(ROOT / "tools"))
    import search as search_tool
    from pdarts_wild.search import Search

    snapshots = {}
    real_build = Search._build

    def build_and_snapshot(self, *args):
        real_build(self, *args)
        snapshots["before"] = {n: p.detach().clone() for n, p in self.model.named_parameters()}
        snapshots["model"] = self.model

    monkeypatch.setattr(Search, "_build", build_and_snapshot)
    out = tmp_path / "rf"
    assert search_tool.main(["--algorithm", "rf-darts", "--dataset", "digits", "--preset", "tiny", "--device", "cpu",
                             "--no-progress", "--out", str(out)]) == 0
    after = dict(snapshots["model"].named_parameters())
    convs = {f"{n}.weight" for n, m in snapshots["model"].named_modules() if isinstance(m, torch.nn.Conv2d)}
    assert convs and all(torch.equal(snapshots["before"][n], after[n]) for n in convs)
    assert torch.equal(snapshots["before"]["classifier.weight"], after["classifier.weight"])
    bn = [n for n in after if n.endswith(("weight", "bias")) and n not in convs and not n.startswith("classifier")]
    assert bn and all(not torch.equal(snapshots["before"][n], after[n]) for n in bn if "alphas" not in n)
    assert not torch.equal(snapshots["before"]["alphas.normal"], after["alphas.normal"])
    assert (out / "genotype.json").exists()
