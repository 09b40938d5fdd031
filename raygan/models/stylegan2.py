"""StyleGAN2 generator and discriminator in plain PyTorch.

Parameter and buffer names, shapes and the order of modules follow the widely
used rosinality PyTorch port, so its checkpoints (``g_ema``, ``g``, ``d``)
load with ``load_state_dict(strict=True)``.  That port compiles CUDA
extensions at import time; here every op is an ordinary PyTorch call that runs
on CPU (and on CUDA when the tensors are there); the FIR ops and the
equalised-lr layers live in ``layers.py``.

Beyond the port: a ``channel_max`` cap (for narrow models), ``self.config``
(constructor kwargs, for checkpoints) and feature taps (``return_feats``).
"""

import math
import random

import torch
from torch import nn
from torch.nn import functional as F

from raygan.models.accel import full_precision
from raygan.models.layers import (  # noqa: F401  (re-exported: the port kept them in model.py)
    Blur, EqualConv2d, EqualLinear, FusedLeakyReLU, PixelNorm, Upsample, fused_leaky_relu, make_kernel,
    upfirdn2d,
)

SIZES = (32, 64, 128, 256, 512, 1024)


def _channels(channel_multiplier, channel_max):
    base = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256, 128: 128, 256: 64, 512: 32, 1024: 16}
    return {
        r: min(c * (channel_multiplier if r >= 64 else 1), channel_max)
        for r, c in base.items()
    }


def _check_size(size):
    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}, got {size!r}")
    return int(math.log2(size))


