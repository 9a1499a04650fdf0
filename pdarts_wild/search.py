"""The search loop: stages of epochs over the supernet, checkpoints, resume, DDP, logs and results."""
from __future__ import annotations

import io
import json
import math
import os
import random
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
import torch.distributed as dist
from torch import nn
from torch.nn import functional as F
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from .architect import Architect
from .compiling import CompileClock, compile_cells, forget_compiled, step_marker
from .checkpoints import CheckpointError, checkpoint_contents, load_weights, read_checkpoint
from .config import SearchConfig, validate
from .distributed import init_distributed
from .files import atomic_write
from .messages import describe, error_line, one_line
from .pace import Pace, format_duration, planned_costs, supernet_cost, work_left
from .search_data import SearchData
from .search_outputs import RESULT, log, log_epoch_scalars, log_to, tensorboard_writer, write_search_result
from .spaces import Candidates, SearchSpace, get_space
from .strategies import Derivation, Growth, StagePlan, Strategy, get_strategy
from .supernet import Supernet

CHECKPOINT = "checkpoint.pt"
CHECKPOINT_KEYS = ("stage", "epoch", "step", "candidates", "rng")  # what every search checkpoint holds
CONFIG = "config.json"


class SearchError(Exception):
    """A problem with the run folder or environment; the message says how to fix it."""


