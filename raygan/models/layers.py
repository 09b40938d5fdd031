"""Equalised-lr layers and FIR ops of StyleGAN2, in plain PyTorch.

FIR filtering (``upfirdn2d``) is a depthwise conv2d, or a depthwise strided
conv_transpose2d when upsampling, instead of a generic pad/reshape loop; the
fused bias + leaky ReLU is ``leaky_relu(x + b, 0.2) * sqrt(2)``. Names follow
the rosinality port so its checkpoints load unchanged.
"""

import math

import torch
from torch import nn
from torch.nn import functional as F


def make_kernel(k):
    """Normalised 2-D FIR kernel; a 1-D list becomes its outer product."""
    k = torch.tensor(k, dtype=torch.float32)
    if k.ndim == 1:
        k = k[None, :] * k[:, None]
    return k / k.sum()


def upfirdn2d(x, kernel, up=1, down=1, pad=(0, 0)):
    """Upsample by zero insertion, pad, convolve with ``kernel``, subsample.

    Same result as the port's ``upfirdn2d`` (same ``pad`` on both axes; a
    negative pad crops), computed per channel with one (transposed) conv.
    """
    c = x.shape[1]
    kh, kw = kernel.shape
    p0, p1 = pad
    if up == 1:
        # True convolution = cross-correlation with the flipped kernel.
        w = kernel.flip([0, 1]).to(x).expand(c, 1, kh, kw)
        return F.conv2d(F.pad(x, (p0, p1, p0, p1)), w, stride=down, groups=c)
    # A stride-`up` transposed conv with the unflipped kernel equals "insert
    # zeros, then convolve" over the full support; output index o of upfirdn2d
    # sits at index o + (k - 1 - pad0) of it, so crop (or zero-pad) to match.
    w = kernel.to(x).expand(c, 1, kh, kw)
    y = F.conv_transpose2d(x, w, stride=up, groups=c)
    h, wd = x.shape[2:]
    sy, sx = kh - 1 - p0, kw - 1 - p0
    oh, ow = h * up + p0 + p1 - kh + 1, wd * up + p0 + p1 - kw + 1
    y = F.pad(y, (-sx, sx + ow - y.shape[3], -sy, sy + oh - y.shape[2]))
    return y[:, :, ::down, ::down] if down > 1 else y


def fused_leaky_relu(x, bias=None, negative_slope=0.2, scale=2 ** 0.5):
    if bias is not None:
        x = x + bias.view(1, -1, *([1] * (x.ndim - 2))).to(x.dtype)  # bf16 stays bf16 under autocast
    return F.leaky_relu(x, negative_slope) * scale


class FusedLeakyReLU(nn.Module):
    def __init__(self, channel, bias=True, negative_slope=0.2, scale=2 ** 0.5):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channel)) if bias else None
        self.negative_slope, self.scale = negative_slope, scale

    def forward(self, x):
        return fused_leaky_relu(x, self.bias, self.negative_slope, self.scale)


class PixelNorm(nn.Module):
    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + 1e-8)


class Upsample(nn.Module):
    """2x upsampling with FIR filter (used on the ToRGB skip path)."""

    def __init__(self, kernel, factor=2):
        super().__init__()
        self.factor = factor
        # ×factor² keeps the mean: only one in factor² samples is non-zero.
        self.register_buffer("kernel", make_kernel(kernel) * factor ** 2)
        p = self.kernel.shape[0] - factor
        self.pad = ((p + 1) // 2 + factor - 1, p // 2)

    def forward(self, x):
        return upfirdn2d(x, self.kernel, up=self.factor, pad=self.pad)


class Blur(nn.Module):
    def __init__(self, kernel, pad, upsample_factor=1):
        super().__init__()
        self.register_buffer("kernel", make_kernel(kernel) * upsample_factor ** 2)
        self.pad = tuple(pad)

    def forward(self, x):
        return upfirdn2d(x, self.kernel, pad=self.pad)


class EqualConv2d(nn.Module):
    """Conv with equalized learning rate: weights ~ N(0,1), scaled at run time."""

    def __init__(self, in_channel, out_channel, kernel_size, stride=1, padding=0, bias=True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channel, in_channel, kernel_size, kernel_size))
        self.scale = 1 / math.sqrt(in_channel * kernel_size ** 2)
        self.stride, self.padding = stride, padding
        self.bias = nn.Parameter(torch.zeros(out_channel)) if bias else None

    def forward(self, x):
        return F.conv2d(x, self.weight * self.scale, self.bias, self.stride, self.padding)


class EqualLinear(nn.Module):
    def __init__(self, in_dim, out_dim, bias=True, bias_init=0, lr_mul=1, activation=None):
        super().__init__()
        # Stored weights are divided by lr_mul and multiplied back at run time,
        # which scales the effective learning rate of this layer by lr_mul.
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim).div_(lr_mul))
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init))) if bias else None
        self.activation = activation
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul

    def forward(self, x):
        bias = self.bias * self.lr_mul if self.bias is not None else None
        if self.activation:
            return fused_leaky_relu(F.linear(x, self.weight * self.scale), bias)
        return F.linear(x, self.weight * self.scale, bias)
