"""Search settings: one flat dataclass, filled from the paper's defaults, a preset, then explicit values."""
from __future__ import annotations

import copy
import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any, Callable

from .cli import range_problem
from .compiling import BACKENDS, COMPILE_MODES
from .messages import one_line
from .spaces import get_space
from .strategies import STRATEGIES, get_strategy

PRESETS = ("paper", "quick", "tiny")
# Settings a space changes whatever the algorithm: NAS-Bench-201's DARTS runs (AutoDL-Projects, DARTS-V1)
# use 5 cells per stage, Nesterov momentum and weight decay 5e-4.
SPACE_DEFAULTS: dict[str, dict[str, Any]] = {"nb201": {"layers": [5], "weight_decay": 5e-4, "nesterov": True}}
PER_STAGE = ("layers", "epochs", "arch_frozen_epochs", "skip_dropout")


class ConfigError(ValueError):
    """Settings that cannot work together; the message says which and why."""


@dataclass
class SearchConfig:
    """Every setting of a search. Per-stage lists hold one value per stage (a single value applies to all)."""

    algorithm: str = "pdarts"
    space: str = "darts"
    dataset: str = "cifar10"
    data: str = "data"
    seed: int = 2
    preset: str = "paper"
    # supernet
    channels: int = 16
    layers: list[int] = field(default_factory=lambda: [5, 11, 17])  # nb201: cells per stage of its skeleton
    steps: int = 4
    partial_channels: int = 1  # PC-DARTS' K: 1/K of the channels go through the mixed ops
    edge_normalization: bool = False  # PC-DARTS' per-edge beta weights
    random_features: bool = False  # RF-DARTS: affine BN in the supernet, convs frozen at their random init
    rf_train_classifier: bool = False  # RF-DARTS: also train the classifier (frozen by default)
    # stages
    epochs: list[int] = field(default_factory=lambda: [25])
    arch_frozen_epochs: list[int] = field(default_factory=lambda: [10])
    skip_dropout: list[float] = field(default_factory=lambda: [0.0, 0.4, 0.7])
    keep_ops: list[int] = field(default_factory=lambda: [5, 3])
    skip_limit: int | None = 2
    # weights
    batch_size: int = 96
    lr: float = 0.025
    lr_min: float = 0.0
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 3e-4
    grad_clip: float = 5.0
    # architecture
    arch_lr: float = 6e-4
    arch_betas: tuple[float, float] = (0.5, 0.999)
    arch_weight_decay: float = 1e-3
    arch_grad_clip: float = 5.0
    unrolled: bool = False
    # data
    train_portion: float = 0.5
    cutout: int = 0
    drop_path: float = 0.0  # RobustDARTS: drop-path on every mixed-edge output, ramped over each stage
    train_limit: int | None = None
    workers: int = 2
    channels_last: bool | None = None  # None: on for CPU (several times faster there), off for CUDA
    recompute: bool = True  # recompute the mixed edges' activations in backward instead of storing them
    compile: str | None = None  # torch.compile the search cells: "default", or "reduce-overhead" (CUDA graphs)
    compile_backend: str = "inductor"  # aot_eager: trace without generating kernels (quick checks)
    bf16: bool = False  # bfloat16 autocast of the forward passes
    valid_last: int | None = None  # validate in the last N epochs of each stage only (None: every epoch)
    # OPP-DARTS
    add_op_epochs: int = 2  # epochs between two op additions
    opp_score_batches: int | None = None  # batches of the weight half that score a candidate op (None: all)
    opp_score_bn: str = "train"  # "train": batch statistics, running statistics restored; "reference": the authors' way

    @property
    def num_stages(self) -> int:
        return len(self.layers)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "SearchConfig":
        """The settings in ``values`` (a config.json's, say), unchecked: :func:`validate` checks them."""
        if not isinstance(values, dict):
            raise ConfigError(f"expected an object of settings, got {type(values).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown setting(s): {', '.join(unknown)}")
        return cls(**values)


# A setting's type: what a value must pass, and how a message names it (one, several).
_KINDS: dict[type, tuple[Callable[[Any], bool], str, str]] = {
    bool: (lambda v: type(v) is bool, "true or false", "booleans"),
    int: (lambda v: type(v) is int, "an integer", "integers"),
    float: (lambda v: type(v) in (int, float), "a number", "numbers"),
    str: (lambda v: type(v) is str, "a string", "strings"),
}


