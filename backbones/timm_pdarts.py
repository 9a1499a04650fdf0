"""timm models of the DARTS-family networks: ``timm.create_model('pdarts_imagenet', genotype=...)``.

Importing this module (``import backbones`` does) registers, for each published genotype of
:data:`PUBLISHED_GENOTYPES`, three models named ``<genotype in lower case>_<setting>``: ``_c10`` and
``_c100`` (CIFAR network, C=36, 20 cells, 32x32) and ``_imagenet`` (mobile setting, C=48, 14 cells,
224x224). ``genotype=`` swaps in any other cell (registry name, DARTS string or ``genotype.json``).

The models subclass :class:`pdarts_wild.networks.NetworkCIFAR` / ``NetworkImageNet`` (same modules,
same state-dict keys) and add timm's head and API: ``num_classes``, ``in_chans``, ``global_pool``,
``drop_rate`` (dropout before the classifier), ``drop_path_rate`` (DARTS drop-path), ``forward_features``
/ ``forward_head(pre_logits=)``, ``get_classifier`` / ``reset_classifier``, ``features_only=True``
(hooks on the last feature map of each resolution), ``set_grad_checkpointing``, ``group_matcher``.

``auxiliary=True`` adds the auxiliary head: in training mode ``forward`` then returns
``(logits, aux_logits)``; in eval mode, and always without the head, plain logits.
"""
import contextlib
from pathlib import Path
from typing import Any, Optional, Union

import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import create_classifier, register_notrace_function, register_notrace_module
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from torch import nn

from pdarts_wild.checkpoints import our_key_layout
from pdarts_wild.genotype import Genotype
from pdarts_wild.networks import CellNetwork, NetworkCIFAR, NetworkImageNet, classifier_layer
from pdarts_wild.ops import AvgPool3x3, BatchNorm2d, DilatedDepthwiseConv2d, gradient_in_layout_of, pixel_grid

# These branch on their input (size, layout, autograd): FX feature extraction keeps them whole, as leaves.
register_notrace_module(AvgPool3x3)
register_notrace_module(BatchNorm2d)
register_notrace_module(DilatedDepthwiseConv2d)
register_notrace_function(pixel_grid)
register_notrace_function(gradient_in_layout_of)

__all__ = [
    "TimmCellNetwork", "TimmNetworkCIFAR", "TimmNetworkImageNet", "checkpoint_filter_fn",
    "PUBLISHED_GENOTYPES", "MODEL_NAMES", "model_name",
]

GenotypeSpec = Union[Genotype, str, Path]

PUBLISHED_GENOTYPES = ("DARTS_V1", "DARTS_V2", "PDARTS", "PC_DARTS_cifar", "PC_DARTS_image", "OPP_DARTS")
AUX_BN_GENOTYPES = frozenset({"PDARTS"})  # BN(768) in the ImageNet aux head: P-DARTS' code only

# pdarts:utils.py (search-space-and-networks spec, pdarts §8)
CIFAR10_MEAN, CIFAR10_STD = (0.49139968, 0.48215827, 0.44653124), (0.24703233, 0.24348505, 0.26158768)
CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)


