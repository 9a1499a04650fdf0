"""timm ImageNet checkpoints in other ecosystems' key layouts: the baselines of the transfer study.

``tools/train_imagenet.py --model resnet50`` / ``--model mobilenetv2_100`` (or any timm file of those models)
initialise MMDetection's ``ResNet`` / ``MobileNetV2`` backbones and torchreid's ``resnet50`` /
``mobilenetv2_x1_0``. One converter per architecture pair maps timm's state dict onto the target's keys;
:func:`load_converted` then requires every target weight (heads aside) to be there with its shape, so a file of
another network stops with one line naming the keys instead of leaving weights at random.

- ResNet-50: timm, MMDetection (``style='pytorch'``) and torchreid all keep torchvision's keys; only timm's
  classifier ``fc`` goes.
- MobileNetV2: the stem, 17 blocks and the 1x1 head conv map one to one (same channels, strides, ReLU6), under other
  names. torchreid's first block has a 1x1 expansion conv that timm's (and MMDetection's) lacks: it starts as the
  identity (weight eye, BN with mean 0 and variance 1 - eps), exact in eval mode since its input, a ReLU6 output,
  lies in [0, 6].
"""
from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from pdarts_wild.checkpoints import CheckpointError, read_checkpoint

StateDict = dict[str, torch.Tensor]
Converter = Callable[[StateDict, Mapping[str, torch.Tensor]], StateDict]


class ConversionError(CheckpointError):
    """A checkpoint that is missing, unreadable or of another network (one line naming the problem)."""


def read_timm_state(path: str | Path) -> StateDict:
    """The weights of a timm / tools/train_imagenet.py checkpoint: ``state_dict`` unwrapped, ``module.`` removed."""
    checkpoint = read_checkpoint(Path(path).expanduser(), what="ImageNet checkpoint")
    state = checkpoint.get("state_dict", checkpoint)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConversionError(f"{path} holds no state dict of tensors")
    return {re.sub(r"^(module\.)+", "", k): v for k, v in state.items()}


# ------------------------------------------------------------------------------------------ ResNet


def resnet_from_timm(state: StateDict, target: Mapping[str, torch.Tensor]) -> StateDict:
    """timm ``resnet50`` -> MMDetection ``ResNet`` / torchreid ``resnet50``: the same torchvision keys, no ``fc``."""
    return {k: v for k, v in state.items() if not k.startswith("fc.")}


# ------------------------------------------------------------------------------------------ MobileNetV2


@dataclass(frozen=True)
class MobileNetV2Keys:
    """Where a target keeps the parts of MobileNetV2; ``block`` is formatted with the stage (timm's index plus
    ``stage_offset``) and the block's index in it."""

    stem: str
    head: str
    block: str
    stage_offset: int
    expand: str  # the 1x1 expansion conv (ConvModule/ConvBlock prefix)
    depthwise: str
    project: str  # the linear 1x1 projection: its conv and BN keys follow
    project_conv: str = "conv"
    project_bn: str = "bn"


MMDET_MOBILENETV2 = MobileNetV2Keys(stem="conv1", head="conv2", block="layer{stage}.{index}", stage_offset=1,
                                    expand="expand_conv", depthwise="depthwise_conv", project="linear_conv")
TORCHREID_MOBILENETV2 = MobileNetV2Keys(stem="conv1", head="conv9", block="conv{stage}.{index}", stage_offset=2,
                                        expand="conv1", depthwise="dwconv2", project="conv3", project_conv="0",
                                        project_bn="1")
# timm's block parts -> (part of the target block, conv or bn). Stage 0 is a depthwise-separable block.
_TIMM_SEPARABLE = {"conv_dw": ("depthwise", "conv"), "bn1": ("depthwise", "bn"), "conv_pw": ("project", "conv"),
                   "bn2": ("project", "bn")}
_TIMM_INVERTED = {"conv_pw": ("expand", "conv"), "bn1": ("expand", "bn"), "conv_dw": ("depthwise", "conv"),
                  "bn2": ("depthwise", "bn"), "conv_pwl": ("project", "conv"), "bn3": ("project", "bn")}
_TIMM_ENDS = {"conv_stem": ("stem", "conv"), "bn1": ("stem", "bn"), "conv_head": ("head", "conv"),
              "bn2": ("head", "bn")}


