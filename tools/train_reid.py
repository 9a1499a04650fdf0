#!/usr/bin/env python
"""Train and evaluate a searched cell for person re-identification with torchreid (see README, "Person re-identification").

Reads a torchreid config (YAML with the keys of torchreid's ``scripts/default_config.py``, plus the
P-DARTS model settings under ``model``), then ``KEY VALUE`` overrides as torchreid's ``scripts/main.py``
takes them. Builds torchreid's ImageDataManager and ImageSoftmaxEngine / ImageTripletEngine, trains,
evaluates (CMC rank-k, mAP) and writes checkpoints, TensorBoard logs, a log file and metrics.json (rank-1,
rank-5 and mAP of each target, from torchreid's own evaluation) to ``data.save_dir``.

``data.save_dir`` left empty: log/MODEL[-GENOTYPE]-SOURCES-LOSS-TIME (GENOTYPE when model.genotype is given:
its registry name, its search folder, or 'custom'), log/MODEL[-GENOTYPE]-test-TARGETS-TIME with --test-only,
and with model.resume the folder of the checkpoint's run. A save_dir that holds a run (config.yaml) is
refused, except to resume the same model in it from its latest checkpoint (not a finished one), as is any other
folder that is not empty. Checkpoints are written atomically: a kill leaves no torn model.pth.tar-N.

Models: the DARTS ones (pdarts_reid, darts_v2_reid, ...; the model.genotype/init_channels/... settings), or
torchreid's own by name: the baselines resnet50 and mobilenetv2_x1_0 load a timm ImageNet checkpoint
(tools/train_imagenet.py --model resnet50 / mobilenetv2_100) from model.pretrained_path; nothing is downloaded.

Examples:
  tools/train_reid.py --config reid_configs/market1501_softmax.yaml --root reid-data model.pretrained_path in1k.pth
  tools/train_reid.py --config reid_configs/market1501_triplet.yaml data.targets "['dukemtmcreid']"   # cross-dataset
  tools/train_reid.py --config reid_configs/market1501_softmax.yaml model.name resnet50 \\
      model.pretrained_path runs/r50/model_final.pth                                            # the baseline
  tools/train_reid.py --config reid_configs/market1501_softmax.yaml model.resume log/RUN/model/model.pth.tar-30
  tools/train_reid.py --config reid_configs/market1501_softmax.yaml --test-only \\
      model.load_weights log/RUN/model/model.pth.tar-60
"""
from __future__ import annotations

import argparse
import ast
import contextlib
import copy
import inspect
import io
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import torch
import yaml
from torchreid.reid import data as reid_data
from torchreid.reid import engine as reid_engine
from torchreid.reid import metrics as reid_metrics
from torchreid.reid import models as reid_models
from torchreid.reid import optim as reid_optim
from torchreid.reid import utils as reid_utils
from torchreid.reid.data.sampler import AVAI_SAMPLERS
from torchreid.reid.optim.lr_scheduler import AVAI_SCH
from torchreid.reid.optim.optimizer import AVAI_OPTIMS
from torch import nn

from backbones.complexity import complexity
from backbones.run_record import genotype_label, metric, write_metrics
from backbones.timm_convert import ConversionError
from backbones.torchreid_engines import SoftmaxEngine, TripletEngine
from backbones.torchreid_pdarts import MODEL_FACTORY, MODEL_GENOTYPES, ReIDModelError, build_baseline
from pdarts_wild.checkpoints import (CheckpointError, checkpoint_contents, our_key_layout, read_checkpoint,
                                     weights_mismatch, without_heads)
from pdarts_wild.cli import ToolParser
from pdarts_wild.genotype import GenotypeError
from pdarts_wild.messages import closest, describe, unknown_name
from pdarts_wild.search import run_tool
from pdarts_wild.zoo import LISTING, resolve_genotype

Config = dict[str, Any]

