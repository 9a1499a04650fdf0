#!/usr/bin/env python
"""Export a pdarts-wild timm model to ONNX and check it against PyTorch with onnxruntime.

MODEL is a registered model (pdarts_c10, darts_v2_imagenet, ...; see README "timm models") or a
genotype (registry name, genotype.json / text file, DARTS string) built as the network given by
--net. With --checkpoint, the network takes the settings the file holds (model_args, which the
training tools write), then any of --num-classes, --channels, --layers and a genotype given as MODEL,
and loads every weight of the file (a file of another network is refused). The ONNX graph comes from
torch.onnx.export(dynamo=True) (torch.export underneath) with a dynamic batch dimension; input
"input" (N x C x H x W), output "logits", written whole or not at all. Afterwards onnxruntime runs
it on random images and the largest difference from PyTorch's output is printed. The check fails (exit
1) when that difference exceeds --tolerance and the ONNX outputs are also further from PyTorch's float64
outputs than twice PyTorch's own float32 error. With random weights every image gets nearly the same
logits, so the check means most with --checkpoint.

Examples:
  tools/export_onnx.py pdarts_imagenet --out pdarts_imagenet.onnx
  tools/export_onnx.py runs/x/genotype.json --net cifar --num-classes 100 --out searched.onnx
  tools/export_onnx.py pdarts_imagenet --checkpoint imagenet_model.pt --input-size 256 128 --out reid.onnx
"""
from __future__ import annotations

import argparse
import copy
import sys
from dataclasses import dataclass
from pathlib import Path

import onnxruntime
import timm
import torch
from torch import nn

from backbones.timm_pdarts import MODEL_NAMES, checkpoint_filter_fn
from pdarts_wild.checkpoints import checkpoint_contents, load_weights, read_checkpoint
from pdarts_wild.cli import ToolParser, positive_int
from pdarts_wild.files import atomic_write
from pdarts_wild.genotype import GenotypeError
from pdarts_wild.messages import unknown_name
from pdarts_wild.search import run_tool
from pdarts_wild.zoo import LISTING, resolve_genotype

NET_MODELS = {"cifar": "pdarts_c10", "imagenet": "pdarts_imagenet"}  # the architecture a bare genotype is built as


def build_model(
    model: str,
    net: str | None = None,
    checkpoint: str | None = None,
    **kwargs: int,
) -> nn.Module:
    """The timm model in eval mode: a registered name, or a genotype built as ``net``, with ``kwargs``
    (num_classes, C, layers) when set. With ``checkpoint`` (the authors' file, timm's or ours) the network takes
    the settings the file holds (``model_args``, as our training tools write them), overridden by ``kwargs``
    and a genotype given as ``model``, and then every one of its weights from the file."""
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    if model not in MODEL_NAMES:
        if net is None:
            raise ValueError(f"{unknown_name('model', model, MODEL_NAMES, LISTING)}; for a genotype, give --net")
        kwargs["genotype"] = resolve_genotype(model)
        model = NET_MODELS[net]
    if checkpoint is None:
        return timm.create_model(model, **kwargs).eval()
    saved = read_checkpoint(checkpoint)
    with checkpoint_contents(checkpoint, "this network"):  # model_args that timm refuses, weights of another shape
        network = timm.create_model(model, **{**saved.get("model_args", {}), **kwargs})
        load_weights(network, checkpoint_filter_fn(saved, network), checkpoint)
    return network.eval()


def export_onnx(model: nn.Module, out: str | Path, input_size: tuple[int, int, int]) -> None:
    """Write ``model`` as ONNX with a dynamic batch dimension (traced at batch 2); an earlier ``out`` is replaced
    only once the new file is whole."""
    example = torch.randn(2, *input_size)
    batch = torch.export.Dim("batch")
    program = torch.onnx.export(
        model, (example,), dynamo=True, verbose=False, input_names=["input"], output_names=["logits"],
        dynamic_shapes=({0: batch},),
    )
    atomic_write(out, program.model_proto.SerializeToString())