def _expected(value: Any, hint: Any) -> str | None:
    """What a setting typed ``hint`` must be, when ``value`` is not that (None when it is)."""
    args = typing.get_args(hint)
    if type(None) in args:  # X | None
        return None if value is None else _expected(value, args[0])
    if hint in _KINDS:
        fits, one, _ = _KINDS[hint]
        return None if fits(value) else one
    fits, _, several = _KINDS[args[0]]
    ok = isinstance(value, (list, tuple)) and all(map(fits, value))
    if typing.get_origin(hint) is tuple:  # tuple[float, float]: that many
        return None if ok and len(value) == len(args) else f"{len(args)} {several}"
    return None if ok else f"a list of {several}"


def _check_types(config: SearchConfig) -> None:
    """A hand-edited config.json may hold any JSON: a string for a number would crash deep inside the search."""
    for name, hint in typing.get_type_hints(SearchConfig).items():
        value = getattr(config, name)
        expected = _expected(value, hint)
        if expected:
            raise ConfigError(f"{name}: expected {expected}, got {one_line(repr(value), 40)}")


def resolve_config(algorithm: str, dataset: str, preset: str = "paper", **overrides: Any) -> SearchConfig:
    """Paper defaults of ``algorithm`` (and ``dataset``), then ``preset``, then explicit ``overrides``."""
    strategy = _checked_strategy(algorithm)
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    values: dict[str, Any] = {"algorithm": algorithm, "dataset": dataset, "preset": preset}
    values.update(strategy.DEFAULTS)
    values.update(getattr(strategy, "DATASET_DEFAULTS", {}).get(dataset, {}))
    values.update(SPACE_DEFAULTS.get(overrides.get("space") or SearchConfig.space, {}))
    values.update(strategy.PRESETS.get(preset, {}))
    given = {k: v for k, v in overrides.items() if v is not None}
    _check_used(strategy, given)
    values.update(given)
    config = SearchConfig.from_dict(copy.deepcopy(values))  # never share the strategies' default lists
    validate(config)
    return config


def _check_used(strategy: Any, given: dict[str, Any]) -> None:
    """A ConfigError naming the ``given`` settings that only other algorithms than ``strategy``'s use: it would
    ignore them, and config.json would record them as if applied."""
    owner = {name: other.name for other in STRATEGIES.values() for name in other.OWN_SETTINGS
             if name not in strategy.OWN_SETTINGS}
    unused = [name for name in given if name in owner]
    if unused:
        flags = ", ".join(f"--{name.replace('_', '-')}" for name in unused)
        owners = " and ".join(sorted({owner[name] for name in unused}))
        raise ConfigError(f"--algorithm {strategy.name} does not use {flags} (settings of {owners}): drop them")


