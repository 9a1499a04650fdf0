"""``MetricsJsonHook``: the MMEngine hook of our detection configs (``custom_hooks``) for the transfer study.

- Before a run it records the backbone and genotype in ``<work_dir>/run.json`` and refuses a work dir that holds
  a run of another backbone or genotype, or (to train) any run unless ``--resume``: MMEngine would otherwise
  overwrite its ``epoch_N.pth`` and mix the logs.
- When the test loop finishes it writes ``<work_dir>/metrics.json`` (:mod:`backbones.run_record`): COCO bbox mAP,
  mAP_50, mAP_75, mAP_s/m/l in percent, the checkpoint's epochs and iterations, the input size and multiply-adds
  of the first test image. A test with no COCO result (no detection passed the score threshold) is an error, not
  a success: the hook raises :class:`EmptyEvaluationError` and writes nothing.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Optional

from mmdet.registry import HOOKS
from mmengine.dist import barrier, is_main_process
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.runner import BaseLoop, find_latest_checkpoint
from torch import nn

from . import mmdet_checkpoints  # noqa: F401  (allow-lists MMEngine's checkpoint classes)
from .complexity import macs_of
from .run_record import metric, write_metrics
from pdarts_wild.checkpoints import CheckpointError, weights_mismatch
from pdarts_wild.files import atomic_write
from pdarts_wild.messages import describe
from pdarts_wild.networks import count_parameters

RUN_RECORD = "run.json"
BBOX_METRICS = ("bbox_mAP", "bbox_mAP_50", "bbox_mAP_75", "bbox_mAP_s", "bbox_mAP_m", "bbox_mAP_l")


class WorkDirError(RuntimeError):
    """A work dir that holds another run."""


class EmptyEvaluationError(RuntimeError):
    """A test that produced no COCO bbox mAP."""


def architecture(module: nn.Module) -> str:
    """The backbone's name for the record: MMDetection's class it extends (``ResNetFromTimm`` -> ``ResNet``), or its
    own (``PDARTSNet``)."""
    for cls in type(module).__mro__:
        if cls.__module__.startswith("mmdet."):
            return cls.__name__
    return type(module).__name__


@HOOKS.register_module()
class MetricsJsonHook(Hook):
    """Guards the work dir (``before_run``) and writes ``metrics.json`` after the test loop (see the module doc)."""

    priority = "VERY_HIGH"  # the work-dir check comes before any other hook's before_run

    def __init__(self) -> None:
        self.trained: dict[str, Any] = {}
        self.cost: Optional[dict[str, Any]] = None
        self.checked = False  # this runner's work dir passed before_run once (a test after training passes again)

    # ------------------------------------------------------------------------------------------ work dir

    def before_run(self, runner: Any) -> None:
        work_dir = Path(runner.work_dir)
        # Runner.train() builds its loop before calling before_run; a test after it in the same runner is this run
        training = isinstance(runner._train_loop, BaseLoop) and not self.checked
        run = self._run_identity(runner)
        record = work_dir / RUN_RECORD
        if record.is_file():
            saved = _saved_run(record)
            if {k: saved.get(k) for k in run if k in saved} != {k: run[k] for k in run if k in saved}:
                raise WorkDirError(f"work dir {work_dir} holds a run of another backbone, genotype or size ({RUN_RECORD}: "
                                   f"{saved.get('backbone')}, {_short(saved.get('genotype'))}): choose another --work-dir")
            if training and not runner._resume:
                raise WorkDirError(f"work dir {work_dir} holds a run ({RUN_RECORD}): add --resume to continue it, or "
                                   "choose another --work-dir")
        elif training and not runner._resume and find_latest_checkpoint(str(work_dir)):
            raise WorkDirError(f"work dir {work_dir} holds checkpoints of another run: choose another --work-dir")
        barrier()  # every process has checked before the first one records the run
        if is_main_process() and not record.is_file():
            atomic_write(record, json.dumps(run, indent=2) + "\n")
        self.checked = True

    @staticmethod
    def _run_identity(runner: Any) -> dict[str, Any]:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        backbone = model.backbone
        return {"detector": type(model).__name__, "backbone": architecture(backbone),
                "genotype": getattr(backbone, "genotype", None), "backbone_params": count_parameters(backbone)}

    # ------------------------------------------------------------------------------------------ test

    def after_load_checkpoint(self, runner: Any, checkpoint: dict) -> None:
        """Keep how long the tested weights were trained (MMEngine's checkpoint ``meta``); to test, they must fit the
        detector (MMEngine loads what fits and only warns, and the test would score a half-random detector)."""
        if not isinstance(runner._train_loop, BaseLoop):  # a test; load_from for training may change the head
            model = runner.model.module if is_model_wrapper(runner.model) else runner.model
            problem = weights_mismatch(model.state_dict(), checkpoint.get("state_dict", checkpoint))
            if problem:
                raise CheckpointError(f"{runner._load_from} {problem}")
        meta = checkpoint.get("meta") or {}
        self.trained = {"epochs": meta.get("epoch"), "iters": meta.get("iter")}

    def before_train(self, runner: Any) -> None:
        self.trained = {}  # a test after training in this runner reports the runner's own count, not a resumed one

    def before_test(self, runner: Any) -> None:
        self.cost = None
        if not self.trained:  # tested right after training, in the same runner: no checkpoint was loaded
            self.trained = {"epochs": runner.epoch, "iters": runner.iter}

    def after_test_iter(self, runner: Any, batch_idx: int, data_batch: Any = None, outputs: Any = None) -> None:
        """Count the detector on the first test image, as the test loop fed it (resized, padded)."""
        if self.cost is None and is_main_process():
            self.cost = detector_cost(runner.model.module if is_model_wrapper(runner.model) else runner.model,
                                      data_batch)

    def after_test_epoch(self, runner: Any, metrics: Optional[dict[str, float]] = None) -> None:
        found = {key.rpartition("/")[2]: value for key, value in (metrics or {}).items()}
        if "bbox_mAP" not in found:
            raise EmptyEvaluationError(
                f"the test gave no COCO bbox mAP (metrics: {sorted(metrics or {}) or 'none'}): no detection passed "
                "model.test_cfg's score_thr, or the test set has no boxes; metrics.json not written"
            )
        if not is_main_process():
            return
        dataset = _dataset_name(runner.cfg.get("test_evaluator"))
        values = [metric(name, 100 * found[name] if found[name] >= 0 else None, dataset)  # -1: no box of that size
                  for name in BBOX_METRICS if name in found]
        run = self._run_identity(runner)
        record = {"tool": "mmdet", "model": run["backbone"], "detector": run["detector"], "genotype": run["genotype"],
                  "dataset": dataset, **self.trained, **(self.cost or {}), "metrics": values,
                  "source": f"{runner.timestamp}/{runner.timestamp}.json", "checkpoint": runner._load_from}
        write_metrics(runner.work_dir, record)


def detector_cost(model: nn.Module, data_batch: Any) -> dict[str, Any]:
    """Parameters of the whole detector; input size and multiply-adds of backbone, neck and heads (``_forward``,
    no post-processing) on the batch's first image; ``macs`` None with ``macs_note`` when it cannot be counted."""
    data = model.data_preprocessor(data_batch, False)
    inputs, samples = data["inputs"][:1], data["data_samples"][:1]
    cost: dict[str, Any] = {"input_size": list(inputs.shape[-2:]), "params": count_parameters(model)}
    try:
        cost["macs"] = macs_of(lambda: model._forward(inputs, samples))
    except Exception as e:  # noqa: BLE001  (the count is informative; the test's results are not at stake)
        cost["macs"], cost["macs_note"] = None, f"{type(e).__name__}: {e}"[:200]
    return cost


def _dataset_name(evaluator: Any) -> str:
    """The test annotation file's stem (``instances_val2017``), or ``coco``."""
    ann_file = evaluator.get("ann_file") if isinstance(evaluator, dict) else None
    return Path(ann_file).stem if ann_file else "coco"


def _saved_run(record: Path) -> dict[str, Any]:
    """The work dir's run record; a WorkDirError when it cannot be read (not ours: it is written atomically)."""
    try:
        saved = json.loads(record.read_text())
    except (OSError, ValueError) as e:
        raise WorkDirError(f"{record} cannot be read ({describe(e)}): delete it if the work dir holds this run, "
                           "or choose another --work-dir") from None
    if not isinstance(saved, dict):
        raise WorkDirError(f"{record} is not a run record: delete it if the work dir holds this run, or choose "
                           "another --work-dir")
    return saved


def _short(genotype: Optional[str]) -> str:
    return "no genotype" if genotype is None else re.sub(r"\s+", "", genotype)[:60] + "..."