@dataclass(frozen=True)
class OnnxCheck:
    """Largest absolute output differences on random images."""

    difference: float  # onnxruntime vs PyTorch (float32)
    onnx_error: float  # onnxruntime vs PyTorch in float64
    torch_error: float  # PyTorch float32 vs PyTorch float64: the rounding noise of float32 itself

    def passed(self, tolerance: float) -> bool:
        """Within ``tolerance`` of PyTorch, or as close to the float64 outputs as PyTorch's float32 is
        (deep networks with realistic BN statistics reach ~5e-4 of float32 noise on their own)."""
        return self.difference <= tolerance or self.onnx_error <= 2 * self.torch_error


def compare_with_onnxruntime(
    model: nn.Module, path: str | Path, input_size: tuple[int, int, int], batch: int = 3
) -> OnnxCheck:
    """Run the ONNX file in onnxruntime and ``model`` in float32 and float64 on the same random images."""
    images = torch.randn(batch, *input_size)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (onnx_out,) = session.run(["logits"], {"input": images.numpy()})
    with torch.no_grad():
        torch_out = model(images).double()
        exact = copy.deepcopy(model).double()(images.double())
    onnx_out = torch.from_numpy(onnx_out).double()
    return OnnxCheck(
        difference=float((onnx_out - torch_out).abs().max()),
        onnx_error=float((onnx_out - exact).abs().max()),
        torch_error=float((torch_out - exact).abs().max()),
    )


def build_parser() -> argparse.ArgumentParser:
    parser = ToolParser(prog="tools/export_onnx.py", description=__doc__,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="registered model name, or a genotype (with --net)")
    parser.add_argument("--out", required=True, help="the .onnx file to write")
    parser.add_argument("--net", choices=sorted(NET_MODELS), help="network for a genotype: cifar or imagenet (mobile)")
    parser.add_argument("--num-classes", type=positive_int, help="default: the model's (10, 100 or 1000)")
    parser.add_argument("--channels", type=positive_int, help="initial channels C (default: the model's)")
    parser.add_argument("--layers", type=positive_int, help="number of cells (default: the model's)")
    parser.add_argument("--input-size", type=positive_int, nargs="+", metavar="PIXELS",
                        help="H [W] of the traced input (default: the model's, 32 or 224)")
    parser.add_argument("--checkpoint", help="weights to load: the authors' release or a training checkpoint")
    parser.add_argument("--tolerance", type=float, default=1e-4,
                        help="|onnxruntime - torch| accepted in any case (default 1e-4); see above")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    checks: list[OnnxCheck] = []

    def export() -> None:
        out = Path(args.out)
        if out.is_dir() or not out.parent.is_dir():
            problem = "is a folder" if out.is_dir() else f"{out.parent} is no folder"
            raise ValueError(f"--out {out}: {problem}; give a file in an existing folder")
        model = build_model(args.model, args.net, args.checkpoint,
                            num_classes=args.num_classes, C=args.channels, layers=args.layers)
        size = list(model.pretrained_cfg["input_size"][1:])
        if args.input_size:
            size = args.input_size * 2 if len(args.input_size) == 1 else args.input_size
        if len(size) != 2 or min(size) < 1:
            raise ValueError(f"--input-size takes one or two positive sizes (H [W]), got {args.input_size}")
        input_size = (model.in_chans, size[0], size[1])
        with torch.no_grad():
            model(torch.zeros(1, *input_size))  # input-size problems surface here, with a clear message
        export_onnx(model, args.out, input_size)
        check = compare_with_onnxruntime(model, args.out, input_size)
        print(f"wrote {args.out} (input {'x'.join(map(str, input_size))}, dynamic batch); "
              f"max |onnxruntime - torch| = {check.difference:.2e}; off the float64 outputs by "
              f"{check.onnx_error:.2e} (onnxruntime) and {check.torch_error:.2e} (torch float32)")
        checks.append(check)

    code = run_tool(export, (GenotypeError, ValueError), lambda: "nothing was written")
    if code == 0 and not checks[0].passed(args.tolerance):
        print(f"error: the ONNX model's outputs differ from PyTorch's by more than {args.tolerance} and are "
              f"less accurate than PyTorch's float32 ones", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
