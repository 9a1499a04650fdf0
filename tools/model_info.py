#!/usr/bin/env python
"""Parameters and multiply-adds of the CIFAR or ImageNet network for any genotype.

Parameters exclude the auxiliary head (the papers' convention). Multiply-adds are those of the
convolution and linear layers for one image, counted by torch.utils.flop_counter.FlopCounterMode
(MACs = FLOPs / 2) on the meta device: nothing is allocated or computed (backbones.complexity, the
same count the training tools write to metrics.json).

Examples:
  tools/model_info.py --list                           # every published genotype and registered model name
  tools/model_info.py PDARTS --net imagenet            # 4,944,352 parameters, 542.8M multiply-adds
  tools/model_info.py runs/x/genotype.json --net cifar --num-classes 100 --json
  tools/model_info.py "Genotype(normal=[...], ...)" --net cifar --channels 64   # P-DARTS' large setting
  tools/model_info.py '|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|' --net nb201 --json
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import torch

from backbones.complexity import count_macs
from pdarts_wild.cli import ToolParser, positive_int
from pdarts_wild.genotype import GenotypeError
from pdarts_wild.nb201 import NB201Arch, NetworkNB201
from pdarts_wild.networks import NetworkCIFAR, NetworkImageNet, count_parameters
from pdarts_wild.search import run_tool
from pdarts_wild.zoo import available_genotypes, resolve_genotype


@dataclass(frozen=True)
class NetworkSetting:
    network: type
    channels: int
    layers: int
    num_classes: int
    input_size: int
    parse: Callable[[str], Any] = resolve_genotype
    # Sizes the network cannot take that it does not refuse itself with a ValueError (the DARTS networks check
    # their input sizes): checked here, not left to a RuntimeError or IndexError deep inside torch.
    min_channels: int = 1
    size_multiple: int = 1
    size_rule: str = ""


SETTINGS = {
    "cifar": NetworkSetting(NetworkCIFAR, channels=36, layers=20, num_classes=10, input_size=32),
    # its stem starts with C // 2 channels
    "imagenet": NetworkSetting(NetworkImageNet, channels=48, layers=14, num_classes=1000, input_size=224,
                               min_channels=2),
    # NAS-Bench-201's TinyNetwork: C=16, 5 cells per stage; all parameters count (it has no aux head)
    "nb201": NetworkSetting(NetworkNB201, channels=16, layers=5, num_classes=10, input_size=32,
                            parse=NB201Arch.resolve, size_multiple=4,
                            size_rule="2 residual reductions whose average-pool and stride-2 conv paths agree on "
                                      "even sizes only"),
}


def model_info(
    genotype: str,
    net: str,
    num_classes: int | None = None,
    channels: int | None = None,
    layers: int | None = None,
    input_size: int | None = None,
) -> dict[str, int]:
    """``{"params": ..., "macs": ...}`` of the network; unset options take the setting's defaults."""
    setting = SETTINGS[net]
    size = input_size or setting.input_size
    channels = channels or setting.channels
    if channels < setting.min_channels:
        raise ValueError(f"--net {net} needs --channels of at least {setting.min_channels}, got {channels}")
    if size % setting.size_multiple:
        raise ValueError(f"--net {net} needs an --input-size that is a multiple of {setting.size_multiple} "
                         f"({setting.size_rule}), got {size}")
    with torch.device("meta"):
        model = setting.network(
            setting.parse(genotype),
            C=channels,
            num_classes=setting.num_classes if num_classes is None else num_classes,
            layers=layers or setting.layers,
        )
    return {"params": count_parameters(model), "macs": count_macs(model, (size, size))}


def build_parser() -> argparse.ArgumentParser:
    parser = ToolParser(prog="tools/model_info.py", description=__doc__,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("genotype", nargs="?",
                        help="registry name (PDARTS, DARTS_V2, ...), genotype.json or text file, or DARTS "
                        "string; for --net nb201 an arch string or the genotype.json of an nb201 search")
    parser.add_argument("--list", action="store_true",
                        help="print the published genotypes and the registered timm and torchreid model names")
    parser.add_argument("--net", choices=sorted(SETTINGS),
                        help="cifar: C=36, 20 cells, 32x32; imagenet: mobile setting, C=48, 14 cells, 224x224; "
                             "nb201: NAS-Bench-201's network for a '|op~0|+|op~0|op~1|+...' string (C=16, 5 cells "
                             "per stage)")
    parser.add_argument("--num-classes", type=positive_int, help="default: 10 (cifar, nb201), 1000 (imagenet)")
    parser.add_argument("--channels", type=positive_int, help="initial channels C (default: the setting's)")
    parser.add_argument("--layers", type=positive_int, help="number of cells (default: the setting's)")
    parser.add_argument("--input-size", type=positive_int, help="square input side in pixels (default: 32 / 224)")
    parser.add_argument("--json", action="store_true", help='print {"params": N, "macs": N} only')
    return parser


def print_names() -> None:
    """The names a genotype, timm model or torchreid model may be given by."""
    with warnings.catch_warnings():  # torchreid warns at import that its evaluation runs in Python
        warnings.simplefilter("ignore")
        from backbones import timm_pdarts, torchreid_pdarts  # timm and torchreid only for this listing

    print("genotypes:        " + ", ".join(available_genotypes()))
    print("timm models:      " + ", ".join(timm_pdarts.MODEL_NAMES))
    print("torchreid models: " + ", ".join(torchreid_pdarts.MODEL_NAMES))


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.list:
        print_names()
        return 0
    if args.genotype is None or args.net is None:
        parser.error("give a GENOTYPE and --net (or --list)")

    def report() -> None:
        info = model_info(args.genotype, args.net, args.num_classes, args.channels, args.layers, args.input_size)
        if args.json:
            print(json.dumps(info))
        else:
            print(f"parameters     {info['params']:>13,}  ({info['params'] / 1e6:.2f}M, auxiliary head excluded)")
            print(f"multiply-adds  {info['macs']:>13,}  ({info['macs'] / 1e6:.1f}M, conv and linear layers)")

    return run_tool(report, (GenotypeError, ValueError), lambda: "nothing was written")


if __name__ == "__main__":
    sys.exit(main())
