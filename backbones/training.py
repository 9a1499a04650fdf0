"""The training loop of tools/train_cifar.py and tools/train_imagenet.py: epochs, evaluation, checkpoints, resume.

A run folder holds ``config.json``, ``train.log``, ``tb/`` (TensorBoard), ``checkpoint.pt`` (written atomically
after every epoch; ``--resume`` continues from it), ``model_best.pth`` (best test top-1), ``metrics.json`` (the final
and best top-1/top-5, :mod:`backbones.run_record`) and ``model_final.pth``, written last: a folder that holds it is
finished and never overwritten. Every file keeps the weights under
``state_dict`` (the bare model's, never DDP's), so ``timm.create_model(arch, pretrained=True, **model_args,
pretrained_cfg_overlay=dict(file=PATH, num_classes=N))`` loads any of them; all load with ``weights_only=True``.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Collection
from typing import Any

import torch
import torch.distributed as dist
from timm.loss import LabelSmoothingCrossEntropy
from timm.optim import create_optimizer_v2
from timm.utils import NativeScaler, accuracy, dispatch_clip_grad
from torch import nn
from torch.nn import functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from pdarts_wild.networks import count_parameters
from pdarts_wild.checkpoints import checkpoint_contents, load_weights, read_checkpoint
from pdarts_wild.config import SearchConfig
from pdarts_wild.messages import describe
from pdarts_wild.distributed import Distributed
from pdarts_wild.search import atomic_save, check_out_folder, rng_state, set_rng_state
from pdarts_wild.search_outputs import log, log_to, tensorboard_writer

from .run_record import metric, write_metrics
from .schedulers import create_lr_scheduler

CHECKPOINT = "checkpoint.pt"
CHECKPOINT_KEYS = ("state_dict", "optimizer", "rng", "epoch", "step", "history", "best_top1", "best_epoch")
CONFIG = "config.json"
BEST = "model_best.pth"
FINAL = "model_final.pth"


class TrainError(Exception):
    """A problem with the settings, the run folder or the run itself; the message says how to fix it."""


def prepare_run_dir(out: Path, resume: bool, tool: str, settings: Collection[str]) -> dict[str, Any] | None:
    """The saved settings when resuming, None for a new run; refuses folders that hold other results, the run
    folders of other tools among them. ``tool`` names the training tool, ``settings`` its settings' names."""
    check_out_folder(out)
    if (out / FINAL).exists():
        raise TrainError(f"{out} already holds a finished training ({FINAL}); choose another --out")
    saved = _saved_settings(out) if (out / CONFIG).exists() else None
    if saved is not None:
        other = foreign_run(saved, tool, settings)
        if other:
            raise TrainError(f"{out} holds {other}, not a {tool} one; choose another --out")
    if resume:
        if saved is None:
            raise TrainError(f"nothing to resume in {out} (no {CONFIG}); start a new training without --resume")
        return saved
    if saved is not None:
        raise TrainError(f"{out} holds an unfinished training: add --resume to continue it, or choose another --out")
    if out.exists() and any(out.iterdir()):
        raise TrainError(f"{out} is not empty and holds no pdarts-wild training; choose another --out")
    return None


def _saved_settings(out: Path) -> dict[str, Any]:
    try:
        saved = json.loads((out / CONFIG).read_text())
    except ValueError as e:  # not JSON, not text
        raise TrainError(f"{out / CONFIG} holds no usable training settings ({describe(e)})") from None
    if not isinstance(saved, dict):
        raise TrainError(f"{out / CONFIG} holds no usable training settings (not a JSON object)")
    return saved


def foreign_run(saved: dict[str, Any], tool: str, settings: Collection[str]) -> str | None:
    """What run of another tool a config.json holds ('a train_imagenet run', 'a search run'); None for ``tool``'s
    own. Told by the 'tool' it records, or, in folders written before it was recorded, by settings that ``tool``
    lacks (its older runs may lack newer settings)."""
    recorded = saved.get("tool")
    if recorded == tool or (recorded is None and set(saved) <= set(settings)):
        return None
    if recorded is not None:
        return f"a {recorded} run"
    if set(saved) <= {f.name for f in dataclasses.fields(SearchConfig)}:
        return "a search run"
    return "another tool's run"