class TimmCellNetwork(CellNetwork):
    """timm's model API over a :class:`CellNetwork`; subclasses build the network, then call
    :meth:`_init_timm`, which swaps the network's pooling and classifier for timm's head.
    ``drop_path_prob`` starts at ``drop_path_rate``; a DARTS training loop ramps it from 0 to
    ``drop_path_rate``."""

    def _init_timm(self, num_classes: int, in_chans: int, global_pool: str, drop_rate: float,
                   drop_path_rate: float, stem_taps: list[dict[str, Any]]) -> None:
        if not 0.0 <= drop_path_rate < 1.0:
            raise ValueError(f"drop_path_rate must be in [0, 1), got {drop_path_rate}")
        self.in_chans = in_chans
        self.drop_rate = drop_rate
        self.drop_path_rate = drop_path_rate
        self.drop_path_prob = drop_path_rate
        self.num_features = self.cell_channels[-1]
        self.head_drop = nn.Dropout(drop_rate)
        self._build_timm_head(num_classes, global_pool)
        self.feature_info = stem_taps + self._cell_taps()

    def _cell_taps(self) -> list[dict[str, Any]]:
        """The last cell at each stride, as timm ``feature_info`` entries."""
        last = len(self.cells) - 1
        return [
            dict(num_chs=self.cell_channels[i], reduction=self.cell_strides[i], module=f"cells.{i}")
            for i in range(len(self.cells))
            if i == last or self.cell_strides[i + 1] != self.cell_strides[i]
        ]

    def _build_timm_head(self, num_classes: int, global_pool: str) -> None:
        """timm's selectable global pooling and a classifier sized for it (identity for 0 classes)."""
        self.num_classes = num_classes
        self.global_pooling, self.classifier = create_classifier(self.num_features, num_classes, pool_type=global_pool)
        self.head_hidden_size = self.num_features * self.global_pooling.feat_mult()

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        """Parameter groups for layer-wise learning-rate decay: stem(s), then one group per cell."""
        return dict(stem=r"^stem", blocks=r"^cells\.(\d+)")

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.classifier

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        """A new classifier (and auxiliary classifier) for ``num_classes``; keeps the pooling unless given."""
        device = next(self.parameters()).device
        dtype = next(self.parameters()).dtype
        with torch.device(device):
            self._build_timm_head(num_classes, self.global_pooling.pool_type if global_pool is None else global_pool)
            if self.auxiliary:
                self.auxiliary_head.classifier = classifier_layer(self.auxiliary_head.num_features, num_classes)
        for module in (self.global_pooling, self.classifier, *([self.auxiliary_head] if self.auxiliary else [])):
            module.to(dtype=dtype).train(self.training)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.head_drop(self.global_pooling(gradient_in_layout_of(x)))
        return x if pre_logits else self.classifier(x)

    def forward(self, x: torch.Tensor) -> Union[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Logits; ``(logits, aux_logits)`` in training mode with ``auxiliary=True``."""
        logits, aux_logits = self.forward_with_aux(x)
        if aux_logits is None:
            return logits
        return logits, aux_logits


def _on_device(device: Union[torch.device, str, None]) -> contextlib.AbstractContextManager:
    return contextlib.nullcontext() if device is None else torch.device(device)


class TimmNetworkCIFAR(TimmCellNetwork, NetworkCIFAR):
    """:class:`NetworkCIFAR` with timm's API. Feature taps: the last cell at strides 1, 2 and 4."""

    def __init__(
        self,
        genotype: GenotypeSpec = "PDARTS",
        C: int = 36,
        layers: int = 20,
        num_classes: int = 10,
        in_chans: int = 3,
        auxiliary: bool = False,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        global_pool: str = "avg",
        device: Union[torch.device, str, None] = None,
        dtype: Optional[torch.dtype] = None,
    ) -> None:
        with _on_device(device):
            super().__init__(genotype, C=C, num_classes=num_classes, layers=layers, auxiliary=auxiliary,
                             in_chans=in_chans)
            self._init_timm(num_classes, in_chans, global_pool, drop_rate, drop_path_rate, stem_taps=[])
        self.to(dtype=dtype)


class TimmNetworkImageNet(TimmCellNetwork, NetworkImageNet):
    """:class:`NetworkImageNet` with timm's API. Feature taps: ``stem0`` (stride 4), then the last cell
    at strides 8, 16 and 32 (PDARTS, C=48: 48, 192, 384, 768 channels)."""

    def __init__(
        self,
        genotype: GenotypeSpec = "PDARTS",
        C: int = 48,
        layers: int = 14,
        num_classes: int = 1000,
        in_chans: int = 3,
        auxiliary: bool = False,
        aux_bn: bool = True,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        global_pool: str = "avg",
        device: Union[torch.device, str, None] = None,
        dtype: Optional[torch.dtype] = None,
    ) -> None:
        with _on_device(device):
            super().__init__(genotype, C=C, num_classes=num_classes, layers=layers, auxiliary=auxiliary,
                             in_chans=in_chans, aux_bn=aux_bn)
            stem_tap = dict(num_chs=C, reduction=self.stem_stride // 2, module="stem0")
            self._init_timm(num_classes, in_chans, global_pool, drop_rate, drop_path_rate, stem_taps=[stem_tap])
        self.to(dtype=dtype)


def checkpoint_filter_fn(state_dict: dict[str, Any], model: nn.Module) -> dict[str, torch.Tensor]:
    """Map the P-DARTS authors' checkpoints and ours onto ``model``.

    Unwraps ``{'state_dict': ...}``, strips DataParallel/DDP ``module.`` prefixes, renames the authors'
    ``_ops`` to ``ops``, and drops auxiliary-head weights the model cannot take (no head, or a head for
    another number of classes).
    """
    own = model.state_dict()
    return {key: value for key, value in our_key_layout(state_dict).items()
            if not key.startswith("auxiliary_head.") or (key in own and own[key].shape == value.shape)}


# ------------------------------------------------------------------------------------------ registry

SETTINGS: dict[str, dict[str, Any]] = {
    "c10": dict(
        num_classes=10, input_size=(3, 32, 32), pool_size=(8, 8), crop_pct=1.0,
        mean=CIFAR10_MEAN, std=CIFAR10_STD, first_conv="stem.0",
    ),
    "c100": dict(
        num_classes=100, input_size=(3, 32, 32), pool_size=(8, 8), crop_pct=1.0,
        mean=CIFAR100_MEAN, std=CIFAR100_STD, first_conv="stem.0",
    ),
    "imagenet": dict(
        num_classes=1000, input_size=(3, 224, 224), pool_size=(7, 7), crop_pct=0.875,
        mean=IMAGENET_DEFAULT_MEAN, std=IMAGENET_DEFAULT_STD, first_conv="stem0.0",
    ),
}


def model_name(genotype: str, setting: str) -> str:
    """The registered name: ``pdarts_c10``, ``pc_darts_image_imagenet``, ..."""
    return f"{genotype.lower()}_{setting}"


MODEL_NAMES = [model_name(g, s) for g in PUBLISHED_GENOTYPES for s in SETTINGS]

default_cfgs = generate_default_cfgs({
    model_name(g, s): dict(url="", interpolation="bilinear", classifier="classifier", **cfg)
    for g in PUBLISHED_GENOTYPES for s, cfg in SETTINGS.items()
})


def _create(variant: str, published: str, setting: str, pretrained: bool, **kwargs: Any) -> TimmCellNetwork:
    """Build ``variant`` (``published`` genotype unless ``genotype=`` is given) the timm way."""
    kwargs.setdefault("genotype", published)
    if setting == "imagenet":
        model_cls: type[TimmCellNetwork] = TimmNetworkImageNet
        kwargs.setdefault("aux_bn", published in AUX_BN_GENOTYPES)
        out_indices = (0, 1, 2, 3)  # stem0 and three strides of cells (any layers >= 3)
    else:
        model_cls = TimmNetworkCIFAR
        out_indices = (0, 1, 2)
    return build_model_with_cfg(
        model_cls, variant, pretrained,
        pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg=dict(feature_cls="hook", no_rewrite=True, out_indices=out_indices),
        **kwargs,
    )


def _register(genotype: str, setting: str) -> None:
    name = model_name(genotype, setting)

    def entrypoint(pretrained: bool = False, **kwargs: Any) -> TimmCellNetwork:
        return _create(name, genotype, setting, pretrained, **kwargs)

    entrypoint.__name__ = entrypoint.__qualname__ = name
    network = "ImageNet (mobile setting)" if setting == "imagenet" else "CIFAR"
    entrypoint.__doc__ = f"The {network} network with the {genotype} cell; pretrained_cfg {setting!r}."
    globals()[name] = register_model(entrypoint)


for _genotype in PUBLISHED_GENOTYPES:
    for _setting in SETTINGS:
        _register(_genotype, _setting)