def run_tool(body: Callable[[], None], user_errors: tuple[type[Exception], ...], resume_hint: Callable[[], str]) -> int:
    """A command-line tool's exit code: one ``error: ...`` line and 2 for ``user_errors``, unusable checkpoint
    files and files or folders that cannot be read or written (any OSError); 130 with ``resume_hint`` on Ctrl-C."""
    try:
        body()
    except (*user_errors, CheckpointError, OSError) as e:
        print(error_line(e), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\ninterrupted; {resume_hint()}", file=sys.stderr)
        return 130
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    return 0


# ------------------------------------------------------------------------------------------ run folder


def prepare_run_dir(out: Path, config: SearchConfig | None, resume: bool) -> SearchConfig:
    """Check ``out`` for a new or resumed run and return the config to use; never touches earlier results."""
    check_out_folder(out)
    if (out / RESULT).exists():
        raise SearchError(f"{out} already holds a finished search ({RESULT}); choose another --out")
    if resume:
        if not (out / CONFIG).exists():
            raise SearchError(f"nothing to resume in {out} (no {CONFIG}); start a new search without --resume")
        return _saved_config(out / CONFIG)
    if (out / CONFIG).exists():
        raise SearchError(f"{out} holds an unfinished search: add --resume to continue it, or choose another --out")
    if out.exists() and any(out.iterdir()):
        raise SearchError(f"{out} is not empty and holds no pdarts-wild search; choose another --out")
    assert config is not None
    return config


def check_out_folder(out: Path) -> None:
    """A SearchError when ``out`` (or a folder above it) is a file: a run folder cannot go there."""
    for folder in (out, *out.parents):
        if folder.exists():
            if not folder.is_dir():
                where = "" if folder == out else f": {folder}"
                raise SearchError(f"--out {out}{where} is a file, not a folder; choose another --out")
            return


def _saved_config(path: Path) -> SearchConfig:
    """The settings a search saved in ``path``; a SearchError naming it when it is no such file."""
    try:
        config = SearchConfig.from_dict(json.loads(path.read_text()))
        validate(config)
    except (ValueError, TypeError, AttributeError) as e:  # JSONDecodeError, UnicodeDecodeError, ConfigError...
        raise SearchError(f"{path} holds no usable search settings ({describe(e)})") from None
    except RecursionError:
        raise SearchError(f"{path} holds no usable search settings (JSON nested too deeply)") from None
    return config


def atomic_save(obj: Any, path: Path) -> None:
    """torch.save ``obj`` to ``path`` atomically (:func:`pdarts_wild.files.atomic_write`): a kill or a full disk
    never leaves a torn file, and a failed write is an OSError naming ``path`` with the previous file intact."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write(path, buffer.getbuffer())


# -------------------------------------------------------------------------------------------- helpers


def _number(value: Any) -> bool:
    return type(value) in (int, float)


def _per_edge(table: Any, space: SearchSpace, fits: Callable[[Any], bool]) -> bool:
    """Whether ``table`` holds, for each cell type of ``space``, one entry per edge, each of which ``fits``."""
    return isinstance(table, dict) and set(table) == set(space.cell_types) and all(
        isinstance(edges, (list, tuple)) and len(edges) == space.num_edges and all(map(fits, edges))
        for edges in table.values())


def resolve_device(name: str | None) -> torch.device:
    """``cuda`` (the local rank's GPU under torchrun) when available, else ``cpu``; or the one named (cpu, cuda,
    cuda:N; torch's other device types are not supported)."""
    if name is None:
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
        supported = device.type in ("cpu", "cuda")
    except RuntimeError:  # not a device string; torch's message lists all of its device types
        supported = False
    if not supported:
        raise SearchError(f"--device {name!r} is not one of cpu, cuda, cuda:N")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SearchError("--device cuda: no CUDA GPU is visible to PyTorch; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise SearchError(f"--device {name}: PyTorch sees {torch.cuda.device_count()} GPU(s), cuda:0 to "
                              f"cuda:{torch.cuda.device_count() - 1}")
        if device.index is None:
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    return device


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def search_optimizers(model: Supernet, c: SearchConfig, lr: float) -> tuple[torch.optim.SGD, torch.optim.Adam]:
    """SGD for the weights, Adam for the architecture, with ``c``'s hyper-parameters. Their multi-tensor (foreach)
    kernels give the per-tensor loop's numbers bit for bit in a few launches instead of several per parameter (the
    fused kernels of both differ in the last bit on the CPU)."""
    w_opt = torch.optim.SGD(model.weight_parameters(), lr, momentum=c.momentum, weight_decay=c.weight_decay,
                            nesterov=c.nesterov, foreach=True)
    a_opt = torch.optim.Adam(model.arch_parameters(), c.arch_lr, betas=c.arch_betas, weight_decay=c.arch_weight_decay,
                             foreach=True)
    return w_opt, a_opt


# --------------------------------------------------------------------------------------------- search


class Search:
    """One search run in ``out``: call :meth:`run` (again with the same folder to resume)."""

    def __init__(self, config: SearchConfig, out: Path, device: torch.device, progress: bool | None = None) -> None:
        self.config = config
        self.out = out
        self.device = device
        self.progress = progress
        self.ddp = init_distributed(device)
        self.space = get_space(config.space)
        self.strategy: Strategy = get_strategy(config.algorithm)(config)
        self.plan = self.strategy.stages()
        channels_last = config.channels_last if config.channels_last is not None else device.type == "cpu"
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.data = SearchData(config, self.ddp, device, self.memory_format)
        if config.compile == "reduce-overhead" and device.type != "cuda":
            raise SearchError("--compile reduce-overhead records CUDA graphs: it needs --device cuda")
        self.pace = Pace()

    # ----------------------------------------------------------------------------------------- state

    def _fresh_state(self) -> dict[str, Any]:
        return {"stage": 0, "epoch": 0, "step": 0, "candidates": self.space.initial_candidates(),
                "stage_genotypes": [], "history": [], "last_alphas": None, "last_edge_scale": None, "growth": []}

    def _build(self, stage: StagePlan, candidates: Candidates) -> None:
        self._adopt(self._supernet(stage, candidates), self.config.lr, stage.epochs)

    def _supernet(self, stage: StagePlan, candidates: Candidates) -> Supernet:
        """A freshly initialised supernet of ``stage`` holding ``candidates``."""
        c = self.config
        model = Supernet(self.space, candidates, self.data.info.num_classes, c.channels, stage.layers,
                         skip_dropout=stage.skip_dropout, partial_channels=c.partial_channels,
                         edge_normalization=c.edge_normalization, affine=c.random_features, recompute=c.recompute)
        return model.to(self.device, memory_format=self.memory_format)

    def _adopt(self, model: Supernet, lr: float, epochs: int) -> None:
        """Train ``model`` from now on: new SGD with a cosine from ``lr`` to lr_min over ``epochs`` epochs, new
        Adam for the architecture, new architect."""
        c = self.config
        if c.random_features:
            model.freeze_random_features(c.rf_train_classifier)
        self.model = model = model.to(memory_format=self.memory_format)
        if c.compile is not None:
            forget_compiled()  # the last supernet's graphs
            compile_cells(model, c.compile, c.compile_backend)
        self.forward: nn.Module = model
        if self.ddp.world_size > 1:
            # DDP averages the weights' gradients; the Architect averages the alphas' (they take none in weight steps)
            DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(model, model.arch_parameter_names())
            self.forward = DistributedDataParallel(model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.w_opt, self.a_opt = search_optimizers(model, c, lr)
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.w_opt, epochs, eta_min=c.lr_min)
        self.architect = Architect(model, self.a_opt, unrolled=c.unrolled, grad_clip=c.arch_grad_clip,
                                   autocast=self._autocast)

    def _checkpoint(self, state: dict[str, Any]) -> dict[str, Any]:
        """Loop state and RNG; mid-stage also the supernet and optimizers (a new stage starts afresh)."""
        ckpt = {**state, "rng": rng_state()}
        if state["epoch"] > 0:
            ckpt.update(model=self.model.state_dict(), w_opt=self.w_opt.state_dict(), a_opt=self.a_opt.state_dict(),
                        scheduler=self.scheduler.state_dict())
        return ckpt

    def _resumed_state(self, ckpt: dict[str, Any]) -> dict[str, Any]:
        """The loop state ``ckpt`` holds, checked against this run's plan and space: a tampered checkpoint.pt looped
        forever (an epoch past its stage's), finished with made-up results (a stage past the plan) or crashed."""
        state = {k: ckpt.get(k, v) for k, v in self._fresh_state().items()}
        path = self.out / CHECKPOINT
        problem = self._state_problem(state, "model" in ckpt)
        if problem:
            raise CheckpointError(f"{path} does not fit this run ({problem})")
        with checkpoint_contents(path):
            set_rng_state(ckpt["rng"])  # tried now (keys, types, sizes); run() seeds afresh, and sets it again later
        return state

    def _state_problem(self, state: dict[str, Any], holds_model: bool) -> str | None:
        """What in a resumed loop ``state`` this run cannot continue from (None when it can)."""
        for key in ("stage", "epoch", "step"):
            if type(state[key]) is not int:
                return f"{key}: expected an integer, got {one_line(repr(state[key]), 40)}"
        stages, stage, epoch = len(self.plan), state["stage"], state["epoch"]
        if not 0 <= stage <= stages:
            return f"stage index {stage} is outside 0..{stages}"
        epochs = self.plan[stage].epochs if stage < stages else 1  # after the last stage: only its epoch 0
        if not 0 <= epoch < epochs:
            return f"epoch index {epoch} is outside 0..{epochs - 1} of stage index {stage}"
        if state["step"] < 0:
            return f"step {state['step']} is negative"
        if holds_model != (epoch > 0):
            return f"a checkpoint at epoch index {epoch} {'lacks' if epoch else 'holds'} the supernet"
        def space_ops(edge: Any) -> bool:  # distinct ops of the space, at least one
            return isinstance(edge, (list, tuple)) and all(isinstance(op, str) and op in self.space.primitives
                                                           for op in edge) and 0 < len(edge) == len(set(edge))

        def op_weights(edge: Any) -> bool:
            return isinstance(edge, dict) and all(isinstance(op, str) and _number(w) for op, w in edge.items())

        if not _per_edge(state["candidates"], self.space, space_ops):
            return f"its candidate ops are no {self.space.name} cells' ops"
        alphas, scale = state["last_alphas"], state["last_edge_scale"]
        if (alphas is None) != (stage == 0) or alphas is not None and not _per_edge(alphas, self.space, op_weights):
            return f"last_alphas do not fit stage index {stage} of this search"
        if scale is not None and not _per_edge(scale, self.space, _number):
            return "last_edge_scale holds no edge weight per edge"
        history, genotypes = state["history"], state["stage_genotypes"]
        if not (isinstance(history, list) and len(history) == self._global_epoch(state)
                and all(isinstance(h, dict) and "valid_acc" in h for h in history)
                and isinstance(genotypes, list) and len(genotypes) == stage and isinstance(state["growth"], list)):
            return "its history, stage genotypes or op growth do not fit its stage and epoch"
        return None

    def _restore(self, ckpt: dict[str, Any]) -> None:
        path = self.out / CHECKPOINT
        with checkpoint_contents(path):  # a checkpoint of another run: one line naming it
            load_weights(self.model, ckpt["model"], path)
            self.w_opt.load_state_dict(ckpt["w_opt"])
            self.a_opt.load_state_dict(ckpt["a_opt"])
            self.scheduler.load_state_dict(ckpt["scheduler"])
            set_rng_state(ckpt["rng"])

    # ------------------------------------------------------------------------------------------- run

    def run(self) -> Derivation:
        """Run (or continue) every stage, then derive and write the genotype."""
        self.out.mkdir(parents=True, exist_ok=True)
        ckpt_path = self.out / CHECKPOINT
        ckpt = read_checkpoint(ckpt_path, CHECKPOINT_KEYS, "search checkpoint") if ckpt_path.exists() else None
        state = self._fresh_state() if ckpt is None else self._resumed_state(ckpt)
        # a resumed run's file is read, never rewritten: a kill while rewriting it would leave nothing to resume from
        if self.ddp.main and not (self.out / CONFIG).exists():
            atomic_write(self.out / CONFIG, json.dumps(self.config.to_dict(), indent=2) + "\n")
        torch.manual_seed(self.config.seed)
        random.seed(self.config.seed)
        self.writer = tensorboard_writer(self.out / "tb", state["step"]) if self.ddp.main else None
        with log_to(self.out / "search.log", self.ddp.main):
            if ckpt is None:
                log.info("search %s on %s in %s (config in %s)", self.config.algorithm, self.config.dataset, self.out, CONFIG)
            else:
                at = (f"stage {state['stage'] + 1} epoch {state['epoch'] + 1}" if state["stage"] < len(self.plan)
                      else "the end: writing the results")
                log.info("resuming %s at %s", self.out, at)
            while state["stage"] < len(self.plan):
                self._run_stage(state, ckpt)
                ckpt = None
            if ckpt is not None:  # killed after the last epoch, before the result was written
                set_rng_state(ckpt["rng"])
            result = self._finish(state)
        if self.writer is not None:
            self.writer.close()
        return result

    def _run_stage(self, state: dict[str, Any], ckpt: dict[str, Any] | None) -> None:
        stage = self.plan[state["stage"]]
        at_boundary = ckpt is not None and "model" not in ckpt
        if at_boundary:  # the next stage's supernet is built from the RNG state saved at the stage's end
            set_rng_state(ckpt["rng"])
        self._build(stage, state["candidates"])
        if ckpt is not None and not at_boundary:
            self._restore(ckpt)
        if state["epoch"] == 0:
            log.info("stage %d/%d: %d cells, ops per edge %s", state["stage"] + 1, len(self.plan), stage.layers,
                     sorted({len(ops) for edges in state["candidates"].values() for ops in edges}))
        while state["epoch"] < stage.epochs:
            self._grow(stage, state)
            self._run_epoch(stage, state)
            state["epoch"] += 1
            if state["epoch"] == stage.epochs:
                self._end_stage(stage, state)  # moves state to the next stage's epoch 0
            if self.ddp.main:
                atomic_save(self._checkpoint(state), self.out / CHECKPOINT)
            if state["epoch"] == 0:
                return

    def _grow(self, stage: StagePlan, state: dict[str, Any]) -> None:
        """Before an epoch: let the strategy change the supernet (OPP-DARTS adds ops); train what it returns
        from the current learning rate, cosine over the stage's remaining epochs, with fresh optimizers."""
        epoch = self._global_epoch(state)
        growth = Growth(self.model, lambda candidates: self._supernet(stage, candidates),
                        lambda model: self.data.train_loss(model, epoch))
        model = self.strategy.grow(state["epoch"], growth)
        if model is None:
            return
        self._adopt(model, self.scheduler.get_last_lr()[0], stage.epochs - state["epoch"])
        state["candidates"] = {cell: list(edges) for cell, edges in model.candidates.items()}
        ops = [op for op in self.space.primitives if any(op in edge for edges in state["candidates"].values()
                                                          for edge in edges)]
        state["growth"].append({"epoch": epoch, "ops": ops})
        log.info("epoch %d: the supernet now holds %s (ops per edge %s)", epoch + 1, ", ".join(ops),
                 sorted({len(edge) for edges in state["candidates"].values() for edge in edges}))

    def _global_epoch(self, state: dict[str, Any]) -> int:
        return sum(p.epochs for p in self.plan[: state["stage"]]) + state["epoch"]

    def _end_stage(self, stage: StagePlan, state: dict[str, Any]) -> None:
        alphas, edge_scale = self.model.alpha_table(), self.model.edge_scale_table()
        derived = self.strategy.derive(alphas, state["candidates"], edge_scale)
        state["stage_genotypes"].append(derived.genotype.to_string())
        log.info("stage %d genotype: %s", state["stage"] + 1, state["stage_genotypes"][-1])
        state["last_alphas"], state["last_edge_scale"] = alphas, edge_scale
        if stage.keep_ops is not None:
            state["candidates"] = self.strategy.prune(state["candidates"], alphas, stage)
        state["stage"] += 1
        state["epoch"] = 0

    # ----------------------------------------------------------------------------------------- epochs

    def _autocast(self) -> torch.autocast:
        """bfloat16 autocast of a forward pass with ``--bf16``; a no-op otherwise."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.config.bf16)

    def _step(self, x: torch.Tensor, y: torch.Tensor, arch_batches: Iterator[tuple[torch.Tensor, torch.Tensor]] | None,
              lr: float, totals: torch.Tensor) -> tuple[float, float]:
        """One search step on the training batch (x, y): an architecture step on the next of ``arch_batches`` (None:
        the alphas are frozen), then a weight step; adds to ``totals``, returns the weight and architecture losses."""
        c = self.config
        arch_loss = 0.0
        if arch_batches is not None:
            step_marker(c.compile)
            arch_loss = self.architect.step((x, y), next(arch_batches), lr, self.w_opt)
        self.w_opt.zero_grad(set_to_none=True)
        step_marker(c.compile)
        with self.model.gradients_only_for(self.model.weight_parameters()):
            with self._autocast():
                logits = self.forward(x)
                loss = F.cross_entropy(logits, y)
            loss.backward()
        nn.utils.clip_grad_norm_(self.w_opt.param_groups[0]["params"], c.grad_clip, foreach=True)  # the weights it steps
        self.w_opt.step()
        n, weight_loss = y.numel(), loss.item()
        totals += torch.tensor([weight_loss * n, (logits.argmax(1) == y).sum().item(), n, arch_loss * n],
                               dtype=torch.float64)
        return weight_loss, arch_loss

    def _run_epoch(self, stage: StagePlan, state: dict[str, Any]) -> None:
        c, s, e = self.config, state["stage"], state["epoch"]
        global_epoch = self._global_epoch(state)
        p_skip = self.strategy.skip_dropout(stage, e)
        self.model.set_skip_dropout(p_skip)
        p_drop = self._ramp_drop_path(stage, e)
        lr = self.scheduler.get_last_lr()[0]
        train_arch = e >= stage.arch_frozen_epochs
        weight_loader = self.data.loader(self.data.weights, global_epoch, 0)
        arch_batches = self.data.batches(self.data.loader(self.data.arch, global_epoch, 1))
        self.forward.train()
        totals = torch.zeros(4, dtype=torch.float64)  # loss sum, correct, samples, arch loss sum
        compiling = CompileClock()
        start = time.perf_counter()
        bar = tqdm(self.data.batches(weight_loader), total=len(weight_loader), leave=False, disable=self._no_bar(),
                   desc=f"stage {s + 1}/{len(self.plan)} epoch {e + 1}/{stage.epochs}", unit="step")
        for i, (x, y) in enumerate(bar):
            if i == len(weight_loader):
                break
            with compiling.step(y.numel()):
                loss, arch_loss = self._step(x, y, arch_batches if train_arch else None, lr, totals)
            state["step"] += 1
            bar.set_postfix(loss=f"{loss:.3f}", arch_loss=f"{arch_loss:.3f}" if train_arch else "frozen")
            if self.writer is not None:
                self.writer.add_scalar("train/loss_step", loss, state["step"])
        bar.close()
        train_s = time.perf_counter() - start - compiling.seconds
        self.scheduler.step()
        train_loss, train_acc, samples, arch_loss = self._reduce(totals)
        self.pace.record(s, "arch" if train_arch else "weights", train_s, int(totals[2]) - compiling.images,
                         self._cost(state))
        img_per_s = (samples - compiling.images * self.ddp.world_size) / max(train_s, 1e-9)  # steps that compiled nothing
        validate = c.valid_last is None or e >= stage.epochs - c.valid_last
        valid_loss, valid_acc = self._validate(s, state, compiling) if validate else (None, None)
        self._check_finite(s, e, {"train loss": train_loss, "arch loss": arch_loss, "valid loss": valid_loss})
        record = {"stage": s + 1, "epoch": e + 1, "lr": lr, "skip_dropout": p_skip, "drop_path": p_drop,
                  "train_loss": train_loss, "train_acc": train_acc, "arch_loss": arch_loss if train_arch else None,
                  "valid_loss": valid_loss, "valid_acc": valid_acc, "img_per_s": img_per_s}
        notes = ""
        if c.compile is not None:
            record["compile_s"], record["compiled_graphs"] = compiling.seconds, compiling.graphs
            notes += f", compiled {compiling.graphs} graphs in {compiling.seconds:.0f} s"
        if self.device.type == "cuda":
            record["peak_mem_mb"] = torch.cuda.max_memory_allocated(self.device) / 2**20
            notes += f", peak {record['peak_mem_mb']:.0f} MB"
        record["eta_s"] = self._eta(state)
        if record["eta_s"] is not None:
            notes += f" | search ends in ~{format_duration(record['eta_s'])}"
        state["history"].append(record)
        valid = "" if valid_acc is None else f" | valid loss {valid_loss:.4f} acc {100 * valid_acc:.2f}%"
        drop = f" drop-path {p_drop:.3f}" if c.drop_path > 0 else ""
        log.info("stage %d epoch %d/%d lr %.5f skip-drop %.3f%s | train loss %.4f acc %.2f%%%s | %.1f img/s%s", s + 1,
                 e + 1, stage.epochs, lr, p_skip, drop, train_loss, 100 * train_acc, valid, record["img_per_s"], notes)
        if self.writer is not None:
            log_epoch_scalars(self.writer, record, self.model, self.space, state["step"])

    def _check_finite(self, stage: int, epoch: int, losses: dict[str, float | None]) -> None:
        """Stop a diverged search before its epoch is checkpointed: NaN or infinite losses or alphas would go on
        to a made-up genotype. Every process sees the same summed losses and alphas, so all stop together."""
        bad = [f"{name} {value}" for name, value in losses.items() if value is not None and not math.isfinite(value)]
        if not all(bool(torch.isfinite(alpha).all()) for alpha in self.model.arch_parameters()):
            bad.append("alphas not finite")
        if bad:
            c = self.config
            raise SearchError(f"stage {stage + 1} epoch {epoch + 1}: the search diverged ({', '.join(bad)}); search "
                              f"again with a lower --lr (was {c.lr:g}) or --arch-lr (was {c.arch_lr:g})")

    # -------------------------------------------------------------------------------------- time left

    def _cost(self, state: dict[str, Any]) -> float:
        return supernet_cost(self.plan[state["stage"]].layers, state["candidates"])

    def _eta(self, state: dict[str, Any]) -> float | None:
        """Seconds the epochs after the one just run will take, from :attr:`pace` (None before any measurement)."""
        work = work_left(self.plan, state["stage"], state["epoch"], self.data.images_per_epoch(self.data.weights),
                         self.data.images_per_epoch(self.data.arch), self.config.valid_last)
        return self.pace.remaining(work, planned_costs(self.plan, state["stage"], state["candidates"],
                                                       self.space.primitives))

    def _ramp_drop_path(self, stage: StagePlan, epoch: int) -> float:
        """RobustDARTS: with ``drop_path`` p > 0, epoch e of E uses drop-path p * e / (E - 1) on every mixed-edge
        output and applies cutout with probability e / (E - 1); returns the drop-path rate."""
        p = self.config.drop_path
        if p <= 0:
            return 0.0
        ramp = epoch / max(stage.epochs - 1, 1)
        self.model.set_drop_path(p * ramp)
        if self.data.cutout is not None:
            self.data.cutout.prob = ramp
        return p * ramp

    def _no_bar(self) -> bool | None:
        if not self.ddp.main:
            return True
        return None if self.progress is None else not self.progress

    def _reduce(self, totals: torch.Tensor) -> tuple[float, float, float, float]:
        """Mean loss, accuracy, images and mean architecture loss of ``totals`` summed over every process."""
        loss, correct, n, arch = self.ddp.sum(totals, self.device).tolist()
        return loss / n, correct / n, n, arch / n

    @torch.no_grad()
    def _validate(self, stage: int, state: dict[str, Any], compiling: CompileClock) -> tuple[float, float]:
        """Loss and accuracy on the architecture half (the search's validation set); its pace goes to :attr:`pace`."""
        self.forward.eval()
        loader = self.data.loader(self.data.arch, 0, 1)
        totals = torch.zeros(4, dtype=torch.float64)
        batches = self.data.batches(loader)
        compiled_before = (compiling.seconds, compiling.images)
        start = time.perf_counter()
        for _ in range(len(loader)):
            x, y = next(batches)
            with compiling.step(y.numel()):
                step_marker(self.config.compile)
                with self._autocast():
                    logits = self.forward(x)
                totals += torch.tensor([F.cross_entropy(logits.float(), y, reduction="sum").item(),
                                        (logits.argmax(1) == y).sum().item(), y.numel(), 0.0], dtype=torch.float64)
        self.forward.train()
        self.pace.record(stage, "valid", time.perf_counter() - start - (compiling.seconds - compiled_before[0]),
                         int(totals[2]) - (compiling.images - compiled_before[1]), self._cost(state))
        loss, acc, _, _ = self._reduce(totals)
        return loss, acc

    # ----------------------------------------------------------------------------------------- result

    def _finish(self, state: dict[str, Any]) -> Derivation:
        alphas = state["last_alphas"]
        result = self.strategy.derive(alphas, state["candidates"], state["last_edge_scale"])
        if self.ddp.world_size > 1:
            genotypes: list[str | None] = [None] * self.ddp.world_size
            dist.all_gather_object(genotypes, result.genotype.to_string())
            if len(set(genotypes)) != 1:
                raise SearchError(f"processes derived different genotypes: {genotypes}")
        if self.ddp.main:
            write_search_result(self.out, self.config, result, state)
        if self.ddp.world_size > 1:
            dist.barrier()
        return result