class ModulatedConv2d(nn.Module):
    """Per-sample weight modulation by a style, optional demodulation.

    ``fused=True`` (the port's default) folds the batch into conv groups;
    ``fused=False`` modulates activations instead and shares one weight across
    the batch (same result up to rounding); ``use_fused_modconv`` sets it for a
    whole network (``train.modconv``, models/accel.py).
    """

    def __init__(self, in_channel, out_channel, kernel_size, style_dim, demodulate=True,
                 upsample=False, downsample=False, blur_kernel=(1, 3, 3, 1), fused=True):
        super().__init__()
        self.eps = 1e-8
        self.kernel_size, self.in_channel, self.out_channel = kernel_size, in_channel, out_channel
        self.upsample, self.downsample = upsample, downsample
        factor, nk = 2, len(blur_kernel)
        if upsample:
            p = (nk - factor) - (kernel_size - 1)
            self.blur = Blur(blur_kernel, ((p + 1) // 2 + factor - 1, p // 2 + 1), factor)
        if downsample:
            p = (nk - factor) + (kernel_size - 1)
            self.blur = Blur(blur_kernel, ((p + 1) // 2, p // 2))
        self.scale = 1 / math.sqrt(in_channel * kernel_size ** 2)
        self.padding = kernel_size // 2
        k = kernel_size
        self.weight = nn.Parameter(torch.randn(1, out_channel, in_channel, k, k))
        self.modulation = EqualLinear(style_dim, in_channel, bias_init=1)
        self.demodulate, self.fused = demodulate, fused

    def _conv(self, x, w, groups):
        # w: [groups*out, in, k, k]; x: [*, groups*in, h, w]
        if self.upsample:
            k = self.kernel_size
            # conv_transpose2d wants [in, out/groups, k, k] per group.
            w = w.view(groups, self.out_channel, self.in_channel, k, k).transpose(1, 2)
            w = w.reshape(groups * self.in_channel, self.out_channel, k, k)
            return self.blur(F.conv_transpose2d(x, w, stride=2, groups=groups))
        if self.downsample:
            return F.conv2d(self.blur(x), w, stride=2, groups=groups)
        return F.conv2d(x, w, padding=self.padding, groups=groups)

    def _demodulation(self, s):
        """1 / ||modulated weight|| per sample and output channel [B, out]: sum_i s_i^2 sum_k w_oik^2
        as one small matmul, in fp32 under autocast (bf16's 8-bit mantissa would round the sum of
        in*k*k squares, and the error rescales a whole output channel)."""
        with full_precision(s.device.type):
            w2 = self.weight[0].float().pow(2).sum([2, 3])  # [out, in]
            return torch.rsqrt(self.scale ** 2 * s.float().pow(2) @ w2.t() + self.eps)

    def forward(self, x, style):
        b, c, h, w_ = x.shape
        s = self.modulation(style)  # [B, in]
        if not self.fused:
            out = self._conv(x * s.view(b, c, 1, 1).to(x.dtype), self.scale * self.weight[0], 1)
            if self.demodulate:
                out = out * self._demodulation(s).view(b, -1, 1, 1).to(out.dtype)
            return out
        weight = self.scale * self.weight * s.view(b, 1, c, 1, 1)  # [B, out, in, k, k]
        if self.demodulate:
            weight = weight * self._demodulation(s).view(b, self.out_channel, 1, 1, 1).to(weight.dtype)
        k = self.kernel_size
        out = self._conv(x.reshape(1, b * c, h, w_),
                         weight.view(b * self.out_channel, c, k, k), b)
        return out.view(b, self.out_channel, *out.shape[2:])


def use_fused_modconv(net: nn.Module, fused: bool) -> nn.Module:
    """Every modulated conv of ``net`` in one form (``ModulatedConv2d.fused``); returns ``net``."""
    for m in net.modules():
        if isinstance(m, ModulatedConv2d):
            m.fused = fused
    return net


class NoiseInjection(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, image, noise=None):
        if noise is None:
            b, _, h, w = image.shape
            noise = image.new_empty(b, 1, h, w).normal_()
        return image + (self.weight * noise).to(image.dtype)  # bf16 stays bf16 under autocast


class ConstantInput(nn.Module):
    def __init__(self, channel, size=4):
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channel, size, size))

    def forward(self, x):
        return self.input.repeat(x.shape[0], 1, 1, 1)


class StyledConv(nn.Module):
    def __init__(self, in_channel, out_channel, kernel_size, style_dim, upsample=False,
                 blur_kernel=(1, 3, 3, 1), demodulate=True):
        super().__init__()
        self.conv = ModulatedConv2d(in_channel, out_channel, kernel_size, style_dim,
                                    demodulate=demodulate, upsample=upsample,
                                    blur_kernel=blur_kernel)
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(out_channel)

    def forward(self, x, style, noise=None):
        return self.activate(self.noise(self.conv(x, style), noise=noise))


class ToRGB(nn.Module):
    def __init__(self, in_channel, style_dim, upsample=True, blur_kernel=(1, 3, 3, 1)):
        super().__init__()
        if upsample:
            self.upsample = Upsample(blur_kernel)
        self.conv = ModulatedConv2d(in_channel, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x, style, skip=None):
        out = self.conv(x, style) + self.bias
        if skip is not None:
            out = out + self.upsample(skip)
        return out


class Generator(nn.Module):
    def __init__(self, size, style_dim=512, n_mlp=8, channel_multiplier=2,
                 blur_kernel=(1, 3, 3, 1), lr_mlp=0.01, channel_max=512):
        super().__init__()
        self.log_size = _check_size(size)
        self.config = dict(size=size, style_dim=style_dim, n_mlp=n_mlp,
                           channel_multiplier=channel_multiplier,
                           blur_kernel=list(blur_kernel), lr_mlp=lr_mlp,
                           channel_max=channel_max)
        self.size, self.style_dim = size, style_dim
        self.style = nn.Sequential(PixelNorm(), *[
            EqualLinear(style_dim, style_dim, lr_mul=lr_mlp, activation="fused_lrelu")
            for _ in range(n_mlp)])
        self.channels = ch = _channels(channel_multiplier, channel_max)
        self.input = ConstantInput(ch[4])
        self.conv1 = StyledConv(ch[4], ch[4], 3, style_dim, blur_kernel=blur_kernel)
        self.to_rgb1 = ToRGB(ch[4], style_dim, upsample=False)
        self.num_layers = (self.log_size - 2) * 2 + 1  # noise inputs: conv1 + 2 per resolution
        self.n_latent = self.log_size * 2 - 2
        self.convs, self.to_rgbs, self.noises = nn.ModuleList(), nn.ModuleList(), nn.Module()
        for i in range(self.num_layers):
            r = 2 ** ((i + 5) // 2)
            self.noises.register_buffer(f"noise_{i}", torch.randn(1, 1, r, r))
        in_ch = ch[4]
        for i in range(3, self.log_size + 1):
            out_ch = ch[2 ** i]
            self.convs.append(StyledConv(in_ch, out_ch, 3, style_dim, upsample=True,
                                         blur_kernel=blur_kernel))
            self.convs.append(StyledConv(out_ch, out_ch, 3, style_dim, blur_kernel=blur_kernel))
            self.to_rgbs.append(ToRGB(out_ch, style_dim, blur_kernel=blur_kernel))
            in_ch = out_ch

    def feat_channels(self):
        """Channels of each entry of ``feats`` (conv1, then every conv in ``convs``)."""
        return [self.conv1.conv.out_channel] + [c.conv.out_channel for c in self.convs]

    def make_noise(self):
        dev = self.input.input.device
        return [torch.randn(1, 1, 2 ** ((i + 5) // 2), 2 ** ((i + 5) // 2), device=dev)
                for i in range(self.num_layers)]

    def mean_latent(self, n_latent):
        z = torch.randn(n_latent, self.style_dim, device=self.input.input.device)
        return self.style(z).mean(0, keepdim=True)

    def get_latent(self, z):
        return self.style(z)

    def forward(self, styles, return_latents=False, inject_index=None, truncation=1,
                truncation_latent=None, input_is_latent=False, noise=None,
                randomize_noise=True, return_feats=False):
        if torch.is_tensor(styles):
            styles = [styles]
        if not input_is_latent:
            styles = [self.style(s) for s in styles]
        if noise is None:
            noise = ([None] * self.num_layers if randomize_noise else
                     [getattr(self.noises, f"noise_{i}") for i in range(self.num_layers)])
        if truncation < 1:
            styles = [truncation_latent + truncation * (s - truncation_latent) for s in styles]

        if len(styles) < 2:
            s = styles[0]
            latent = s if s.ndim == 3 else s.unsqueeze(1).repeat(1, self.n_latent, 1)
        else:  # style mixing: first style up to inject_index, second after
            if inject_index is None:
                inject_index = random.randint(1, self.n_latent - 1)
            n2 = self.n_latent - inject_index
            latent = torch.cat([styles[0].unsqueeze(1).repeat(1, inject_index, 1),
                                styles[1].unsqueeze(1).repeat(1, n2, 1)], 1)

        out = self.conv1(self.input(latent), latent[:, 0], noise=noise[0])
        feats = [out]
        skip = self.to_rgb1(out, latent[:, 1])
        i = 1
        for c1, c2, n1, n2, to_rgb in zip(self.convs[::2], self.convs[1::2],
                                          noise[1::2], noise[2::2], self.to_rgbs):
            out = c1(out, latent[:, i], noise=n1)
            feats.append(out)
            out = c2(out, latent[:, i + 1], noise=n2)
            feats.append(out)
            skip = to_rgb(out, latent[:, i + 2], skip)
            i += 2

        result = (skip, latent if return_latents else None)
        return result + (feats,) if return_feats else result


class ConvLayer(nn.Sequential):
    """[Blur] + EqualConv2d + [FusedLeakyReLU]; the bias lives in the activation."""

    def __init__(self, in_channel, out_channel, kernel_size, downsample=False,
                 blur_kernel=(1, 3, 3, 1), bias=True, activate=True):
        layers = []
        if downsample:
            p = (len(blur_kernel) - 2) + (kernel_size - 1)
            layers.append(Blur(blur_kernel, ((p + 1) // 2, p // 2)))
            stride, padding = 2, 0
        else:
            stride, padding = 1, kernel_size // 2
        layers.append(EqualConv2d(in_channel, out_channel, kernel_size, padding=padding,
                                  stride=stride, bias=bias and not activate))
        if activate:
            layers.append(FusedLeakyReLU(out_channel, bias=bias))
        super().__init__(*layers)


class ResBlock(nn.Module):
    def __init__(self, in_channel, out_channel, blur_kernel=(1, 3, 3, 1)):
        super().__init__()
        self.conv1 = ConvLayer(in_channel, in_channel, 3, blur_kernel=blur_kernel)
        self.conv2 = ConvLayer(in_channel, out_channel, 3, downsample=True, blur_kernel=blur_kernel)
        self.skip = ConvLayer(in_channel, out_channel, 1, downsample=True, activate=False,
                              bias=False, blur_kernel=blur_kernel)

    def forward(self, x):
        return (self.conv2(self.conv1(x)) + self.skip(x)) / math.sqrt(2)


class Discriminator(nn.Module):
    def __init__(self, size, channel_multiplier=2, blur_kernel=(1, 3, 3, 1), channel_max=512):
        super().__init__()
        log_size = _check_size(size)
        self.config = dict(size=size, channel_multiplier=channel_multiplier,
                           blur_kernel=list(blur_kernel), channel_max=channel_max)
        self.size = size
        ch = _channels(channel_multiplier, channel_max)
        convs = [ConvLayer(3, ch[size], 1)]
        in_ch = ch[size]
        for i in range(log_size, 2, -1):
            convs.append(ResBlock(in_ch, ch[2 ** (i - 1)], blur_kernel))
            in_ch = ch[2 ** (i - 1)]
        self.convs = nn.Sequential(*convs)
        self._block_channels = [ch[size]] + [ch[2 ** (i - 1)] for i in range(log_size, 2, -1)]
        self.stddev_group, self.stddev_feat = 4, 1
        self.final_conv = ConvLayer(in_ch + 1, ch[4], 3)
        self.final_linear = nn.Sequential(
            EqualLinear(ch[4] * 4 * 4, ch[4], activation="fused_lrelu"),
            EqualLinear(ch[4], 1))

    def block_channels(self):
        """Channels of each entry of ``feats`` (one per element of ``convs``)."""
        return list(self._block_channels)

    def block_resolutions(self):
        """Spatial size of each entry of ``feats``."""
        return [self.size >> i for i in range(len(self.convs))]

    def head(self, out):
        """Minibatch-stddev + final conv + linear layers on the last ``convs`` output."""
        b, c, h, w = out.shape
        group = min(b, self.stddev_group)
        # The port needs b % group == 0 and would fail otherwise; we shrink the
        # group to a divisor of b instead (identical whenever the port works).
        while b % group:
            group -= 1
        # Sample n is grouped with the samples n ± k*(b/group), as in the port.
        sd = out.view(group, -1, self.stddev_feat, c // self.stddev_feat, h, w)
        sd = torch.sqrt(sd.var(0, unbiased=False) + 1e-8).mean([2, 3, 4], keepdim=True).squeeze(2)
        out = torch.cat([out, sd.repeat(group, 1, h, w)], 1)
        return self.final_linear(self.final_conv(out).reshape(b, -1))  # reshape: channels_last too

    def forward(self, x, return_feats=False):
        feats = []
        for block in self.convs:
            x = block(x)
            feats.append(x)
        logits = self.head(x)
        return (logits, feats) if return_feats else logits