def _mobilenetv2_key(key: str, keys: MobileNetV2Keys) -> str | None:
    """The target's name of timm's ``key`` (None for the classifier; unknown keys stay as they are)."""
    if key.startswith("classifier."):
        return None
    match = re.fullmatch(r"blocks\.(\d+)\.(\d+)\.(\w+)\.(\w+)", key)
    if match:
        stage, index, part, leaf = int(match[1]), int(match[2]), match[3], match[4]
        table = _TIMM_SEPARABLE if stage == 0 else _TIMM_INVERTED
        if part not in table:
            return key
        role, kind = table[part]
        block = keys.block.format(stage=stage + keys.stage_offset, index=index)
        if role == "project":
            return f"{block}.{keys.project}.{keys.project_conv if kind == 'conv' else keys.project_bn}.{leaf}"
        return f"{block}.{getattr(keys, role)}.{kind}.{leaf}"
    head, _, leaf = key.partition(".")
    if head in _TIMM_ENDS:
        role, kind = _TIMM_ENDS[head]
        return f"{getattr(keys, role)}.{kind}.{leaf}"
    return key


def _renamed(state: StateDict, keys: MobileNetV2Keys) -> StateDict:
    named = ((_mobilenetv2_key(k, keys), v) for k, v in state.items())
    return {k: v for k, v in named if k is not None}


def mobilenetv2_to_mmdet(state: StateDict, target: Mapping[str, torch.Tensor]) -> StateDict:
    """timm ``mobilenetv2_100`` -> MMDetection ``MobileNetV2`` (widen_factor 1)."""
    return _renamed(state, MMDET_MOBILENETV2)


def mobilenetv2_to_torchreid(state: StateDict, target: Mapping[str, torch.Tensor]) -> StateDict:
    """timm ``mobilenetv2_100`` -> torchreid ``mobilenetv2_x1_0``; the first block's extra expansion conv starts
    as the identity."""
    converted = _renamed(state, TORCHREID_MOBILENETV2)
    keys = TORCHREID_MOBILENETV2
    expand = f"{keys.block.format(stage=keys.stage_offset, index=0)}.{keys.expand}"
    weight = target.get(f"{expand}.conv.weight")
    if weight is not None and f"{expand}.conv.weight" not in converted:
        converted.update(identity_conv_bn(expand, weight.shape[0], weight.dtype))
    return converted


def identity_conv_bn(prefix: str, channels: int, dtype: torch.dtype, eps: float = 1e-5) -> StateDict:
    """A 1x1 conv and BatchNorm (``prefix.conv``, ``prefix.bn``) that pass their input through in eval mode."""
    return {
        f"{prefix}.conv.weight": torch.eye(channels, dtype=dtype)[:, :, None, None],
        f"{prefix}.bn.weight": torch.ones(channels, dtype=dtype), f"{prefix}.bn.bias": torch.zeros(channels, dtype=dtype),
        f"{prefix}.bn.running_mean": torch.zeros(channels, dtype=dtype),
        f"{prefix}.bn.running_var": torch.full((channels,), 1 - eps, dtype=dtype),
        f"{prefix}.bn.num_batches_tracked": torch.tensor(0),
    }


# ------------------------------------------------------------------------------------------ loading


def load_converted(module: nn.Module, path: str | Path, convert: Converter, skip: tuple[str, ...] = ()) -> None:
    """Load the timm checkpoint at ``path`` into ``module`` through ``convert``; every weight of ``module`` whose
    key does not start with one of ``skip`` (heads trained afresh) must be filled, with its shape."""
    own = {k: v for k, v in module.state_dict().items() if not k.startswith(skip)}
    state = convert(read_timm_state(path), own)
    missing = [k for k in own if k not in state]
    wrong = [k for k, v in state.items() if k not in own or v.shape != own[k].shape]
    if missing or wrong:
        raise ConversionError(
            f"{path} does not fit {type(module).__name__}: {len(missing)} missing keys {missing[:3]}, "
            f"{len(wrong)} unexpected or of another shape {wrong[:3]} (expected a timm checkpoint of the same network)"
        )
    module.load_state_dict(state, strict=False)
