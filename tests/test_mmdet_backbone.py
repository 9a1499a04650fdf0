"""MMDetection backbone PDARTSNet: feature levels, freezing, norm_eval, ImageNet weights, shipped configs, errors."""
from __future__ import annotations

import functools
import http.server
import os
import pickle
import threading
from pathlib import Path

import pytest
import timm
import torch
from mmdet.registry import MODELS
from mmengine.config import Config
from mmengine.runner import CheckpointLoader
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from backbones.mmdet_pdarts import PDARTSNet
from pdarts_wild.genotype import GenotypeError
from pdarts_wild.networks import NetworkImageNet

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "detection_configs").glob("*.py"))
TINY = dict(type="PDARTSNet", genotype="PDARTS", init_channels=8, layers=5)
TINY_LEVELS = {0: (8, 4), 1: (32, 8), 2: (64, 16), 3: (128, 32)}  # level: (channels, stride); C=8, 4 nodes


def build(**kwargs: object) -> PDARTSNet:
    torch.manual_seed(0)
    return MODELS.build({**TINY, **kwargs})


def batch_norms(modules: list[nn.Module]) -> list[_BatchNorm]:
    return [m for module in modules for m in module.modules() if isinstance(m, _BatchNorm)]


@pytest.mark.parametrize("out_indices", [(0, 1, 2, 3), (1, 2, 3), (3,), (2, 0)])
def test_outputs_have_the_documented_strides_and_channels(out_indices):
    backbone = build(out_indices=out_indices).eval()
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        outs = backbone(x)
    levels = sorted(out_indices)
    assert [tuple(o.shape) for o in outs] == [
        (2, TINY_LEVELS[i][0], 64 // TINY_LEVELS[i][1], 96 // TINY_LEVELS[i][1]) for i in levels
    ]
    assert backbone.out_channels == tuple(TINY_LEVELS[i][0] for i in levels)
    assert backbone.out_strides == tuple(TINY_LEVELS[i][1] for i in levels)


@pytest.mark.parametrize("layers, taps", [(5, (0, 2, 4)), (8, (1, 4, 7)), (14, (3, 8, 13))])
def test_levels_tap_the_last_cell_of_each_stage(layers, taps):
    """Levels 1-3 are the cells before each reduction and the last cell, as in the spec's table for 14 cells."""
    with torch.device("meta"):
        backbone = PDARTSNet(layers=layers)
        net = NetworkImageNet("PDARTS", layers=layers)
    assert backbone.level_channels == (48, 192, 384, 768)
    assert backbone.level_strides == (4, 8, 16, 32)
    assert tuple(backbone.stage_bounds[k] - 1 for k in (1, 2, 3)) == taps
    assert [net.cell_strides[i] for i in taps] == [8, 16, 32]


def test_levels_equal_the_imagenet_network_features():
    """The backbone runs the same modules as NetworkImageNet: stem0's output and the tapped cells' outputs."""
    torch.manual_seed(1)
    net = NetworkImageNet("PDARTS", C=8, layers=5).eval()
    backbone = build().eval()
    backbone.load_state_dict({k: v for k, v in net.state_dict().items() if not k.startswith("classifier.")})
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        outs = backbone(x)
        expected = [net.stem0(x), *net.cell_outputs(x, [0, 2, 4])]
    for out, ref in zip(outs, expected, strict=True):
        torch.testing.assert_close(out, ref, rtol=0, atol=0)


TOP_MODULES = ["stem0", "stem1", *(f"cells.{i}" for i in range(5))]  # 5 cells: reductions at 1 and 3


@pytest.mark.parametrize("frozen_stages, n_frozen", [(-1, 0), (0, 2), (1, 3), (2, 5)])
def test_frozen_stages_stay_fixed_through_an_optimizer_step(frozen_stages, n_frozen):
    """0 freezes the stems, 1 also cell 0 (stride 8), 2 also cells 1-2 (stride 16)."""
    backbone = build(frozen_stages=frozen_stages, norm_eval=False)
    backbone.train()
    modules = dict(backbone.named_modules())
    frozen = [modules[name] for name in TOP_MODULES[:n_frozen]]
    trainable = [modules[name] for name in TOP_MODULES[n_frozen:]]
    assert all(not p.requires_grad for m in frozen for p in m.parameters())
    assert all(p.requires_grad for m in trainable for p in m.parameters())
    assert all(not bn.training for bn in batch_norms(frozen))
    assert all(bn.training for bn in batch_norms(trainable))

    modules = frozen + trainable
    states = [{k: v.clone() for k, v in m.state_dict().items()} for m in modules]
    optimizer = torch.optim.SGD([p for p in backbone.parameters() if p.requires_grad], lr=0.1)
    sum(o.mean() for o in backbone(torch.randn(2, 3, 64, 64))).backward()
    optimizer.step()
    unchanged = [all(torch.equal(v, old[k]) for k, v in m.state_dict().items()) for m, old in zip(modules, states)]
    assert unchanged == [True] * len(frozen) + [False] * len(trainable)  # weights and BN statistics alike


def test_frozen_stages_3_freezes_the_whole_backbone():
    backbone = build(frozen_stages=3, norm_eval=False).train()
    assert not any(p.requires_grad for p in backbone.parameters())
    assert not any(bn.training for bn in batch_norms([backbone]))


def test_norm_eval_keeps_batch_norm_statistics_fixed_in_train_mode():
    backbone = build(norm_eval=True).train()
    norms = batch_norms([backbone])
    assert norms and all(not bn.training for bn in norms)
    assert all(p.requires_grad for p in backbone.parameters())  # only the statistics are frozen
    means = [bn.running_mean.clone() for bn in norms]
    backbone(torch.randn(2, 3, 64, 64))
    assert all(torch.equal(bn.running_mean, m) for bn, m in zip(norms, means))
    assert all(bn.training for bn in batch_norms([build(norm_eval=False).train()]))


def test_norm_cfg_sync_bn_and_frozen_affine_weights():
    sync = build(norm_cfg=dict(type="SyncBN", requires_grad=True))
    assert all(isinstance(bn, nn.SyncBatchNorm) for bn in batch_norms([sync]))
    frozen_affine = build(norm_cfg=dict(type="BN", requires_grad=False))
    assert all(not p.requires_grad for bn in batch_norms([frozen_affine]) for p in bn.parameters())
    with pytest.raises(ValueError, match="norm_cfg type 'BN' or 'SyncBN'"):
        build(norm_cfg=dict(type="GN", num_groups=4))


def trained_network(genotype: str = "PDARTS") -> NetworkImageNet:
    """A tiny ImageNet network with an aux head and BN statistics that differ from their initial values."""
    torch.manual_seed(2)
    net = NetworkImageNet(genotype, C=8, layers=5, num_classes=10, auxiliary=True)
    with torch.no_grad():
        net.train()
        net.cell_outputs(torch.randn(4, 3, 64, 64), [4])
    return net.eval()


def authors_layout(net: NetworkImageNet) -> dict[str, object]:
    """The authors' released files: DataParallel keys, ``_ops``, a training-checkpoint wrapper (and, as
    PyTorch < 0.4.1 wrote them, no ``num_batches_tracked``)."""
    state = {
        f"module.{k}".replace(".ops.", "._ops."): v
        for k, v in net.state_dict().items()
        if not k.endswith("num_batches_tracked")
    }
    return {"epoch": 249, "state_dict": state, "best_acc_top1": 75.6, "optimizer": {"state": {}, "param_groups": []}}


def train_imagenet_layout(net: NetworkImageNet) -> dict[str, object]:
    """tools/train_imagenet.py files: the timm model's weights under ``state_dict``, plus ``arch``, ``model_args``."""
    args = dict(C=8, layers=5, num_classes=10, auxiliary=True)
    model = timm.create_model("pdarts_imagenet", **args)
    model.load_state_dict(net.state_dict())
    return {"state_dict": model.state_dict(), "arch": "pdarts_imagenet", "model_args": args}


LAYOUTS = {"authors": authors_layout, "train_imagenet": train_imagenet_layout, "bare": lambda net: net.state_dict()}


@pytest.mark.parametrize("layout", LAYOUTS)
def test_pretrained_init_cfg_maps_every_key(tmp_path, layout):
    net = trained_network()
    checkpoint = tmp_path / "imagenet.pth"
    torch.save(LAYOUTS[layout](net), checkpoint)
    if layout == "authors":
        assert any("._ops." in k for k in torch.load(checkpoint)["state_dict"])
    backbone = build(init_cfg=dict(type="Pretrained", checkpoint=str(checkpoint)))
    backbone.init_weights()
    source = net.state_dict()
    loaded = backbone.state_dict()
    assert set(loaded) == {k for k in source if not k.startswith(("classifier.", "auxiliary_head."))}
    for key, value in loaded.items():
        if not key.endswith("num_batches_tracked"):  # a counter, absent from the authors' files
            assert torch.equal(value, source[key]), key
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        outs = backbone.eval()(x)
        expected = [net.stem0(x), *net.cell_outputs(x, [0, 2, 4])]
    for out, ref in zip(outs, expected, strict=True):
        torch.testing.assert_close(out, ref, rtol=0, atol=0)


def test_pretrained_checkpoint_of_another_network_or_missing_file_is_refused(tmp_path):
    other = tmp_path / "darts_v2.pth"
    torch.save(trained_network("DARTS_V2").state_dict(), other)
    with pytest.raises(ValueError, match="does not match this network"):
        build(init_cfg=dict(type="Pretrained", checkpoint=str(other))).init_weights()
    with pytest.raises(FileNotFoundError, match="absent.pth"):
        build(init_cfg=dict(type="Pretrained", checkpoint=str(tmp_path / "absent.pth"))).init_weights()


class Payload:
    """A pickle that runs a command when loaded without weights_only (it touches a file)."""

    def __init__(self, mark: Path) -> None:
        self.mark = mark

    def __reduce__(self):
        return os.system, (f"touch {self.mark}",)


def test_remote_checkpoint_is_read_weights_only(tmp_path, monkeypatch):
    """An http:// checkpoint (here from a local server) goes through MMEngine's load_url, which torch.hub reads with
    weights_only=False unless told otherwise: the pickle's command must not run, neither for init_cfg nor load_from."""
    mark = tmp_path / "ran"
    served = tmp_path / "served"
    served.mkdir()
    torch.save({"state_dict": {"x": Payload(mark)}}, served / "evil.pth")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/evil.pth"
    try:
        with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
            build(init_cfg=dict(type="Pretrained", checkpoint=url)).init_weights()
        with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
            CheckpointLoader.load_checkpoint(url, map_location="cpu")  # what load_from and mim test use
    finally:
        server.shutdown()
    assert not mark.exists()


@pytest.mark.parametrize("out_indices", [(1, 4), (), (2, 2), (-1,)])
def test_bad_out_indices_fail_when_the_model_is_built(out_indices):
    with pytest.raises(ValueError, match=r"out_indices must be distinct feature levels from \(0, 1, 2, 3\)"):
        build(out_indices=out_indices)


def test_missing_genotype_file_fails_when_the_model_is_built(tmp_path):
    missing = tmp_path / "runs" / "genotype.json"
    with pytest.raises(GenotypeError, match="neither a published genotype .* nor an existing genotype file"):
        build(genotype=str(missing))


@pytest.mark.parametrize("config", CONFIGS, ids=[c.stem for c in CONFIGS])
def test_shipped_config_neck_matches_the_backbone(config):
    """The neck's in_channels are the backbone's real output channels (PDARTSNet, and the baselines' MMDetection
    ResNet / MobileNetV2); FPN strides equal the head's anchor strides."""
    cfg = Config.fromfile(config)
    backbone_cfg = {**cfg.model.backbone, "init_cfg": None}
    backbone = MODELS.build(backbone_cfg)
    backbone.eval()  # MMDetection's ResNet.train() returns None
    with torch.no_grad():
        outs = backbone(torch.randn(1, 3, 64, 64))
    neck = cfg.model.neck
    strides = [64 // o.shape[-1] for o in outs]
    assert list(neck.in_channels) == [o.shape[1] for o in outs] and strides == sorted(strides)
    if cfg.model.backbone.type == "PDARTSNet":
        assert list(neck.in_channels) == list(backbone.out_channels) and strides == list(backbone.out_strides)
    fpn = strides[neck.get("start_level", 0) :]
    fpn += [fpn[-1] * 2 ** (k + 1) for k in range(neck.num_outs - len(fpn))]
    head = cfg.model.get("rpn_head", cfg.model.get("bbox_head"))
    assert fpn == list(head.anchor_generator.strides)
    if "roi_head" in cfg.model:
        assert strides == list(cfg.model.roi_head.bbox_roi_extractor.featmap_strides)