# torchreid's scripts/default_config.py (image data), and the P-DARTS model settings under "model".
DEFAULTS: Config = {
    "model": {
        "name": "pdarts_reid", "pretrained": True, "load_weights": "", "resume": "",
        "pretrained_path": "", "genotype": "", "init_channels": 48, "layers": 14, "global_pool": "avg",
        "feature_dim": 0, "bnneck": True, "last_stride": 2,
    },
    "data": {
        "type": "image", "root": "reid-data", "sources": ["market1501"], "targets": ["market1501"], "workers": 4,
        "split_id": 0, "height": 256, "width": 128, "combineall": False, "transforms": ["random_flip"], "k_tfm": 1,
        "norm_mean": [0.485, 0.456, 0.406], "norm_std": [0.229, 0.224, 0.225], "save_dir": "",  # "": run_folder()
        "load_train_targets": False,
    },
    "market1501": {"use_500k_distractors": False},
    "cuhk03": {"labeled_images": False, "classic_split": False, "use_metric_cuhk03": False},
    "sampler": {
        "train_sampler": "RandomSampler", "train_sampler_t": "RandomSampler", "num_instances": 4, "num_cams": 1,
        "num_datasets": 1,
    },
    "train": {
        "optim": "adam", "lr": 0.0003, "weight_decay": 5e-4, "max_epoch": 60, "start_epoch": 0, "batch_size": 32,
        "fixbase_epoch": 0, "open_layers": ["classifier"], "staged_lr": False, "new_layers": ["classifier"],
        "base_lr_mult": 0.1, "lr_scheduler": "single_step", "stepsize": [20], "gamma": 0.1, "print_freq": 20,
        "seed": 1,
    },
    "sgd": {"momentum": 0.9, "dampening": 0.0, "nesterov": False},
    "rmsprop": {"alpha": 0.99},
    "adam": {"beta1": 0.9, "beta2": 0.999},
    "loss": {
        "name": "softmax", "softmax": {"label_smooth": True},
        "triplet": {"margin": 0.3, "weight_t": 1.0, "weight_x": 0.0},
    },
    "test": {
        "batch_size": 100, "dist_metric": "euclidean", "normalize_feature": False, "ranks": [1, 5, 10, 20],
        "evaluate": False, "eval_freq": -1, "start_eval": 0, "rerank": False, "visrank": False, "visrank_topk": 10,
    },
    "use_gpu": True,
}

# Where each benchmark's files go under data.root (torchreid's dataset classes).
LAYOUTS = {
    "market1501": "market1501/Market-1501-v15.09.15/{bounding_box_train,query,bounding_box_test}/0002_c1s1_000451_03.jpg",
    "dukemtmcreid": "dukemtmc-reid/DukeMTMC-reID/{bounding_box_train,query,bounding_box_test}/0001_c2_f0046182.jpg",
    "msmt17": "msmt17/MSMT17_V1/{train,test}/ with list_{train,val,query,gallery}.txt beside them (or MSMT17_V2/"
              "{mask_train_v2,mask_test_v2}/)",
}


# model settings of the DARTS models only; torchreid's own models refuse values other than these defaults
DARTS_SETTINGS = ("genotype", "init_channels", "layers", "global_pool", "feature_dim", "bnneck", "last_stride")
CONFIG_FILE = "config.yaml"
DIST_METRICS = ("euclidean", "cosine")  # torchreid.reid.metrics.compute_distance_matrix's
# torchreid.reid.data.transforms.build_transforms' names; it skips any other without a word
TRANSFORMS = ("random_flip", "random_crop", "random_patch", "color_jitter", "random_erase")
# The DARTS trunk's total stride: its FactorizedReduce needs even maps down to the last reduction cell (also with
# last_stride 1), so input height and width are multiples of 32.
DARTS_STRIDE = 32
# The highest CMC rank torchreid computes: Engine._evaluate leaves evaluate_rank's max_rank at its default.
MAX_RANK: int = inspect.signature(reid_metrics.evaluate_rank).parameters["max_rank"].default
CHECKPOINT_NAME = re.compile(r"model\.pth\.tar-(\d+)")  # torchreid's save_checkpoint, in SAVE_DIR/model/


class ConfigError(ValueError):
    """A bad config file, key, value, dataset folder or save_dir."""