def _checked_strategy(algorithm: str) -> Any:
    try:
        return get_strategy(algorithm)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def validate(config: SearchConfig) -> None:
    """Broadcast single per-stage values and reject inconsistent settings."""
    _check_types(config)
    config.arch_betas = tuple(config.arch_betas)  # JSON and argparse give a list
    strategy = _checked_strategy(config.algorithm)
    try:
        space = get_space(config.space)
        strategy.check_space(space)
    except ValueError as e:
        raise ConfigError(f"--algorithm {config.algorithm} --space {config.space}: {e}") from None
    if space.topology == "darts" and config.steps != space.steps:  # no flag sets it: a config.json may
        raise ConfigError(f"steps: the cells of space {config.space} have {space.steps} nodes, got {config.steps}")
    if not config.layers:
        raise ConfigError("--layers needs at least one value (cells per stage)")
    most_ops = max(len(ops) for edges in space.initial_candidates().values() for ops in edges)
    if config.keep_ops and config.keep_ops[0] >= most_ops:
        raise ConfigError(f"--algorithm {config.algorithm} prunes edges to {config.keep_ops[0]} ops after stage 1, but "
                          f"the edges of space {config.space} hold at most {most_ops}: search it with darts, pc-darts "
                          "or rf-darts")
    stages = config.num_stages
    if stages > 1 and not strategy.MULTI_STAGE:
        raise ConfigError(f"--algorithm {config.algorithm} searches one stage: give --layers one value (stages of "
                          "several depths: --algorithm pdarts)")
    made = f"--layers {' '.join(map(str, config.layers))} makes {stages} stage{'s' * (stages > 1)}"
    for name in PER_STAGE[1:]:
        value = getattr(config, name)
        if len(value) == 1:
            setattr(config, name, value * stages)
        elif len(value) != stages:
            raise ConfigError(f"{made}, but --{name.replace('_', '-')} has {_values(len(value))} "
                              f"({one_line(' '.join(map(str, value)), 40)}): give it 1 or {stages}")
    if len(config.keep_ops) != stages - 1:
        raise ConfigError(f"{made}, but --keep-ops has {_values(len(config.keep_ops))}: give it {stages - 1} (ops "
                          "kept per edge after each stage but the last)")
    kept = [most_ops, *config.keep_ops]
    if any(not 2 <= k <= before for before, k in zip(kept, kept[1:])):
        raise ConfigError(f"--keep-ops {' '.join(map(str, config.keep_ops))}: an edge keeps at least 2 ops (so one "
                          "besides none) and never more than it had")
    if space.topology == "nb201":
        if any(layers < 1 for layers in config.layers):
            raise ConfigError("--layers: NAS-Bench-201's skeleton needs at least 1 cell per stage")
    elif any(layers < 3 for layers in config.layers):
        raise ConfigError("--layers: a supernet needs at least 3 cells (two of them reduction cells)")
    for e, w in zip(config.epochs, config.arch_frozen_epochs):
        if not 0 <= w < e:
            raise ConfigError(f"--arch-frozen-epochs {w} leaves no epoch to train the architecture in a {e}-epoch stage")
    if not all(0.0 <= p < 1.0 for p in config.skip_dropout):
        raise ConfigError("--skip-dropout rates must lie in [0, 1)")
    if config.channels < 2 or config.channels % 2:
        raise ConfigError(f"--channels must be even and at least 2, got {config.channels}")
    k = config.partial_channels
    if k < 1 or config.channels % k or (config.channels // k) % 2:
        raise ConfigError(f"--partial-channels {k}: --channels {config.channels} must split into {k} groups of an "
                          "even size")
    if not 0.0 <= config.drop_path < 1.0:
        raise ConfigError(f"--drop-path must lie in [0, 1), got {config.drop_path}")
    if not 0.0 < config.train_portion < 1.0:
        raise ConfigError("--train-portion must lie strictly between 0 and 1")
    if config.add_op_epochs < 1 or (config.opp_score_batches is not None and config.opp_score_batches < 1):
        raise ConfigError("--add-op-epochs and --opp-score-batches must be at least 1")
    if config.opp_score_bn not in ("train", "reference"):
        raise ConfigError(f"--opp-score-bn must be train or reference, got {config.opp_score_bn!r}")
    if config.valid_last is not None and config.valid_last < 1:
        raise ConfigError("--valid-last must be at least 1 (the last epoch of each stage is always validated)")
    if config.compile is not None:
        if config.compile not in COMPILE_MODES:
            raise ConfigError(f"--compile {config.compile}: choose {' or '.join(COMPILE_MODES)}")
        if config.compile_backend not in BACKENDS:
            raise ConfigError(f"--compile-backend {config.compile_backend}: choose one of {', '.join(BACKENDS)}")
        if config.drop_path > 0:
            raise ConfigError("--compile with --drop-path: the ramped rate would compile the cells again every epoch; "
                              "drop one of them")
        if config.unrolled:
            raise ConfigError("--compile with --unrolled: the second-order step runs the supernet on virtual weights, "
                              "which the compiled cells do not see; drop one of them")
    if config.batch_size < 2:
        raise ConfigError("--batch-size must be at least 2 (BatchNorm needs more than one sample)")
    if config.rf_train_classifier and not config.random_features:
        raise ConfigError("--rf-train-classifier needs --random-features (without them the classifier trains anyway)")
    _check_training(config)


def _values(n: int) -> str:
    return f"{n} value{'s' * (n != 1)}"


def _check_training(c: SearchConfig) -> None:
    """Optimizer, loader and seed settings: torch refuses some only once the run folder is written, and takes NaN
    or negative others (an SGD step with --lr nan, a cutout of -3) without a word."""
    problem = range_problem(
        positive={"--lr": c.lr, "--arch-lr": c.arch_lr, "--grad-clip": c.grad_clip},
        non_negative={"--lr-min": c.lr_min, "--weight-decay": c.weight_decay,
                      "--arch-weight-decay": c.arch_weight_decay, "--arch-grad-clip": c.arch_grad_clip},
        fractions={"--momentum": c.momentum},
        counts={"--cutout": c.cutout, "--workers": c.workers, "--skip-limit": c.skip_limit})
    if problem:
        raise ConfigError(problem)
    if c.nesterov and c.momentum == 0:
        raise ConfigError("--nesterov needs --momentum > 0 (torch's SGD takes no Nesterov step without momentum)")
    if not all(0 <= beta < 1 for beta in c.arch_betas):
        raise ConfigError(f"--arch-betas must both be in [0, 1), got {' '.join(map(str, c.arch_betas))}")
    if not 0 <= c.seed < 2**32:  # as the training tools (numpy's seeds)
        raise ConfigError(f"--seed must be in [0, 2**32), got {c.seed}")
