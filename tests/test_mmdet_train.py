"""End to end on a generated COCO folder: the shipped detection configs train, test and resume on CPU.

RetinaNet runs through the real ``mim train mmdet`` / ``mim test mmdet`` commands (subprocesses, no
``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD``); Faster R-CNN through MMEngine's ``Runner.from_cfg``, as
mmdet's ``tools/train.py`` does. Each run inherits the shipped config and only shrinks it. Our hook's
metrics.json, its refusal of an empty evaluation and of a work dir of another run, the classes read from
the annotation file and the baseline configs with converted timm weights are checked on the way.
"""
from __future__ import annotations

import json
import math
import os
import pickle
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.logging import HistoryBuffer
from mmengine.runner import Runner

from mmdet.registry import DATASETS, MODELS

from backbones.mmdet_datasets import CocoFormatDataset
from backbones.mmdet_metrics import WorkDirError
from pdarts_wild.checkpoints import CheckpointError
from backbones.mmdet_pdarts import PDARTSNet  # the import allow-lists MMEngine's checkpoint classes
from backbones.timm_convert import ConversionError, mobilenetv2_to_mmdet, resnet_from_timm
from datagen import write_coco
from pdarts_wild.networks import count_parameters
from pdarts_wild.zoo import resolve_genotype

ROOT = Path(__file__).resolve().parents[1]
MIM = Path(sys.executable).parent / "mim"
CLASSES = ("a", "b", "c")
ITERS = 4


def tiny_overrides(data_root: Path, out_indices: tuple[int, ...], heads: str, classes: bool = True) -> str:
    """Config text that shrinks a shipped config: tiny backbone and ``heads``, 128x96 images, a few iterations;
    ``classes=False`` leaves the class names to the annotation file (CocoFormatDataset)."""
    channels = list(PDARTSNet(init_channels=8, layers=5, out_indices=out_indices).out_channels)
    root = f"{data_root}/"
    metainfo = "metainfo=dict(classes=classes), " if classes else ""
    return f"""
classes = {CLASSES!r}
model = dict(
    backbone=dict(init_channels=8, layers=5, init_cfg=None),
    neck=dict(in_channels={channels}, out_channels=32),
    {heads})
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=(128, 96), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(128, 96), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False, dataset=dict(
    data_root={root!r}, {metainfo}pipeline=train_pipeline))
val_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False, dataset=dict(
    data_root={root!r}, {metainfo}pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file={root + 'annotations/instances_val2017.json'!r})
test_evaluator = val_evaluator
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters={ITERS}, val_interval={ITERS * 10})
param_scheduler = [dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=2)]
optim_wrapper = dict(optimizer=dict(lr=0.002))
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(by_epoch=False, interval={ITERS}))
log_processor = dict(by_epoch=False)
"""


# Heads for 32-channel FPN levels and 3 classes; score_thr 0.0 lets an untrained detector's boxes reach COCOeval.
RETINANET = """bbox_head=dict(num_classes=3, in_channels=32, feat_channels=32, stacked_convs=1),
    test_cfg=dict(score_thr=0.0)"""
FASTER_RCNN = """rpn_head=dict(in_channels=32, feat_channels=32),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=32),
        bbox_head=dict(in_channels=32, fc_out_channels=64, num_classes=3)),
    test_cfg=dict(rcnn=dict(score_thr=0.0))"""


def write_config(folder: Path, shipped: str, out_indices: tuple[int, ...], heads: str, data_root: Path,
                 classes: bool = True) -> Path:
    """A config inheriting the shipped one (``_base_``), shrunk by :func:`tiny_overrides`."""
    path = folder / f"tiny_{Path(shipped).stem}.py"
    base = f"_base_ = {str(ROOT / 'detection_configs' / shipped)!r}\n"
    path.write_text(base + tiny_overrides(data_root, out_indices, heads, classes))
    return path