# ------------------------------------------------------------------------------------------ config


def _coerce(key: str, value: Any, default: Any) -> Any:
    """``value`` with the type of ``default`` (ints become floats, tuples lists); a ``ConfigError`` otherwise."""
    if isinstance(default, float) and isinstance(value, (int, str)) and not isinstance(value, bool):
        try:
            return float(value)
        except ValueError:
            pass
    if isinstance(default, list) and isinstance(value, (tuple, str)):
        value = list(value) if isinstance(value, tuple) else [value]
    if not isinstance(value, type(default)) or (isinstance(value, bool) != isinstance(default, bool)):
        raise ConfigError(f"{key}: expected {type(default).__name__}, got {value!r}")
    return value


def merge(cfg: Config, updates: dict[str, Any], prefix: str = "") -> None:
    """Merge ``updates`` into ``cfg`` in place, as yacs does: only known keys, values of the default's type."""
    for name, value in updates.items():
        key = f"{prefix}{name}"
        if name not in cfg:
            close = [prefix + known for known in closest(name, cfg)]
            raise ConfigError(f"unknown config key {key!r}" + (f" (closest: {', '.join(close)})" if close else ""))
        if isinstance(cfg[name], dict):
            if not isinstance(value, dict):
                raise ConfigError(f"{key}: expected a mapping of keys, got {value!r}")
            merge(cfg[name], value, key + ".")
        else:
            cfg[name] = _coerce(key, value, cfg[name])


