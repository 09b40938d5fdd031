"""P3: StyleGAN2 G+D forward+backward on CPU, raygan's model / a straightforward reference (target <= 1.0).

The reference below is written plainly from the StyleGAN2 architecture: a mapping
MLP, modulated 3x3 convs with weight demodulation as one grouped conv per layer,
upsampling as a stride-2 transposed conv followed by a naive [1,3,3,1] blur, noise
inputs, ToRGB skips upsampled by zero insertion + blur, and a residual D with
minibatch stddev. Same channel config as raygan's embedded model (style_dim 128,
4 mapping layers, channel_multiplier 2, channel_max 64), here at --size 64.
One timed step: loss = D(G(z)).mean() + D(real).mean(); backward.
Usage: python benchmarks/p3_stylegan2_step.py [--size 64] [--batch 4] [--reps 7] [--steps 5]
"""
from __future__ import annotations

import argparse
import math
import time

import torch
import torch.nn.functional as F
from torch import nn

from _common import alternate, machine_line, report

SQRT2 = math.sqrt(2)


def blur_kernel(channels: int) -> torch.Tensor:
    k = torch.tensor([1.0, 3.0, 3.0, 1.0])
    k = k[:, None] * k[None, :]
    return (k / k.sum()).expand(channels, 1, 4, 4).contiguous()


def blur(x, pad, gain=1.0):
    """Depthwise [1,3,3,1] FIR filter with explicit padding (pad0, pad1) on both axes."""
    c = x.shape[1]
    return F.conv2d(F.pad(x, (pad[0], pad[1], pad[0], pad[1])), blur_kernel(c).to(x) * gain, groups=c)


def upsample_zero_insert(x):
    b, c, h, w = x.shape
    y = x.new_zeros(b, c, 2 * h, 2 * w)
    y[:, :, ::2, ::2] = x
    return y


def lrelu(x, bias):
    return F.leaky_relu(x + bias.view(1, -1, 1, 1), 0.2) * SQRT2


class Linear(nn.Module):
    def __init__(self, i, o, lr_mul=1.0, bias_init=0.0, act=False):
        super().__init__()
        self.w = nn.Parameter(torch.randn(o, i) / lr_mul)
        self.b = nn.Parameter(torch.full((o,), bias_init))
        self.scale, self.lr_mul, self.act = lr_mul / math.sqrt(i), lr_mul, act

    def forward(self, x):
        y = x @ (self.w * self.scale).t() + self.b * self.lr_mul
        return F.leaky_relu(y, 0.2) * SQRT2 if self.act else y