def split_output(output: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(logits, aux_logits or None)`` from a model's output: plain logits or a ``(logits, aux)`` pair."""
    if isinstance(output, (tuple, list)):
        return output[0], output[1]
    return output, None


class AuxiliaryLoss(nn.Module):
    """``criterion(logits) + weight * criterion(aux_logits)``; the auxiliary term only when the model gives aux logits.

    ``criterion`` is cross-entropy, label-smoothed when ``smoothing`` > 0 (timm's, the authors' formula: targets
    (1 - eps) one-hot + eps / classes, mean over the batch), for both heads.
    """

    def __init__(self, smoothing: float = 0.0, weight: float = 0.0) -> None:
        super().__init__()
        self.criterion: nn.Module = LabelSmoothingCrossEntropy(smoothing) if smoothing > 0 else nn.CrossEntropyLoss()
        self.weight = weight

    def forward(self, output: Any, target: torch.Tensor) -> torch.Tensor:
        logits, aux = split_output(output)
        loss = self.criterion(logits, target)
        if aux is not None and self.weight > 0:
            loss = loss + self.weight * self.criterion(aux, target)
        return loss


@dataclass
class Data:
    """What a tool's data set-up hands the loop: this process's loaders, the number of classes, the data set's
    name and the (H, W) the network sees (both for metrics.json)."""

    train: DataLoader
    test: DataLoader
    num_classes: int
    dataset: str
    input_size: tuple[int, int]


class Trainer:
    """One training run in ``out``: call :meth:`run` (again with the same folder to resume).

    ``config`` carries the recipe (``epochs``, ``lr``, ``lr_min``, ``momentum``, ``weight_decay``, ``sched``,
    ``warmup_epochs``, ``grad_clip``, ``auxiliary_weight``, ``drop_path``, ``label_smoothing``, ``amp``,
    ``channels_last``, ``compile``, ``model``); ``model_args`` are the ``timm.create_model`` arguments, kept in
    every file. ``run_info`` holds the fields of metrics.json known before training (tool, model, genotype, data
    set, input size, parameters, multiply-adds); the loop adds the epochs and the test accuracies.
    """

    def __init__(self, config: argparse.Namespace, out: Path, model: nn.Module, model_args: dict[str, Any],
                 data: Data, device: torch.device, ddp: Distributed, progress: bool | None = None,
                 run_info: dict[str, Any] | None = None) -> None:
        self.config, self.out, self.data, self.device, self.ddp = config, out, data, device, ddp
        self.model_args = model_args
        self.run_info = run_info or {}
        self.memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
        self.model = model.to(device, memory_format=self.memory_format)
        self.forward: nn.Module = self.model
        if ddp.world_size > 1:
            device_ids = [device.index] if device.type == "cuda" else None
            self.forward = DistributedDataParallel(self.model, device_ids=device_ids)
        if getattr(config, "compile", False):  # runs saved before the flag existed train uncompiled
            self.forward = torch.compile(self.forward)
        # the authors' SGD: plain momentum, weight decay on every parameter
        self.optimizer = create_optimizer_v2(self.model, opt="momentum", lr=config.lr, momentum=config.momentum,
                                             weight_decay=config.weight_decay, filter_bias_and_bn=False)
        self.scheduler = create_lr_scheduler(self.optimizer, config.sched, config.epochs, config.warmup_epochs,
                                             config.lr_min)
        self.criterion = AuxiliaryLoss(config.label_smoothing, config.auxiliary_weight)
        self.scaler = NativeScaler(device.type) if config.amp else None
        self.progress = False if not ddp.main else progress
        self.writer: SummaryWriter | None = None

    # ---------------------------------------------------------------------------------------------- run

    def run(self) -> dict[str, Any]:
        """Train (or continue) to the last epoch; write the final weights; return the last epoch's record."""
        ckpt_path = self.out / CHECKPOINT
        ckpt = read_checkpoint(ckpt_path, CHECKPOINT_KEYS, "training checkpoint") if ckpt_path.exists() else None
        state = self._fresh_state() if ckpt is None else self._restore(ckpt)
        main = self.ddp.main
        board = tensorboard_writer(self.out / "tb", state["step"]) if main else contextlib.nullcontext()
        with log_to(self.out / "train.log", main), board as self.writer:
            if ckpt is None:
                log.info("train %s (%d parameters without the auxiliary head) in %s, settings in %s",
                         self.config.model, count_parameters(self.model), self.out, CONFIG)
            else:
                at = (f"epoch {state['epoch'] + 1}/{self.config.epochs}" if state["epoch"] < self.config.epochs
                      else "the end: writing the final weights")
                log.info("resuming %s at %s", self.out, at)
            while state["epoch"] < self.config.epochs:
                record = self._run_epoch(state)
                state["epoch"] += 1
                if main:
                    self._save(state, record)
            if main:
                write_metrics(self.out, self._metrics(state))
                # written last: marks the run finished
                atomic_save(self._weights(state, state["history"][-1]), self.out / FINAL)
                log.info("finished: best test top-1 %.2f%% (epoch %d); weights in %s and %s", state["best_top1"],
                         state["best_epoch"], BEST, FINAL)
        if self.ddp.world_size > 1:
            dist.barrier()
        return state["history"][-1]

    def _fresh_state(self) -> dict[str, Any]:
        return {"epoch": 0, "step": 0, "history": [], "best_top1": -1.0, "best_epoch": 0}

    def _restore(self, ckpt: dict[str, Any]) -> dict[str, Any]:
        path = self.out / CHECKPOINT
        with checkpoint_contents(path):  # a checkpoint of another run: one line naming it
            load_weights(self.model, ckpt["state_dict"], path)
            self.optimizer.load_state_dict(ckpt["optimizer"])
            if self.scaler is not None and NativeScaler.state_dict_key in ckpt:
                self.scaler.load_state_dict(ckpt[NativeScaler.state_dict_key])
            set_rng_state(ckpt["rng"])
        return {key: ckpt[key] for key in self._fresh_state()}

    def _metrics(self, state: dict[str, Any]) -> dict[str, Any]:
        """metrics.json: the last epoch's test top-1/top-5 and the best epoch's (by top-1), in percent."""
        last, best = state["history"][-1], state["history"][state["best_epoch"] - 1]
        dataset = self.data.dataset
        metrics = [metric("top1", last["test_top1"], dataset), metric("top5", last["test_top5"], dataset),
                   metric("top1_best", best["test_top1"], dataset), metric("top5_best", best["test_top5"], dataset)]
        return {**self.run_info, "epochs": state["epoch"], "best_epoch": state["best_epoch"], "metrics": metrics,
                "source": "train.log"}

    def _weights(self, state: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
        """What every file holds: the weights (on the CPU, loadable anywhere) and how to build the model for them."""
        weights = {k: v.cpu() for k, v in self.model.state_dict().items()}
        return {"state_dict": weights, "epoch": state["epoch"], "arch": self.config.model,
                "model_args": self.model_args, "top1": record["test_top1"], "top5": record["test_top5"]}

    def _save(self, state: dict[str, Any], record: dict[str, Any]) -> None:
        if record["test_top1"] > state["best_top1"]:
            state["best_top1"], state["best_epoch"] = record["test_top1"], state["epoch"]
            atomic_save(self._weights(state, record), self.out / BEST)
        ckpt = {**self._weights(state, record), **state, "optimizer": self.optimizer.state_dict(), "rng": rng_state()}
        if self.scaler is not None:
            ckpt[NativeScaler.state_dict_key] = self.scaler.state_dict()
        atomic_save(ckpt, self.out / CHECKPOINT)

    # -------------------------------------------------------------------------------------------- epochs

    def _run_epoch(self, state: dict[str, Any]) -> dict[str, Any]:
        c, e = self.config, state["epoch"]
        self.scheduler.step(e)
        lr = self.optimizer.param_groups[0]["lr"]
        self.model.drop_path_prob = c.drop_path * e / c.epochs
        start = time.perf_counter()
        loss, top1, samples = self._train(state, f"epoch {e + 1}/{c.epochs}")
        seconds = time.perf_counter() - start
        if not math.isfinite(loss):
            raise TrainError(f"the training loss is {loss} in epoch {e + 1}: lower --lr (now {c.lr}) or check the data")
        test_loss, test_top1, test_top5 = self._evaluate()
        record = {"epoch": e + 1, "lr": lr, "drop_path": self.model.drop_path_prob, "train_loss": loss,
                  "train_top1": top1, "test_loss": test_loss, "test_top1": test_top1, "test_top5": test_top5,
                  "img_per_s": samples / seconds, "seconds": seconds}
        memory = ""
        if self.device.type == "cuda":
            record["peak_mem_mb"] = torch.cuda.max_memory_allocated(self.device) / 2**20
            memory = f", peak {record['peak_mem_mb']:.0f} MB"
        state["history"].append(record)
        log.info("epoch %d/%d lr %.5f drop-path %.3f | train loss %.4f top-1 %.2f%% | test loss %.4f top-1 %.2f%% "
                 "top-5 %.2f%% | %.1f img/s%s", e + 1, c.epochs, lr, record["drop_path"], loss, top1, test_loss,
                 test_top1, test_top5, record["img_per_s"], memory)
        if self.writer is not None:
            for key, value in record.items():
                if key != "epoch":
                    self.writer.add_scalar(f"epoch/{key}", value, state["step"])
            self.writer.flush()
        return record

    def _to_device(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return (x.to(self.device, non_blocking=True, memory_format=self.memory_format),
                y.to(self.device, non_blocking=True))

    def _train(self, state: dict[str, Any], desc: str) -> tuple[float, float, float]:
        """One pass over the training data; mean loss, top-1 (%) and the number of samples over all processes."""
        sampler = self.data.train.sampler
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(state["epoch"])
        self.forward.train()
        clip = self.config.grad_clip or None
        totals = torch.zeros(3, dtype=torch.float64)  # loss sum, correct, samples
        bar = tqdm(self.data.train, desc=desc, leave=False, unit="step",
                   disable=None if self.progress is None else not self.progress)  # None: only on a terminal
        for x, y in bar:
            x, y = self._to_device(x, y)
            with torch.autocast(self.device.type, enabled=self.scaler is not None):
                output = self.forward(x)
                loss = self.criterion(output, y)
            self.optimizer.zero_grad(set_to_none=True)
            if self.scaler is not None:
                self.scaler(loss, self.optimizer, clip_grad=clip, parameters=self.model.parameters())
            else:
                loss.backward()
                if clip is not None:
                    dispatch_clip_grad(self.model.parameters(), clip)
                self.optimizer.step()
            n, value = y.numel(), loss.item()
            top1 = accuracy(split_output(output)[0].detach(), y, topk=(1,))[0]
            totals += torch.tensor([value * n, top1.item() * n / 100, n], dtype=torch.float64)
            state["step"] += 1
            bar.set_postfix(loss=f"{value:.3f}")
            if self.writer is not None:
                self.writer.add_scalar("step/train_loss", value, state["step"])
        bar.close()
        loss_sum, correct, n = self.ddp.sum(totals, self.device).tolist()
        return loss_sum / n, 100 * correct / n, n

    @torch.no_grad()
    def _evaluate(self) -> tuple[float, float, float]:
        """Cross-entropy, top-1 and top-5 (%) on the test / validation data, over all processes."""
        self.forward.eval()
        totals = torch.zeros(4, dtype=torch.float64)  # loss sum, top-1 hits, top-5 hits, samples
        for x, y in self.data.test:
            x, y = self._to_device(x, y)
            with torch.autocast(self.device.type, enabled=self.scaler is not None):
                logits = split_output(self.forward(x))[0].float()
            top1, top5 = accuracy(logits, y, topk=(1, 5))
            n = y.numel()
            totals += torch.tensor([F.cross_entropy(logits, y, reduction="sum").item(), top1.item() * n / 100,
                                    top5.item() * n / 100, n], dtype=torch.float64)
        loss_sum, hits1, hits5, n = self.ddp.sum(totals, self.device).tolist()
        return loss_sum / n, 100 * hits1 / n, 100 * hits5 / n

