"""Candidate operations of the DARTS family, built by name from one table.

Module layouts (the ``op`` sequences, ``conv_1``/``conv_2``/``bn``) follow the authors' DARTS code so
that their released weights map onto ours key by key.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn
from torch.nn import functional as F

OpFactory = Callable[[int, int, bool], nn.Module]


class Zero(nn.Module):
    """The ``none`` op: zeros of the output shape (spatially halved when ``stride`` is 2)."""

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            return torch.zeros_like(x)
        return torch.zeros_like(x[:, :, :: self.stride, :: self.stride])


class Noise(nn.Module):
    """RobustDARTS' ``noise`` op (space S4): a fresh N(0, 1) sample of the output shape, on every call."""

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.randn_like(x[:, :, :: self.stride, :: self.stride])


class _PixelGrid(torch.autograd.Function):
    """``x[:, :, start::step, start::step]`` whose gradient has ``x``'s memory layout.

    Autograd's own backward of an index writes into NCHW-contiguous zeros; for a channels-last ``x`` the
    layouts then mix downstream, and the CPU's mixed-layout kernels (ReLU backward, sums) are several
    times slower than the channels-last ones.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, start: int, step: int) -> torch.Tensor:
        ctx.shape, ctx.index = x.shape, (slice(None), slice(None), slice(start, None, step), slice(start, None, step))
        ctx.memory_format = memory_format_of(x)
        return x[ctx.index]

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        out = torch.empty(ctx.shape, dtype=grad.dtype, device=grad.device, memory_format=ctx.memory_format).zero_()
        out[ctx.index] = grad
        return out, None, None


def memory_format_of(x: torch.Tensor) -> torch.memory_format:
    """``torch.channels_last`` for a 4-d tensor laid out so (and not also NCHW-contiguous, as with one channel),
    else ``torch.contiguous_format``."""
    if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format


def pixel_grid(x: torch.Tensor, start: int, step: int) -> torch.Tensor:
    """The pixels ``x[:, :, start::step, start::step]``; their gradient keeps ``x``'s layout (channels-last
    stays channels-last)."""
    if not torch.jit.is_scripting() and torch.is_grad_enabled() and x.requires_grad:
        return _pixel_grid_keeping_layout(x, start, step)
    return x[:, :, start::step, start::step]


@torch.jit.unused
def _pixel_grid_keeping_layout(x: torch.Tensor, start: int, step: int) -> torch.Tensor:
    return _PixelGrid.apply(x, start, step)


class _Relayout(torch.autograd.Function):
    """``x`` in memory layout ``memory_format`` (a copy only if it is laid out otherwise); the gradient coming
    back is copied into ``x``'s own layout."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, memory_format: torch.memory_format) -> torch.Tensor:
        ctx.memory_format = memory_format_of(x)
        out = x.contiguous(memory_format=memory_format)
        return x.view_as(x) if out is x else out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad.contiguous(memory_format=ctx.memory_format), None


def gradient_in_layout_of(x: torch.Tensor) -> torch.Tensor:
    """``x``, whose gradient will have ``x``'s layout: put before an op from elsewhere whose backward returns
    NCHW (timm's global pooling is a mean), so that a channels-last backward pass stays channels-last."""
    if not torch.jit.is_scripting() and torch.is_grad_enabled() and x.requires_grad:
        return _relayout(x, memory_format_of(x))
    return x


@torch.jit.unused
def _relayout(x: torch.Tensor, memory_format: torch.memory_format) -> torch.Tensor:
    return _Relayout.apply(x, memory_format)


class BatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` (the same parameters, statistics and numbers) of every candidate op.

    On the CPU a channels-last map of fewer than 8 channels (PC-DARTS' quarter of 16 channels) is normalised
    in NCHW, output and input gradient channels-last: the CPU's channels-last kernel vectorises over
    channels and is 4x slower there (64x4x32x32 forward + backward: 3.2 ms, against 0.7 ms in NCHW plus
    0.1 ms for each copy there and back).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cpu" or x.shape[1] >= 8 or memory_format_of(x) != torch.channels_last:
            return super().forward(x)
        return _relayout(super().forward(_relayout(x, torch.contiguous_format)), torch.channels_last)

    def plain(self) -> nn.BatchNorm2d:
        """A plain ``nn.BatchNorm2d`` holding the same parameters and statistics."""
        plain = nn.BatchNorm2d(self.num_features, self.eps, self.momentum, self.affine, self.track_running_stats)
        for name, tensor in [*self.named_parameters(recurse=False), *self.named_buffers(recurse=False)]:
            setattr(plain, name, tensor)
        return plain.train(self.training)

    def __prepare_scriptable__(self) -> nn.BatchNorm2d:
        """For ``torch.jit.script``, which knows no ``super()``: :meth:`plain`."""
        return self.plain()


class UniformMaskDropout(nn.Dropout):
    """``nn.Dropout`` whose mask keeps an element where a uniform random 32-bit integer is at least the threshold
    that 1 - p of them reach: the same distribution (keep with probability 1 - p, to within 2^-32; kept
    elements scaled by 1 / (1 - p)) from other random numbers. On the CPU its draw is 5x faster than the
    ``bernoulli_`` of ``F.dropout`` and 1.7x faster than one uniform float per element.

    Under ``torch.compile`` the rate is read from the tensor ``rate`` (set it with :meth:`set_rate`), so that
    a new rate (P-DARTS decays it every epoch) needs no new graph, and the mask from uniform floats, which
    inductor draws inside the fused kernel (``random_`` cannot be traced)."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__(p)
        self.register_buffer("rate", torch.tensor(float(p)), persistent=False)

    def set_rate(self, p: float) -> None:
        self.p = p
        self.rate.fill_(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        if torch.compiler.is_compiling():
            return torch.where(torch.rand_like(x) >= self.rate, x * (1 / (1 - self.rate)), 0)
        if self.p == 0:
            return x
        if self.p >= 1:
            return x * 0
        return x * dropout_mask(x, self.p)


def dropout_mask(x: torch.Tensor, p: float) -> torch.Tensor:
    """A tensor of ``x``'s shape, layout and dtype: each element 1 / (1 - p) with probability 1 - p, else 0.

    The random bits come as full-range 64-bit integers, two 32-bit draws in one (the CPU generator's cheapest
    way to them), compared as 32-bit integers in ``x``'s memory order."""
    threshold = min(2**31 - round((1 - p) * 2**32), 2**31 - 1)
    n = x.numel()
    bits = torch.empty((n + 1) // 2, dtype=torch.int64, device=x.device).random_(-2**63, None).view(torch.int32)[:n]
    mask = torch.ge(bits, threshold, out=torch.empty(n, dtype=x.dtype, device=x.device)).mul_(1 / (1 - p))
    if x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last):
        return mask.as_strided(x.shape, x.stride())
    return mask.view(x.shape)


class GlobalAvgPool(nn.Module):
    """The mean over the whole map, (N, C, 1, 1): ``nn.AdaptiveAvgPool2d(1)`` computed as an average pool of
    the map's size, whose gradient keeps channels-last (the adaptive pool's, a mean's, comes back NCHW)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, x.shape[-2:])


class ReLUConvBN(nn.Module):
    """ReLU -> k x k conv -> BN: the DARTS 1x1 cell preprocessing and NAS-Bench-201's ``nor_conv``."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int, affine: bool = True,
                 bias: bool = False) -> None:
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, bias=bias),
            BatchNorm2d(c_out, affine=affine),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class DilatedDepthwiseConv2d(nn.Conv2d):
    """A depthwise conv with dilation 2 ("same" padding, stride 1 or 2), the parameters of ``nn.Conv2d``.

    On the CPU's channels-last path, where oneDNN's backward pass of dilated depthwise convs is several
    times slower than that of plain ones, it is computed as plain convs on the even/odd pixel phases of
    the input: with stride 2 only the even-even phase is read; with stride 1 the four phases are stacked
    along the batch, convolved, and put back in place. The same sums of the same products: outputs equal
    ``nn.Conv2d``'s, gradients up to summation order, both channels-last. Elsewhere (CUDA, NCHW, odd
    sizes) it is ``nn.Conv2d``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, height, width = x.shape
        if x.device.type != "cpu" or height % 2 or width % 2 or not x.is_contiguous(memory_format=torch.channels_last):
            return self._conv_forward(x, self.weight, self.bias)
        half = (self.kernel_size[0] - 1) // 2  # the padding of the plain conv on a phase
        if self.stride[0] == 2:
            return F.conv2d(pixel_grid(x, 0, 2), self.weight, None, 1, half, 1, self.groups)
        h, w = height // 2, width // 2
        # (n, c, 2h, 2w) -> (4n, c, h, w), phase (row parity, column parity) major; channels stay innermost
        phases = x.permute(0, 2, 3, 1).reshape(n, h, 2, w, 2, c).permute(2, 4, 0, 1, 3, 5).reshape(4 * n, h, w, c)
        out = F.conv2d(phases.permute(0, 3, 1, 2), self.weight, None, 1, half, 1, self.groups)
        out = out.permute(0, 2, 3, 1).reshape(2, 2, n, h, w, c).permute(2, 3, 0, 4, 1, 5).reshape(n, height, width, c)
        return out.permute(0, 3, 1, 2)  # channels-last, like the input


class AvgPool3x3(nn.AvgPool2d):
    """DARTS' ``avg_pool_3x3``: ``nn.AvgPool2d(3, stride, padding=1, count_include_pad=False)``.

    On the CPU's channels-last path at stride 1 it is computed as a depthwise conv with a kernel of ones,
    scaled by one over each window's count of pixels inside the map: the same sums, 2-4x faster forward
    and backward than the CPU's channels-last pooling (64x16x32x32: 1.9 ms vs 4.2 ms). Elsewhere (CUDA,
    NCHW, stride 2, where the pool is as fast) it is the pool.
    """

    def __init__(self, stride: int) -> None:
        super().__init__(3, stride=stride, padding=1, count_include_pad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cpu" or self.stride != 1 or not x.is_contiguous(memory_format=torch.channels_last):
            return F.avg_pool2d(x, self.kernel_size, self.stride, self.padding, self.ceil_mode, self.count_include_pad,
                                self.divisor_override)
        c, height, width = x.shape[1], x.shape[2], x.shape[3]
        count = F.conv2d(x.new_ones(1, 1, height, width), x.new_ones(1, 1, 3, 3), padding=1)
        return F.conv2d(x, x.new_ones(c, 1, 3, 3), padding=1, groups=c) * count.reciprocal_()


def _depthwise(c: int, kernel: int, stride: int, padding: int, dilation: int) -> nn.Conv2d:
    """A bias-free depthwise conv; dilation 2 with "same" padding gets the phase-wise CPU path."""
    if dilation == 2 and padding == kernel - 1 and kernel % 2 and stride in (1, 2):
        return DilatedDepthwiseConv2d(c, c, kernel, stride=stride, padding=padding, dilation=2, groups=c, bias=False)
    return nn.Conv2d(c, c, kernel, stride=stride, padding=padding, dilation=dilation, groups=c, bias=False)


def _relu_depthwise_pointwise_bn(
    c_in: int, c_out: int, kernel: int, stride: int, padding: int, dilation: int, affine: bool
) -> list[nn.Module]:
    """One separable unit: ReLU -> depthwise k x k -> pointwise 1x1 -> BN."""
    return [
        nn.ReLU(inplace=False),
        _depthwise(c_in, kernel, stride, padding, dilation),
        nn.Conv2d(c_in, c_out, 1, bias=False),
        BatchNorm2d(c_out, affine=affine),
    ]


class DilConv(nn.Module):
    """Dilated separable conv: one separable unit with dilation (stride on the depthwise conv)."""

    def __init__(
        self, c_in: int, c_out: int, kernel: int, stride: int, padding: int, dilation: int, affine: bool = True
    ) -> None:
        super().__init__()
        self.op = nn.Sequential(*_relu_depthwise_pointwise_bn(c_in, c_out, kernel, stride, padding, dilation, affine))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class SepConv(nn.Module):
    """Separable conv as in DARTS: the separable unit twice, the stride on the first one only."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int, affine: bool = True) -> None:
        super().__init__()
        self.op = nn.Sequential(
            *_relu_depthwise_pointwise_bn(c_in, c_in, kernel, stride, padding, 1, affine),
            *_relu_depthwise_pointwise_bn(c_in, c_out, kernel, 1, padding, 1, affine),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class PointwiseConv2d(nn.Conv2d):
    """A bias-free 1x1 conv (the parameters of ``nn.Conv2d``, one stride for both axes).

    With fewer than 8 input channels and stride s > 1 it is computed, on every device, as a stride-1 conv of
    the pixels ``x[:, :, ::s, ::s]``: the same products and sums. oneDNN's weight gradient of such a strided
    1x1 conv on a channels-last map (``jit_avx2_1x1``, the kernel of CPUs without AVX-512; 8 = its channel
    block, oneDNN 3.12) writes past its buffer and corrupts the heap (BENCHMARKS.md, "Known issues"); a
    stride-1 1x1 conv never reaches it. Wider inputs keep the strided conv: there the pixel grid's copies
    would cost up to 1.3x (forward + backward, 64x32x32x32).
    """

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__(c_in, c_out, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        step = self.stride[0]
        if self.stride[1] != step:
            raise ValueError("PointwiseConv2d takes the same stride along both axes")
        if step == 1 or self.in_channels >= 8:  # stride 1: the torchreid adapter keeps a reduction's resolution
            return self._conv_forward(x, self.weight, self.bias)
        return F.conv2d(pixel_grid(x, 0, step), self.weight, self.bias)


class FactorizedReduce(nn.Module):
    """Halve H and W with two offset 1x1 stride-2 convs whose outputs are concatenated (needs even H, W)."""

    def __init__(self, c_in: int, c_out: int, affine: bool = True) -> None:
        super().__init__()
        if c_out % 2:
            raise ValueError(f"FactorizedReduce needs an even number of output channels, got {c_out}")
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = PointwiseConv2d(c_in, c_out // 2, 2)
        self.conv_2 = PointwiseConv2d(c_in, c_out // 2, 2)
        self.bn = BatchNorm2d(c_out, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(pixel_grid(x, 1, 1))], dim=1))


def conv_7x1_1x7(c: int, stride: int, affine: bool = True) -> nn.Sequential:
    """ReLU -> 1x7 conv -> 7x1 conv -> BN (used by AmoebaNet's published reduction cell)."""
    return nn.Sequential(
        nn.ReLU(inplace=False),
        nn.Conv2d(c, c, (1, 7), stride=(1, stride), padding=(0, 3), bias=False),
        nn.Conv2d(c, c, (7, 1), stride=(stride, 1), padding=(3, 0), bias=False),
        BatchNorm2d(c, affine=affine),
    )


def cell_preprocessing(c_prev_prev: int, c_prev: int, c: int, reduction_prev: bool,
                       affine: bool) -> tuple[nn.Module, nn.Module]:
    """A DARTS cell's input adapters to ``c`` channels: c_{k-2} (halved when the previous cell reduced) and c_{k-1}."""
    if reduction_prev:
        pre0: nn.Module = FactorizedReduce(c_prev_prev, c, affine=affine)
    else:
        pre0 = ReLUConvBN(c_prev_prev, c, 1, 1, 0, affine=affine)
    return pre0, ReLUConvBN(c_prev, c, 1, 1, 0, affine=affine)


def _skip(c: int, stride: int, affine: bool) -> nn.Module:
    return nn.Identity() if stride == 1 else FactorizedReduce(c, c, affine=affine)


def _nor_conv(kernel: int) -> OpFactory:
    """NAS-Bench-201's conv: its bias is on exactly when its BN has no affine parameters."""
    return lambda c, stride, affine: ReLUConvBN(c, c, kernel, stride, kernel // 2, affine=affine, bias=not affine)


def _sep(kernel: int) -> OpFactory:
    return lambda c, stride, affine: SepConv(c, c, kernel, stride, kernel // 2, affine=affine)


def _dil(kernel: int) -> OpFactory:
    return lambda c, stride, affine: DilConv(c, c, kernel, stride, kernel - 1, 2, affine=affine)


OPS: dict[str, OpFactory] = {
    "none": lambda c, stride, affine: Zero(stride),
    "max_pool_3x3": lambda c, stride, affine: nn.MaxPool2d(3, stride=stride, padding=1),
    "avg_pool_3x3": lambda c, stride, affine: AvgPool3x3(stride),
    "skip_connect": _skip,
    "sep_conv_3x3": _sep(3),
    "sep_conv_5x5": _sep(5),
    "sep_conv_7x7": _sep(7),
    "dil_conv_3x3": _dil(3),
    "dil_conv_5x5": _dil(5),
    "conv_7x1_1x7": conv_7x1_1x7,
    "noise": lambda c, stride, affine: Noise(stride),
    "nor_conv_1x1": _nor_conv(1),
    "nor_conv_3x3": _nor_conv(3),
}

POOLING_OPS = frozenset({"max_pool_3x3", "avg_pool_3x3"})


def build_op(name: str, channels: int, stride: int, affine: bool) -> nn.Module:
    """Build the candidate op ``name`` for ``channels`` channels; ``KeyError`` names the known ops."""
    try:
        factory = OPS[name]
    except KeyError:
        raise KeyError(f"unknown operation {name!r}; known: {', '.join(OPS)}") from None
    return factory(channels, stride, affine)


def is_identity(op: nn.Module) -> bool:
    """True for a stride-1 skip connection (drop-path and skip-dropout treat it specially)."""
    return isinstance(op, nn.Identity)