def mim(*args: str, cwd: Path, succeed: bool = True) -> str:
    """Run ``mim`` as a user would (no weights_only escape hatch in the environment); its combined output."""
    env = {k: v for k, v in os.environ.items() if k != "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"}
    env["OMP_NUM_THREADS"] = "1"
    result = subprocess.run(
        [str(MIM), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    output = result.stdout + result.stderr
    assert (result.returncode == 0) == succeed, output[-4000:]
    return output


def losses(work_dir: Path) -> dict[int, float]:
    """iteration -> total loss, from the runs' ``vis_data/scalars.json`` logs."""
    found = {}
    for log in work_dir.glob("*/vis_data/scalars.json"):
        for line in log.read_text().splitlines():
            record = json.loads(line)
            if "loss" in record:
                found[record["iter"]] = record["loss"]
    return found


@pytest.fixture(scope="module")
def coco(tmp_path_factory) -> Path:
    return write_coco(tmp_path_factory.mktemp("coco"), n_images=6, classes=CLASSES)


@pytest.fixture(scope="module")
def retinanet_run(tmp_path_factory, coco) -> tuple[Path, Path]:
    """``mim train mmdet`` for ITERS iterations: (config, work dir)."""
    folder = tmp_path_factory.mktemp("retinanet")
    config = write_config(folder, "retinanet_pdarts_fpn_1x_coco.py", (1, 2, 3), RETINANET, coco)
    work_dir = folder / "work"
    mim("train", "mmdet", str(config), "--work-dir", str(work_dir), cwd=folder)
    return config, work_dir


def test_mim_train_retinanet_writes_a_checkpoint_with_finite_losses(retinanet_run):
    _, work_dir = retinanet_run
    logged = losses(work_dir)
    assert sorted(logged) == list(range(1, ITERS + 1))
    assert all(math.isfinite(v) for v in logged.values())
    assert (work_dir / f"iter_{ITERS}.pth").is_file()
    assert (work_dir / "last_checkpoint").read_text().strip().endswith(f"iter_{ITERS}.pth")


def test_mim_test_retinanet_reports_coco_map(retinanet_run, tmp_path):
    config, work_dir = retinanet_run
    output = mim("test", "mmdet", str(config), "--checkpoint", str(work_dir / f"iter_{ITERS}.pth"),
                 "--work-dir", str(tmp_path), cwd=config.parent)  # fmt: skip
    assert "bbox_mAP_copypaste" in output
    ap = float(re.search(r"coco/bbox_mAP: (-?[\d.]+)", output).group(1))
    assert 0.0 <= ap <= 1.0
    # metrics.json: MMDetection's numbers (as MMEngine's JSON log holds them) in percent, with the run's identity
    record = json.loads((tmp_path / "metrics.json").read_text())
    logged = json.loads((tmp_path / record["source"]).read_text())
    names = ["bbox_mAP", "bbox_mAP_50", "bbox_mAP_75", "bbox_mAP_s", "bbox_mAP_m", "bbox_mAP_l"]
    assert [m["name"] for m in record["metrics"]] == names
    for m in record["metrics"]:
        assert m["dataset"] == "instances_val2017" and m["higher_is_better"]
        value = logged[f"coco/{m['name']}"]  # COCOeval's -1: no ground-truth box of that size
        assert m["value"] is None if value == -1 else m["value"] == pytest.approx(100 * value)
    model = MODELS.build(Config.fromfile(config).model)
    expected = {"tool": "mmdet", "model": "PDARTSNet", "detector": "RetinaNet", "epochs": 0, "iters": ITERS,
                "genotype": resolve_genotype("PDARTS").to_string(), "input_size": [96, 128],
                "params": count_parameters(model), "checkpoint": str(work_dir / f"iter_{ITERS}.pth")}
    assert {k: record[k] for k in expected} == expected and record["macs"] > 0


def test_mim_test_without_detections_fails_and_says_why(retinanet_run, tmp_path):
    """No score passes a threshold of 1.0 (as an untrained detector's stay below the default 0.05): no COCO result,
    and that is no success."""
    config, work_dir = retinanet_run
    output = mim("test", "mmdet", str(config), "--checkpoint", str(work_dir / f"iter_{ITERS}.pth"),
                 "--work-dir", str(tmp_path), "--cfg-options", "model.test_cfg.score_thr=1.0",
                 cwd=config.parent, succeed=False)  # fmt: skip
    assert "EmptyEvaluationError: the test gave no COCO bbox mAP" in output
    assert not (tmp_path / "metrics.json").exists()


def test_mim_train_resume_continues_from_the_checkpoint(retinanet_run, tmp_path):
    config, first_run = retinanet_run
    work_dir = shutil.copytree(first_run, tmp_path / "work")  # last_checkpoint names first_run's iter_4.pth
    output = mim("train", "mmdet", str(config), "--work-dir", str(work_dir), "--resume",
                 "--cfg-options", f"train_cfg.max_iters={ITERS + 2}", cwd=config.parent)  # fmt: skip
    assert f"resumed epoch: 0, iter: {ITERS}" in output
    assert (work_dir / f"iter_{ITERS + 2}.pth").is_file()
    logged = losses(work_dir)
    assert sorted(logged) == list(range(1, ITERS + 3)) and all(math.isfinite(v) for v in logged.values())


def test_mmengine_checkpoint_loads_with_weights_only(retinanet_run):
    """Importing the backbone module allow-lists what MMEngine checkpoints hold (done at the top of this file)."""
    _, work_dir = retinanet_run
    checkpoint = torch.load(work_dir / f"iter_{ITERS}.pth", weights_only=True)
    assert {"meta", "state_dict", "message_hub", "optimizer", "param_schedulers"} <= set(checkpoint)
    buffer = checkpoint["message_hub"]["log_scalars"]["train/loss"]
    assert isinstance(buffer, HistoryBuffer) and len(buffer.data[0]) == ITERS
    assert buffer.statistics("mean") == pytest.approx(buffer.data[0].mean())


class GetattrOfAnotherName:
    """Pickles as ``getattr(HistoryBuffer, '__init__')``: the getattr stand-in must refuse it."""

    def __reduce__(self):
        return getattr, (HistoryBuffer, "__init__")


@pytest.mark.parametrize(
    "payload, message",
    [
        (Config(dict(a=1)), "Unsupported global"),
        (GetattrOfAnotherName(), "refuses getattr"),
        (np.array([1, "x"], dtype=object), "ObjectDType"),
    ],
    ids=["another-class", "another-getattr", "object-array"],
)
def test_weights_only_still_refuses_everything_else(tmp_path, payload, message):
    path = tmp_path / "hostile.pth"
    torch.save({"state_dict": {}, "payload": payload}, path)
    with pytest.raises(pickle.UnpicklingError, match=message):
        torch.load(path, weights_only=True)


def test_runner_trains_and_tests_faster_rcnn(tmp_path, coco):
    """The same steps as mmdet's tools/train.py (Config.fromfile, then Runner.from_cfg), then the test loop; the
    classes come from the annotation file (no metainfo in the config)."""
    config = write_config(tmp_path, "faster-rcnn_pdarts_fpn_1x_coco.py", (0, 1, 2, 3), FASTER_RCNN, coco,
                          classes=False)
    cfg = Config.fromfile(config)
    cfg.work_dir = str(tmp_path / "work")
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert runner.train_dataloader.dataset.metainfo["classes"] == CLASSES
    history = runner.message_hub.get_scalar("train/loss").data[0]
    assert len(history) == ITERS and all(math.isfinite(v) for v in history)
    assert (tmp_path / "work" / f"iter_{ITERS}.pth").is_file()
    metrics = runner.test()
    assert {"coco/bbox_mAP", "coco/bbox_mAP_50"} <= set(metrics)
    assert 0.0 <= metrics["coco/bbox_mAP"] <= 1.0
    record = json.loads((tmp_path / "work" / "metrics.json").read_text())
    assert record["detector"] == "FasterRCNN" and record["iters"] == ITERS
    assert record["metrics"][0]["value"] == pytest.approx(100 * metrics["coco/bbox_mAP"])


def test_work_dir_of_another_run_is_refused(retinanet_run, tmp_path):
    """Another genotype never trains or tests into a run's work dir; the same one trains there only with --resume."""
    config, first_run = retinanet_run
    work_dir = shutil.copytree(first_run, tmp_path / "work")
    before = {p.name: p.read_bytes() for p in work_dir.glob("*.pth")}
    for genotype, channels, resume, message in (
            ("DARTS_V2", 8, True, "holds a run of another backbone, genotype or size"),
            ("PDARTS", 16, True, "holds a run of another backbone, genotype or size"),  # MMEngine: a shape error
            ("PDARTS", 8, False, "holds a run (run.json): add --resume")):
        cfg = Config.fromfile(config)
        cfg.work_dir, cfg.resume, cfg.model.backbone.genotype = str(work_dir), resume, genotype
        cfg.model.backbone.init_channels = channels
        with pytest.raises(WorkDirError, match=re.escape(message)):
            Runner.from_cfg(cfg).train()
    assert {p.name: p.read_bytes() for p in work_dir.glob("*.pth")} == before
    (work_dir / "run.json").write_text("")  # not ours: written atomically
    cfg = Config.fromfile(config)
    cfg.work_dir, cfg.resume = str(work_dir), True
    with pytest.raises(WorkDirError, match=re.escape(f"{work_dir / 'run.json'} cannot be read")):
        Runner.from_cfg(cfg).train()


def test_a_test_of_weights_that_do_not_fit_is_refused(retinanet_run, tmp_path):
    """MMEngine loads what fits and warns; the test would score a half-random detector and write metrics.json."""
    config, work_dir = retinanet_run
    cfg = Config.fromfile(config)
    cfg.work_dir, cfg.load_from, cfg.model.backbone.genotype = str(tmp_path), str(work_dir / f"iter_{ITERS}.pth"), \
        "DARTS_V2"
    with pytest.raises(CheckpointError, match=re.escape(f"iter_{ITERS}.pth does not match this network")):
        Runner.from_cfg(cfg).test()
    assert not (tmp_path / "metrics.json").exists()


def test_coco_format_dataset_takes_its_classes_from_the_annotation_file(tmp_path):
    root = write_coco(tmp_path, n_images=2, classes=("rectangle", "blob"))
    common = dict(data_root=str(root), ann_file="annotations/instances_val2017.json",
                  data_prefix=dict(img="val2017/"), pipeline=[])
    ours = DATASETS.build(dict(type="CocoFormatDataset", **common))
    assert isinstance(ours, CocoFormatDataset) and ours.metainfo["classes"] == ("rectangle", "blob")
    labels = [i["bbox_label"] for d in ours.load_data_list() for i in d["instances"]]
    assert labels and set(labels) <= {0, 1}
    coco = DATASETS.build(dict(type="CocoDataset", **common))  # COCO's 80 names: none of the file's categories
    assert not [i for d in coco.load_data_list() for i in d["instances"]]
    given = DATASETS.build(dict(type="CocoFormatDataset", metainfo=dict(classes=("blob",)), **common))
    assert given.metainfo["classes"] == ("blob",)  # configured classes are kept


@pytest.mark.parametrize("config, arch, convert", [
    ("retinanet_r50_fpn_1x_coco.py", "resnet50", resnet_from_timm),
    ("faster-rcnn_r50_fpn_1x_coco.py", "resnet50", resnet_from_timm),
    ("retinanet_mobilenetv2_fpn_1x_coco.py", "mobilenetv2_100", mobilenetv2_to_mmdet),
    ("faster-rcnn_mobilenetv2_fpn_1x_coco.py", "mobilenetv2_100", mobilenetv2_to_mmdet),
])
def test_baseline_configs_build_from_timm_checkpoints(config, arch, convert, timm_checkpoints):
    """Every backbone weight comes from the converted timm file, and the FPN takes the backbone's channels."""
    cfg = Config.fromfile(ROOT / "detection_configs" / config)
    assert "MetricsJsonHook" in {h["type"] for h in cfg.custom_hooks}
    assert cfg.test_dataloader.dataset.type == "CocoFormatDataset"
    cfg.model.backbone.init_cfg.checkpoint = str(timm_checkpoints[arch])
    model = MODELS.build(cfg.model)
    model.backbone.init_weights()
    timm_state = torch.load(timm_checkpoints[arch], weights_only=True)["state_dict"]
    expected = convert(timm_state, model.backbone.state_dict())
    assert model.backbone.state_dict().keys() == expected.keys()
    assert all(torch.equal(v, expected[k]) for k, v in model.backbone.state_dict().items())
    features = model.eval().extract_feat(torch.randn(1, 3, 64, 64))
    assert len(features) == 5 and all(f.shape[1] == 256 for f in features)
    other = "mobilenetv2_100" if arch == "resnet50" else "resnet50"
    cfg.model.backbone.init_cfg.checkpoint = str(timm_checkpoints[other])
    with pytest.raises(ConversionError, match="does not fit"):
        MODELS.build(cfg.model).backbone.init_weights()


def test_shipped_pdarts_configs_name_the_genotype_in_their_work_dir():
    for shipped in ("retinanet_pdarts_fpn_1x_coco", "faster-rcnn_pdarts_fpn_1x_coco"):
        cfg = Config.fromfile(ROOT / "detection_configs" / f"{shipped}.py")
        assert cfg.work_dir == f"work_dirs/{shipped}-PDARTS" and cfg.model.backbone.genotype == "PDARTS"
