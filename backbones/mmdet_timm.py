"""MMDetection's ResNet and MobileNetV2 backbones initialised from timm ImageNet checkpoints (the baselines).

``ResNetFromTimm`` and ``MobileNetV2FromTimm`` are MMDetection's ``ResNet`` and ``MobileNetV2``, unchanged but for
``init_cfg=dict(type='Pretrained', checkpoint=PATH)``: PATH is a timm ``resnet50`` / ``mobilenetv2_100``
checkpoint (``tools/train_imagenet.py --model ...``, or any timm file of that model), converted to MMDetection's
keys by :mod:`backbones.timm_convert`, and every backbone weight must be in it with its shape (MMEngine's own
``Pretrained`` loads whatever keys match and leaves the rest at random). Download URLs are refused.
"""
from __future__ import annotations

from mmdet.models.backbones import MobileNetV2, ResNet
from mmdet.registry import MODELS
from mmengine.logging import print_log

from .timm_convert import ConversionError, Converter, load_converted, mobilenetv2_to_mmdet, resnet_from_timm


class TimmPretrainedInit:
    """Mixin over an MMDetection backbone: a ``Pretrained`` ``init_cfg`` loads a timm checkpoint via ``convert``."""

    convert: Converter
    timm_model: str

    def init_weights(self) -> None:
        cfg = self.init_cfg  # type: ignore[attr-defined]
        if not (isinstance(cfg, dict) and cfg.get("type") == "Pretrained"):
            super().init_weights()  # type: ignore[misc]
            return
        checkpoint = str(cfg["checkpoint"])
        name = type(self).__name__
        if "://" in checkpoint:
            raise ConversionError(f"{name}: {checkpoint!r} is a download; point model.backbone.init_cfg.checkpoint at "
                                  f"a local timm {self.timm_model} checkpoint (tools/train_imagenet.py --model "
                                  f"{self.timm_model})")
        print_log(f"{name}: loading timm {self.timm_model} ImageNet weights from {checkpoint}", logger="current")
        load_converted(self, checkpoint, self.convert)  # type: ignore[arg-type]
        self._is_init = True  # type: ignore[attr-defined]


@MODELS.register_module()
class ResNetFromTimm(TimmPretrainedInit, ResNet):
    """MMDetection's ``ResNet`` (``style='pytorch'``, torchvision's keys, as timm's) from a timm ``resnet50`` file."""

    convert = staticmethod(resnet_from_timm)
    timm_model = "resnet50"


@MODELS.register_module()
class MobileNetV2FromTimm(TimmPretrainedInit, MobileNetV2):
    """MMDetection's ``MobileNetV2`` (widen_factor 1) from a timm ``mobilenetv2_100`` file.

    ``out_indices`` count ``layer1..layer7, conv2`` from 0: 0-6 give 16, 24, 32, 64, 96, 160, 320 channels at
    strides 2, 4, 8, 16, 16, 32, 32, and 7 the 1x1 head conv's 1280 channels at stride 32 (our configs take 7 for
    stride 32: conv2 always runs, and a level before it would leave its weights without gradients).
    """

    convert = staticmethod(mobilenetv2_to_mmdet)
    timm_model = "mobilenetv2_100"
