"""Unconditional image discriminator D_u: residual StyleGAN2 D, plain or SWAGAN-wavelet.

Built from the StyleGAN2 layers of ``stylegan2.py`` (equalised lr, FIR blur
downsampling, residual blocks, minibatch-stddev head), as SWAGAN's
discriminator is; no spectral norm (StyleGAN2/SWAGAN pair it with R1).

``wavelet=False``: fromRGB (1x1) at full resolution, residual down blocks to
4x4, head. ``wavelet=True`` (SWAGAN): the image is decomposed by ``haar_dwt``
into 4x3 channels at half resolution; at every scale a fromWavelet layer
(3x3 conv of the wavelet image at that scale) is added to the residual
stream, and the wavelet image is carried to the next scale by
``wavelet_downsample`` (inverse DWT, FIR downsample, DWT). Widths per
resolution are the same in both variants: ``min(base * size / r,
channel_max)``.
"""

import math

import torch
from torch import nn

from raygan.models.layers import EqualLinear, make_kernel
from raygan.models.stylegan2 import ConvLayer, ResBlock
from raygan.models.wavelet import haar_dwt, wavelet_downsample


def minibatch_stddev(x, group_size=4, n_feat=1):
    """Append the StyleGAN2 minibatch-stddev channel(s); the group shrinks to divide B."""
    b, c, h, w = x.shape
    group = min(b, group_size)
    while b % group:
        group -= 1
    sd = x.view(group, -1, n_feat, c // n_feat, h, w)
    sd = torch.sqrt(sd.var(0, unbiased=False) + 1e-8).mean([2, 3, 4], keepdim=True).squeeze(2)
    return torch.cat([x, sd.repeat(group, 1, h, w)], 1)


class UncondDiscriminator(nn.Module):
    """D_u(x) -> logits [B] for images [B, 3, size, size]."""

    def __init__(self, size=32, base=32, wavelet=True, channel_max=256,
                 blur_kernel=(1, 3, 3, 1)):
        super().__init__()
        log_size = int(math.log2(size))
        if size != 2 ** log_size or size < 8:
            raise ValueError(f"size must be a power of 2 >= 8, got {size!r}")
        self.config = dict(size=size, base=base, wavelet=wavelet, channel_max=channel_max,
                           blur_kernel=list(blur_kernel))
        self.size, self.wavelet = size, wavelet
        ch = {2 ** i: min(base * size // 2 ** i, channel_max) for i in range(2, log_size + 1)}
        top = size // 2 if wavelet else size
        # Resolutions at which a residual block runs (each halves the resolution).
        res = [2 ** i for i in range(int(math.log2(top)), 2, -1)]
        self.convs = nn.ModuleList(ResBlock(ch[r], ch[r // 2], blur_kernel) for r in res)
        if wavelet:
            # One fromWavelet per scale: top, ..., 8, and 4 (added before the head).
            self.from_wavelets = nn.ModuleList(ConvLayer(4 * 3, ch[r], 3) for r in res + [4])
            self.register_buffer("blur_kernel", make_kernel(blur_kernel), persistent=False)
        else:
            self.from_rgb = ConvLayer(3, ch[size], 1)
        self.stddev_group, self.stddev_feat = 4, 1
        self.final_conv = ConvLayer(ch[4] + 1, ch[4], 3)
        self.final_linear = nn.Sequential(
            EqualLinear(ch[4] * 4 * 4, ch[4], activation="fused_lrelu"),
            EqualLinear(ch[4], 1))

    def forward(self, x):
        b = x.shape[0]
        if self.wavelet:
            wav = haar_dwt(x)
            out = None
            for i, block in enumerate(self.convs):
                if i:
                    wav = wavelet_downsample(wav, self.blur_kernel)
                f = self.from_wavelets[i](wav)
                out = block(f if out is None else out + f)
            if self.convs:
                wav = wavelet_downsample(wav, self.blur_kernel)
            f = self.from_wavelets[-1](wav)
            out = f if out is None else out + f
        else:
            out = self.from_rgb(x)
            for block in self.convs:
                out = block(out)
        out = self.final_conv(minibatch_stddev(out, self.stddev_group, self.stddev_feat))
        return self.final_linear(out.view(b, -1)).squeeze(1)