class ModConv(nn.Module):
    def __init__(self, cin, cout, k, style_dim, demod=True, up=False):
        super().__init__()
        self.w = nn.Parameter(torch.randn(cout, cin, k, k))
        self.mod = Linear(style_dim, cin, bias_init=1.0)
        self.scale, self.demod, self.up, self.k = 1 / math.sqrt(cin * k * k), demod, up, k

    def forward(self, x, style):
        b, cin, h, w = x.shape
        cout = self.w.shape[0]
        wt = self.scale * self.w[None] * self.mod(style)[:, None, :, None, None]  # [B, out, in, k, k]
        if self.demod:
            wt = wt * torch.rsqrt(wt.pow(2).sum([2, 3, 4], keepdim=True) + 1e-8)
        x = x.reshape(1, b * cin, h, w)
        if self.up:
            wt = wt.transpose(1, 2).reshape(b * cin, cout, self.k, self.k)
            y = F.conv_transpose2d(x, wt, stride=2, groups=b)
            y = blur(y, (1, 1), gain=4.0)
        else:
            y = F.conv2d(x, wt.reshape(b * cout, cin, self.k, self.k), padding=self.k // 2, groups=b)
        return y.reshape(b, cout, *y.shape[2:])


class StyledLayer(nn.Module):
    def __init__(self, cin, cout, style_dim, up=False):
        super().__init__()
        self.conv = ModConv(cin, cout, 3, style_dim, up=up)
        self.noise_strength = nn.Parameter(torch.zeros(1))
        self.bias = nn.Parameter(torch.zeros(cout))

    def forward(self, x, style):
        y = self.conv(x, style)
        y = y + self.noise_strength * torch.randn(y.shape[0], 1, *y.shape[2:])
        return lrelu(y, self.bias)


class ToRGB(nn.Module):
    def __init__(self, cin, style_dim):
        super().__init__()
        self.conv = ModConv(cin, 3, 1, style_dim, demod=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x, style, skip=None):
        y = self.conv(x, style) + self.bias
        if skip is not None:
            y = y + blur(upsample_zero_insert(skip), (2, 1), gain=4.0)
        return y


class RefGenerator(nn.Module):
    def __init__(self, size, channels, style_dim=128, n_mlp=4):
        super().__init__()
        self.style_dim = style_dim
        self.mapping = nn.ModuleList(Linear(style_dim, style_dim, lr_mul=0.01, act=True) for _ in range(n_mlp))
        self.const = nn.Parameter(torch.randn(1, channels[4], 4, 4))
        self.conv1 = StyledLayer(channels[4], channels[4], style_dim)
        self.rgb1 = ToRGB(channels[4], style_dim)
        self.blocks = nn.ModuleList()
        cin = channels[4]
        for r in [2 ** i for i in range(3, int(math.log2(size)) + 1)]:
            self.blocks.append(nn.ModuleList([StyledLayer(cin, channels[r], style_dim, up=True),
                                              StyledLayer(channels[r], channels[r], style_dim),
                                              ToRGB(channels[r], style_dim)]))
            cin = channels[r]

    def forward(self, z):
        w = z * torch.rsqrt(z.pow(2).mean(1, keepdim=True) + 1e-8)
        for layer in self.mapping:
            w = layer(w)
        x = self.conv1(self.const.expand(z.shape[0], -1, -1, -1), w)
        rgb = self.rgb1(x, w)
        for up, conv, to_rgb in self.blocks:
            x = conv(up(x, w), w)
            rgb = to_rgb(x, w, rgb)
        return rgb


class Conv(nn.Module):
    """Equalised-lr conv; ``down``: blur then stride-2 conv; ``act``: bias + leaky ReLU."""

    def __init__(self, cin, cout, k, down=False, act=True):
        super().__init__()
        self.w = nn.Parameter(torch.randn(cout, cin, k, k))
        self.bias = nn.Parameter(torch.zeros(cout)) if act else None
        self.scale, self.down, self.k = 1 / math.sqrt(cin * k * k), down, k

    def forward(self, x):
        if self.down:
            p = 2 + (self.k - 1)
            x = F.conv2d(blur(x, ((p + 1) // 2, p // 2)), self.w * self.scale, stride=2)
        else:
            x = F.conv2d(x, self.w * self.scale, padding=self.k // 2)
        return lrelu(x, self.bias) if self.bias is not None else x


class RefDiscriminator(nn.Module):
    def __init__(self, size, channels):
        super().__init__()
        self.from_rgb = Conv(3, channels[size], 1)
        self.blocks = nn.ModuleList()
        r = size
        while r > 4:
            cin, cout = channels[r], channels[r // 2]
            self.blocks.append(nn.ModuleList([Conv(cin, cin, 3), Conv(cin, cout, 3, down=True),
                                              Conv(cin, cout, 1, down=True, act=False)]))
            r //= 2
        self.final_conv = Conv(channels[4] + 1, channels[4], 3)
        self.fc1 = Linear(channels[4] * 16, channels[4], act=True)
        self.fc2 = Linear(channels[4], 1)

    def forward(self, x):
        x = self.from_rgb(x)
        for c1, c2, skip in self.blocks:
            x = (c2(c1(x)) + skip(x)) / SQRT2
        b, c, h, w = x.shape
        g = min(b, 4)
        sd = x.view(g, -1, c, h, w).var(0, unbiased=False).add(1e-8).sqrt().mean([1, 2, 3])
        x = torch.cat([x, sd.view(-1, 1, 1, 1).repeat(g, 1, h, w)], 1)
        return self.fc2(self.fc1(self.final_conv(x).flatten(1)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--steps", type=int, default=5, help="steps timed per repetition (their mean is one sample)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--channels-last", action="store_true", help="run raygan's model in channels_last")
    ap.add_argument("--compile", action="store_true", help="torch.compile raygan's G and D")
    args = ap.parse_args()

    from raygan.models.stylegan2 import Discriminator, Generator, _channels

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = dict(style_dim=128, n_mlp=4, channel_multiplier=2, channel_max=64)  # the embedded model's
    g, d = Generator(args.size, **cfg), Discriminator(args.size, channel_multiplier=2, channel_max=64)
    ch = _channels(2, 64)
    rg, rd = RefGenerator(args.size, ch, style_dim=128, n_mlp=4), RefDiscriminator(args.size, ch)
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    print(machine_line())
    print(f"{args.size} px, batch {args.batch}, {args.threads} torch thread(s); parameters G {n(g)} vs {n(rg)}, "
          f"D {n(d)} vs {n(rd)}")
    real = torch.randn(args.batch, 3, args.size, args.size)
    if args.channels_last:
        g, d = g.to(memory_format=torch.channels_last), d.to(memory_format=torch.channels_last)
    g_call, d_call = (lambda z: g([z])[0]), d
    if args.compile:
        g_call, d_call = torch.compile(g_call), torch.compile(d)

    cpu = {"raygan": [], "reference": []}  # CPU seconds of this thread: less sensitive to other load

    def timed(gen, disc, name):
        def step():
            t0, c0 = time.perf_counter(), time.thread_time()
            for _ in range(args.steps):
                z = torch.randn(args.batch, 128)
                loss = disc(gen(z)).mean() + disc(real).mean()
                loss.backward()
            cpu[name].append((time.thread_time() - c0) / args.steps)
            return (time.perf_counter() - t0) / args.steps
        return step

    assert g_call(torch.randn(2, 128)).shape == rg(torch.randn(2, 128)).shape == (2, 3, args.size, args.size)
    ra, rb = alternate(args.reps, timed(g_call, d_call, "raygan"), timed(rg, rd, "reference"), "raygan", "reference")
    report("raygan StyleGAN2 step", ra, "reference StyleGAN2 step", rb, "s/step (wall)")
    if args.threads == 1:
        report("raygan, CPU time", cpu["raygan"][1:], "reference, CPU time", cpu["reference"][1:], "s/step (thread CPU)")


if __name__ == "__main__":
    main()