def parse_value(text: str) -> Any:
    """A command-line value as yacs reads it: a Python literal, or else the string itself."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def load_config(path: Path, opts: list[str]) -> Config:
    """Defaults, then the YAML file, then ``KEY VALUE`` pairs (``train.max_epoch 1``)."""
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} not found (see reid_configs/)")
    cfg = copy.deepcopy(DEFAULTS)
    cfg["use_gpu"] = torch.cuda.is_available()
    try:
        read = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        where = getattr(e, "problem_mark", None)
        raise ConfigError(f"{path} is not valid YAML{f' (line {where.line + 1})' if where else ''}: "
                          f"{getattr(e, 'problem', None) or describe(e)}") from None
    if not isinstance(read, (dict, type(None))):
        raise ConfigError(f"{path} holds no mapping of config keys")
    merge(cfg, read or {})
    if len(opts) % 2:
        raise ConfigError(f"overrides come in KEY VALUE pairs, got {opts}")
    for key, text in zip(opts[::2], opts[1::2]):
        *parents, leaf = key.split(".")
        update: dict[str, Any] = {leaf: parse_value(text)}
        for parent in reversed(parents):
            update = {parent: update}
        merge(cfg, update)
    return cfg


# ------------------------------------------------------------------------------------------ building


def check_settings(cfg: Config) -> None:
    """Settings that torchreid takes but trips over only after training, before it saves anything (names, sizes,
    dataset lists, CMC ranks past its last), and its optimizer, scheduler, distance, sampler and transform names with
    the closest valid ones (an unknown transform torchreid would skip without a word, a rank of 0 or less it would
    print as another rank's value)."""
    d, t, e = cfg["data"], cfg["train"], cfg["test"]
    for key in ("sources", "targets"):
        if not d[key] or not all(isinstance(name, str) for name in d[key]):
            raise ConfigError(f"data.{key} must be a non-empty list of dataset names, got {d[key]!r}")
    sizes = {"data.height": d["height"], "data.width": d["width"], "train.batch_size": t["batch_size"],
             "test.batch_size": e["batch_size"], **({} if e["evaluate"] else {"train.max_epoch": t["max_epoch"]})}
    for key, value in sizes.items():
        if value < 1:
            raise ConfigError(f"{key} must be >= 1, got {value}")
    if cfg["model"]["name"] in MODEL_FACTORY and (d["height"] % DARTS_STRIDE or d["width"] % DARTS_STRIDE):
        raise ConfigError(f"data.height and data.width must be multiples of {DARTS_STRIDE} for the DARTS models, "
                          f"got {d['height']}x{d['width']}")
    names = [("train.optim", t["optim"], AVAI_OPTIMS), ("train.lr_scheduler", t["lr_scheduler"], AVAI_SCH),
             ("test.dist_metric", e["dist_metric"], DIST_METRICS),
             *((f"sampler.{key}", cfg["sampler"][key], AVAI_SAMPLERS) for key in ("train_sampler", "train_sampler_t")),
             *(("data.transforms", str(name).lower(), TRANSFORMS) for name in d["transforms"])]  # read lower-case
    for key, name, known in names:
        if name not in known:
            raise ConfigError(unknown_name(key, name, known, ", ".join(known)))
    ranks = e["ranks"]
    if not all(type(r) is int and 1 <= r <= MAX_RANK for r in ranks) or ranks != sorted(set(ranks)):
        raise ConfigError(f"test.ranks must be increasing whole numbers from 1 to {MAX_RANK} (torchreid's CMC stops "
                          f"there), got {ranks!r}")
    if e["visrank"] and not e["evaluate"]:
        raise ConfigError("test.visrank True only works with --test-only (torchreid draws the ranks of tested weights)")


def check_datasets(cfg: Config) -> None:
    """Each dataset's folder must exist under ``data.root``: torchreid would otherwise try to download it."""
    if cfg["data"]["type"] != "image":
        raise ConfigError(f"data.type must be 'image' (video ReID is not supported), got {cfg['data']['type']!r}")
    factory = vars(reid_data.datasets)["__image_datasets"]
    root = Path(cfg["data"]["root"]).expanduser()
    for name in dict.fromkeys(cfg["data"]["sources"] + cfg["data"]["targets"]):
        if name not in factory:
            raise ConfigError(unknown_name("dataset", name, factory, "torchreid.data.datasets.__image_datasets"))
        if not (root / factory[name].dataset_dir).is_dir():
            raise ConfigError(f"dataset {name!r} not found: {missing_hint(root, name)}")


def missing_hint(root: Path, name: str) -> str:
    """Where ``name``'s files belong under ``root``."""
    layout = LAYOUTS.get(name, f"{vars(reid_data.datasets)['__image_datasets'][name].dataset_dir}/ as torchreid documents")
    return f"put its files as {root}/{layout} (or set --root / data.root)"


def build_datamanager(cfg: Config) -> reid_data.ImageDataManager:
    """torchreid's ImageDataManager from the config (as ``scripts/main.py``'s ``imagedata_kwargs``)."""
    check_datasets(cfg)
    d, s = cfg["data"], cfg["sampler"]
    try:
        return reid_data.ImageDataManager(
            root=d["root"], sources=d["sources"], targets=d["targets"], height=d["height"], width=d["width"],
            transforms=d["transforms"], k_tfm=d["k_tfm"], norm_mean=d["norm_mean"], norm_std=d["norm_std"],
            use_gpu=cfg["use_gpu"], split_id=d["split_id"], combineall=d["combineall"],
            load_train_targets=d["load_train_targets"], batch_size_train=cfg["train"]["batch_size"],
            batch_size_test=cfg["test"]["batch_size"], workers=d["workers"], num_instances=s["num_instances"],
            num_cams=s["num_cams"], num_datasets=s["num_datasets"], train_sampler=s["train_sampler"],
            train_sampler_t=s["train_sampler_t"], cuhk03_labeled=cfg["cuhk03"]["labeled_images"],
            cuhk03_classic_split=cfg["cuhk03"]["classic_split"],
            market1501_500k=cfg["market1501"]["use_500k_distractors"],
        )
    except (RuntimeError, AssertionError, FileNotFoundError) as e:  # torchreid's checks of the dataset folders
        names = ", ".join(dict.fromkeys(d["sources"] + d["targets"]))
        hints = "; ".join(missing_hint(Path(d["root"]).expanduser(), n) for n in dict.fromkeys(d["sources"] + d["targets"]))
        raise ConfigError(f"cannot read dataset(s) {names}: {e or type(e).__name__}; {hints}") from e


def check_ranks(cfg: Config, datamanager: reid_data.ImageDataManager) -> None:
    """torchreid's CMC of a target stops at its gallery's size: a higher rank in ``test.ranks`` would crash the
    target's first test, after the epochs before it, with their checkpoint unsaved."""
    top = max(cfg["test"]["ranks"], default=0)
    for target in cfg["data"]["targets"]:
        gallery = len(datamanager.fetch_test_loaders(target)[1])
        if top > gallery:
            raise ConfigError(f"test.ranks go up to {top}, but the {target} gallery holds {gallery} images (its CMC "
                              f"stops at rank {gallery}): lower test.ranks")


def check_model(cfg: Config) -> None:
    """A known model name, and DARTS settings only for the DARTS models."""
    name = cfg["model"]["name"]
    if name in MODEL_FACTORY:
        return
    known = vars(reid_models)["__model_factory"]
    if name not in known:
        raise ConfigError(unknown_name("model.name", name, known,
                                       f"ours: {LISTING}; torchreid's: torchreid.models.show_avai_models()"))
    changed = [f"model.{k}" for k in DARTS_SETTINGS if cfg["model"][k] != DEFAULTS["model"][k]]
    if changed:
        raise ConfigError(f"{', '.join(changed)} only apply to the DARTS models ({', '.join(MODEL_FACTORY)}): "
                          f"{name} is torchreid's own")


def build_model(cfg: Config, num_classes: int, pretrained: bool | None = None) -> nn.Module:
    """Our registered models with the config's P-DARTS settings; torchreid's own by name, ImageNet weights from a
    converted timm checkpoint (:func:`backbones.torchreid_pdarts.build_baseline`). ``pretrained`` overrides the
    config's ``model.pretrained``."""
    check_model(cfg)
    m = cfg["model"]
    loss = "triplet" if cfg["loss"]["name"] == "triplet" else "softmax"
    pretrained = m["pretrained"] if pretrained is None else pretrained
    if m["name"] not in MODEL_FACTORY:
        return build_baseline(m["name"], num_classes, loss, pretrained, cfg["use_gpu"], m["pretrained_path"] or None)
    settings = {k: m[k] for k in DARTS_SETTINGS if k != "genotype"}
    if m["genotype"]:
        settings["genotype"] = m["genotype"]
    return MODEL_FACTORY[m["name"]](num_classes, loss, pretrained, cfg["use_gpu"],
                                    pretrained_path=m["pretrained_path"] or None, **settings)


def check_reid_checkpoint(path: str, model: nn.Module, classifier: bool) -> None:
    """Read ``path`` as torchreid will, but safely: torchreid's loader retries a file that fails to decode with
    ``weights_only=False``; a file that :func:`read_checkpoint` reads never gets there. Its weights must fit
    ``model`` (the classifier too when ``classifier``; tests on other identities need no classifier)."""
    saved = read_checkpoint(path, what="torchreid checkpoint")
    with checkpoint_contents(path, "this model"):
        state, own = saved.get("state_dict", saved), model.state_dict()
        if not classifier:  # torchreid's load_pretrained_weights: module. prefixes go, the classifier may differ
            state, own = without_heads(our_key_layout(saved)), without_heads(own)
        problem = weights_mismatch(own, state)
    if problem:
        raise CheckpointError(f"{path} {problem}")


def model_genotype(model: Config) -> str | None:
    """The DARTS string of the config's cell (None for torchreid's own models)."""
    if model["name"] not in MODEL_GENOTYPES:
        return None
    return resolve_genotype(model["genotype"] or MODEL_GENOTYPES[model["name"]]).to_string()


def build_engine(cfg: Config, datamanager: reid_data.ImageDataManager, model: nn.Module) -> reid_engine.Engine:
    """torchreid's optimizer, scheduler and ImageSoftmaxEngine / ImageTripletEngine (``loss.name``), keeping the
    results of each test (:mod:`backbones.torchreid_engines`)."""
    t = cfg["train"]
    optimizer = reid_optim.build_optimizer(
        model, optim=t["optim"], lr=t["lr"], weight_decay=t["weight_decay"], momentum=cfg["sgd"]["momentum"],
        sgd_dampening=cfg["sgd"]["dampening"], sgd_nesterov=cfg["sgd"]["nesterov"],
        rmsprop_alpha=cfg["rmsprop"]["alpha"], adam_beta1=cfg["adam"]["beta1"], adam_beta2=cfg["adam"]["beta2"],
        staged_lr=t["staged_lr"], new_layers=t["new_layers"], base_lr_mult=t["base_lr_mult"],
    )
    scheduler = reid_optim.build_lr_scheduler(optimizer, lr_scheduler=t["lr_scheduler"], stepsize=t["stepsize"],
                                              gamma=t["gamma"], max_epoch=t["max_epoch"])
    if cfg["model"]["resume"]:
        path = cfg["model"]["resume"]
        with checkpoint_contents(path):  # an optimizer or scheduler of another run
            t["start_epoch"] = reid_utils.resume_from_checkpoint(path, model, optimizer, scheduler)
        if t["start_epoch"] >= t["max_epoch"] and not cfg["test"]["evaluate"]:
            # torchreid would skip training and save these weights again as epoch 1, over model.pth.tar-1
            raise ConfigError(f"model.resume {path} is already finished (epoch {t['start_epoch']} of "
                              f"{t['max_epoch']}): raise train.max_epoch to train on")
        latest = latest_checkpoint(Path(cfg["data"]["save_dir"]))
        if latest and latest[0] > t["start_epoch"] and not cfg["test"]["evaluate"]:
            # torchreid would train on from the older one and save its epochs over the later checkpoints
            raise ConfigError(f"model.resume would overwrite later checkpoints: set a new data.save_dir, or resume "
                              f"from {latest[1]}")
    loss = cfg["loss"]
    label_smooth = loss["softmax"]["label_smooth"]
    if loss["name"] == "softmax":
        return SoftmaxEngine(datamanager, model, optimizer=optimizer, scheduler=scheduler, use_gpu=cfg["use_gpu"],
                             label_smooth=label_smooth)
    if loss["name"] == "triplet":
        tr = loss["triplet"]
        return TripletEngine(datamanager, model, optimizer=optimizer, margin=tr["margin"], weight_t=tr["weight_t"],
                             weight_x=tr["weight_x"], scheduler=scheduler, use_gpu=cfg["use_gpu"],
                             label_smooth=label_smooth)
    raise ConfigError(f"loss.name must be 'softmax' or 'triplet', got {loss['name']!r}")


@dataclass
class Job:
    """Everything built from a config, before anything is written to ``data.save_dir``."""

    cfg: Config
    engine: reid_engine.Engine
    num_classes: int

    def run(self) -> dict[str, Any]:
        """torchreid's engine: train then test, or test only; the fields of metrics.json but ``source``."""
        cfg, t, e = self.cfg, self.cfg["train"], self.cfg["test"]
        test_only = e["evaluate"]
        self.engine.run(
            save_dir=cfg["data"]["save_dir"], max_epoch=t["max_epoch"], start_epoch=t["start_epoch"],
            print_freq=t["print_freq"], fixbase_epoch=t["fixbase_epoch"], open_layers=t["open_layers"],
            start_eval=e["start_eval"], eval_freq=e["eval_freq"], test_only=test_only, dist_metric=e["dist_metric"],
            normalize_feature=e["normalize_feature"], visrank=e["visrank"], visrank_topk=e["visrank_topk"],
            use_metric_cuhk03=cfg["cuhk03"]["use_metric_cuhk03"], ranks=e["ranks"], rerank=e["rerank"],
        )
        epochs = t["max_epoch"]
        if test_only:  # the epochs the tested weights were trained, as torchreid saved them
            epochs = reid_utils.load_checkpoint(cfg["model"]["load_weights"]).get("epoch")
        return metrics_record(cfg, self.engine.results, self.num_classes, epochs)


def build(cfg: Config) -> Job:
    """Data, model (ImageNet or test weights loaded) and engine from ``cfg``; ConfigError on bad settings."""
    check_settings(cfg)
    reid_utils.set_random_seed(cfg["train"]["seed"])
    if cfg["test"]["evaluate"] and not cfg["model"]["load_weights"]:
        raise ConfigError("--test-only needs the weights to test: model.load_weights PATH (a torchreid checkpoint)")
    for key in ("load_weights", "resume"):
        if cfg["model"][key] and not Path(cfg["model"][key]).expanduser().is_file():
            raise ConfigError(f"model.{key}: checkpoint {cfg['model'][key]!r} not found")
    check_model(cfg)
    datamanager = build_datamanager(cfg)
    check_ranks(cfg, datamanager)
    # weights to test or resume replace the whole trunk: its ImageNet checkpoint would be read for nothing
    from_checkpoint = bool(cfg["model"]["load_weights"] or cfg["model"]["resume"])
    model = build_model(cfg, datamanager.num_train_pids, pretrained=False if from_checkpoint else None)
    for key in ("load_weights", "resume"):
        if cfg["model"][key]:
            check_reid_checkpoint(cfg["model"][key], model, classifier=key == "resume")
    if cfg["model"]["load_weights"]:
        reid_utils.load_pretrained_weights(model, cfg["model"]["load_weights"])
    if cfg["use_gpu"]:
        model = model.cuda()
    return Job(cfg, build_engine(cfg, datamanager, model), datamanager.num_train_pids)


def metrics_record(cfg: Config, results: dict[str, tuple[Any, float]], num_classes: int,
                   epochs: int | None) -> dict[str, Any]:
    """metrics.json: rank-1, rank-5 and mAP (percent) of each target's last test; the model's parameters (its
    identity classifier included) and multiply-adds in eval mode at data.height x data.width."""
    d = cfg["data"]
    missing = [t for t in d["targets"] if t not in results]
    if missing:
        raise ConfigError(f"no test ran on {', '.join(missing)} (train.max_epoch {cfg['train']['max_epoch']}); "
                          "nothing to report")
    metrics = []
    for target in d["targets"]:
        cmc, mean_ap = results[target]
        metrics.append(metric("rank1", 100 * cmc[0], target))
        if len(cmc) >= 5:  # a gallery of fewer than 5 images has no rank-5
            metrics.append(metric("rank5", 100 * cmc[4], target))
        metrics.append(metric("mAP", 100 * mean_ap, target))
    size = (d["height"], d["width"])
    with torch.device("meta"):  # counted without allocating or loading anything
        network = build_model(cfg, num_classes, pretrained=False)
    return {"tool": "train_reid", "model": cfg["model"]["name"], "genotype": model_genotype(cfg["model"]),
            "dataset": "+".join(d["sources"]), "epochs": epochs, "input_size": list(size),
            **complexity(network, size), "metrics": metrics}


# ------------------------------------------------------------------------------------------ run folder


def run_folder(cfg: Config) -> Path:
    """``data.save_dir``, or by default the resumed checkpoint's run folder, or a new folder naming the model,
    the genotype (when given), the data and the loss: log/MODEL[-GENOTYPE]-SOURCES-LOSS-TIME (test-TARGETS)."""
    d, m = cfg["data"], cfg["model"]
    if d["save_dir"]:
        return Path(d["save_dir"]).expanduser()
    if m["resume"]:
        checkpoint = Path(m["resume"]).expanduser()
        return checkpoint.parent.parent if checkpoint.parent.name == "model" else checkpoint.parent
    label = f"-{genotype_label(m['genotype'])}" if m["genotype"] else ""
    what = f"test-{'+'.join(d['targets'])}" if cfg["test"]["evaluate"] else f"{'+'.join(d['sources'])}-{cfg['loss']['name']}"
    return Path("log") / f"{m['name']}{label}-{what}-{time.strftime('%Y%m%d-%H%M%S')}"


def latest_checkpoint(save_dir: Path) -> tuple[int, Path] | None:
    """The epoch and path of the last checkpoint torchreid saved in ``save_dir`` (None before the first): a run
    resumed from an earlier epoch would save its own epochs under the same names."""
    saved = [(int(found[1]), path) for path in (save_dir / "model").glob("model.pth.tar-*")
             if (found := CHECKPOINT_NAME.fullmatch(path.name))]
    return max(saved, default=None)


def check_run_folder(folder: Path, cfg: Config) -> None:
    """Refuse a folder that holds a run (its config.yaml), except to resume the same model there, and any other
    folder that is not empty (another tool's run, say: its files would be overwritten or mixed in)."""
    saved_path = folder / CONFIG_FILE
    if not saved_path.is_file():
        if folder.is_dir() and any(folder.iterdir()):
            raise ConfigError(f"data.save_dir {folder} is not empty and holds no ReID run ({CONFIG_FILE}): choose "
                              "another one (or leave it empty)")
        return
    if not cfg["model"]["resume"]:
        raise ConfigError(f"data.save_dir {folder} holds another run ({CONFIG_FILE}): choose another one (or leave "
                          "it empty), or continue that run with model.resume")
    try:
        saved = yaml.safe_load(saved_path.read_text())["model"]
        same = _model_identity(saved) == _model_identity(cfg["model"])
    except (yaml.YAMLError, TypeError, KeyError, GenotypeError):
        same = False
    if not same:
        raise ConfigError(f"data.save_dir {folder} holds a run of another model or genotype: resume in the "
                          "run's own folder, or choose another data.save_dir")


def _model_identity(model: Config) -> tuple[Any, ...]:
    """What must agree between a run and its resumption: the network (the genotype as its DARTS string)."""
    return (model["name"], model_genotype(model), *(model[k] for k in DARTS_SETTINGS if k != "genotype"))


class Tee:
    """A text stream writing to several (the console and the run's log file); torchreid's ``Logger``
    closes the console when it goes away."""

    def __init__(self, *streams: TextIO) -> None:
        self.streams = streams

    def write(self, text: str) -> int:
        for stream in self.streams:
            stream.write(text)
        return len(text)

    def flush(self) -> None:
        for stream in self.streams:
            stream.flush()


def build_parser() -> argparse.ArgumentParser:
    p = ToolParser(prog="tools/train_reid.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, required=True, help="torchreid YAML config (reid_configs/*.yaml)")
    p.add_argument("--root", help="folder holding the datasets (data.root)")
    p.add_argument("--test-only", action="store_true", help="only evaluate model.load_weights (test.evaluate True)")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides: KEY VALUE ... (e.g. train.max_epoch 1)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    state: Config = {}

    def body() -> None:
        cfg = state["cfg"] = load_config(args.config, args.opts)
        if args.root:
            cfg["data"]["root"] = args.root
        if args.test_only:
            cfg["test"]["evaluate"] = True
        save_dir = run_folder(cfg)
        check_run_folder(save_dir, cfg)
        cfg["data"]["save_dir"] = str(save_dir)
        building = io.StringIO()  # nothing is written to save_dir before the whole set-up has worked
        with contextlib.redirect_stdout(Tee(sys.stdout, building)):
            job = build(cfg)
        save_dir.mkdir(parents=True, exist_ok=True)
        (save_dir / CONFIG_FILE).write_text(yaml.safe_dump(cfg, sort_keys=False))
        log_name = f"{'test' if args.test_only else 'train'}.log-{time.strftime('%Y-%m-%d-%H-%M-%S')}"
        with open(save_dir / log_name, "w") as log, contextlib.redirect_stdout(Tee(sys.stdout, log)):
            log.write(building.getvalue())
            record = job.run()
        path = write_metrics(save_dir, {**record, "source": log_name})
        print(f"metrics: {path}")

    def hint() -> str:
        save_dir = state.get("cfg", DEFAULTS)["data"]["save_dir"]
        return f"continue with model.resume {save_dir}/model/model.pth.tar-<epoch>"

    return run_tool(body, (ConfigError, ReIDModelError, ConversionError, GenotypeError, yaml.YAMLError), hint)


if __name__ == "__main__":
    sys.exit(main())
