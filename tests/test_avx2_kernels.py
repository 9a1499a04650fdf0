"""Our convolutions on the CPU kernels of machines without AVX-512 (issue 17).

oneDNN 3.12's weight gradient of a strided 1x1 conv on a channels-last map of fewer than 8 channels
(``jit_avx2_1x1``) writes past its buffer and corrupts the heap (BENCHMARKS.md, "Known issues"): a tiny
PC-DARTS search died with ``double free or corruption``. ``ONEDNN_MAX_CPU_ISA=AVX2`` makes any x86-64 CPU
take those kernels; oneDNN reads it once, when torch starts, so the search paths run in a fresh process.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F
from torch.nn.grad import conv2d_input, conv2d_weight

from pdarts_wild.ops import PointwiseConv2d
from tolerance import assert_within, sum_tolerance

ROOT = Path(__file__).resolve().parents[1]


def check_pointwise_conv(c_in: int, stride: int, channels_last: bool) -> None:
    """PointwiseConv2d's output and gradients in float32 against the strided 1x1 conv in float64 (NCHW), within
    float32's rounding of each sum: c_in products per output, batch x output pixels per weight gradient, c_out
    per input gradient."""
    torch.manual_seed(c_in)
    conv = PointwiseConv2d(c_in, 3, stride)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(4, c_in, 12, 12).to(memory_format=fmt).requires_grad_()
    out = conv(x)
    grad = torch.randn_like(out)
    x_grad, w_grad = torch.autograd.grad(out, [x, conv.weight], grad)
    x64, w64, g64 = x.detach().double(), conv.weight.detach().double(), grad.double()
    assert_within(out, F.conv2d(x64, w64, stride=stride),
                  sum_tolerance(c_in, F.conv2d(x64.abs(), w64.abs(), stride=stride)))
    assert_within(w_grad, conv2d_weight(x64, w64.shape, g64, stride),
                  sum_tolerance(out[0, 0].numel() * 4, conv2d_weight(x64.abs(), w64.shape, g64.abs(), stride)))
    assert_within(x_grad, conv2d_input(x64.shape, w64, g64, stride),
                  sum_tolerance(3, conv2d_input(x64.shape, w64.abs(), g64.abs(), stride)))
    if channels_last and c_in > 1:  # one channel: both layouts at once
        assert out.is_contiguous(memory_format=fmt) and x_grad.is_contiguous(memory_format=fmt)


@pytest.mark.parametrize("c_in", [4, 8])  # 4: a stride-1 conv of the pixel grid; 8: the strided conv
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("channels_last", [True, False])
def test_pointwise_conv_equals_the_strided_conv(c_in: int, stride: int, channels_last: bool) -> None:
    check_pointwise_conv(c_in, stride, channels_last)


CHILD = """
import torch
from torch.nn import functional as F
from pdarts_wild.spaces import get_space
from pdarts_wild.supernet import Supernet
from benchmarks.baseline_supernet import baseline_from
from test_avx2_kernels import check_pointwise_conv

for c_in in range(1, 9):  # every width below the AVX2 kernels' channel block of 8, and 8
    check_pointwise_conv(c_in, 2, channels_last=True)
torch.manual_seed(0)  # PC-DARTS, 8 channels: its reduction edges' skip_connect is a FactorizedReduce of 4 channels
ours = Supernet(get_space("darts"), get_space("darts").initial_candidates(), 10, channels=8, layers=3,
                partial_channels=4, edge_normalization=True)
for model in (ours, baseline_from(ours)):
    model = model.to(memory_format=torch.channels_last)
    x = torch.randn(2, 3, 16, 16).contiguous(memory_format=torch.channels_last)
    F.cross_entropy(model(x), torch.tensor([1, 2])).backward()
    assert all(p.grad is not None for p in model.parameters())
print("survived")
"""


@pytest.mark.skipif(sys.platform != "linux" or os.uname().machine != "x86_64", reason="oneDNN's x86-64 kernels")
def test_search_paths_survive_the_avx2_kernels() -> None:
    """Costs about 5 s: a fresh torch, PointwiseConv2d at widths 1-8, a PC-DARTS step of ours and of the baseline."""
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2", "MALLOC_CHECK_": "3", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", CHILD], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "survived", (done.returncode, done.stderr[-2000:])
