"""OASIS U-Net discriminator: per-pixel (N + 1)-class logits.

Encoder: residual down blocks from ``size`` to 4x4 (``log2(size) - 2``
blocks; 6 at 256 px as in OASIS). Decoder: residual up blocks back to full
resolution, each (but the first) fed with the concatenation of the previous
decoder output and the encoder output of the same resolution. A final 1x1
conv (no spectral norm) gives N class channels + 1 "fake" channel per pixel.
Every other conv carries spectral norm, as in OASIS.

Residual blocks (OASIS ``residual_block_D``), lrelu = LeakyReLU(0.2):
  down: lrelu, conv3, lrelu, conv3, avgpool2  +  [conv1x1], avgpool2
        (the first block has no leading lrelu and pools before the 1x1 conv)
  up:   lrelu, up2, conv3, lrelu, conv3       +  up2, [conv1x1]
  (nearest upsampling; the 1x1 shortcut conv only when fin != fout).

Widths: encoder block i outputs ``min(base * 2**i, channel_max)``; OASIS
uses [128, 128, 256, 256, 512, 512] (doubling every second block) at 256 px;
here with fewer blocks the width doubles every block. The last decoder block
outputs ``base // 2`` channels (OASIS: 64 with base 128).
"""

import math

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.parametrizations import spectral_norm


def _sn(module, enabled=True):
    return spectral_norm(module) if enabled else module


class ResBlockD(nn.Module):
    """OASIS discriminator residual block; ``direction`` -1 down, +1 up."""

    def __init__(self, fin, fout, direction, first=False, spectral=True):
        super().__init__()
        if direction not in (-1, 1):
            raise ValueError(f"direction must be -1 or 1, got {direction!r}")
        self.direction, self.first = direction, first
        self.learned_shortcut = fin != fout
        self.conv1 = _sn(nn.Conv2d(fin, fout, 3, padding=1), spectral)
        self.conv2 = _sn(nn.Conv2d(fout, fout, 3, padding=1), spectral)
        if self.learned_shortcut:
            self.conv_s = _sn(nn.Conv2d(fin, fout, 1), spectral)

    def _shortcut(self, x):
        if self.direction > 0:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        elif self.first:
            x = F.avg_pool2d(x, 2)
        if self.learned_shortcut:
            x = self.conv_s(x)
        if self.direction < 0 and not self.first:
            x = F.avg_pool2d(x, 2)
        return x

    def forward(self, x):
        dx = x if self.first else F.leaky_relu(x, 0.2)
        if self.direction > 0:
            dx = F.interpolate(dx, scale_factor=2, mode="nearest")
        dx = self.conv2(F.leaky_relu(self.conv1(dx), 0.2))
        if self.direction < 0:
            dx = F.avg_pool2d(dx, 2)
        return self._shortcut(x) + dx


class UNetDiscriminator(nn.Module):
    """D_c(x) -> logits [B, n_classes + 1, H, W]; channel ``n_classes`` is "fake".

    ``forward(x, return_feats=True)`` also returns the list of intermediate
    maps for feature matching, in forward order: the outputs of the encoder
    blocks (full-res / 2 down to 4x4), then of the decoder blocks (8x8 up to
    full res); the last entry is the input of the final 1x1 logits conv.
    Any H x W divisible by ``size / 4`` works (the bottleneck is then
    (H, W) * 4 / size).
    """

    def __init__(self, n_classes, size=32, base=32, channel_max=256, spectral=True):
        super().__init__()
        log_size = int(math.log2(size))
        if size != 2 ** log_size or size < 8:
            raise ValueError(f"size must be a power of 2 >= 8, got {size!r}")
        self.config = dict(n_classes=n_classes, size=size, base=base, channel_max=channel_max,
                           spectral=spectral)
        self.n_classes, self.size = n_classes, size
        n = log_size - 2
        enc = [min(base * 2 ** i, channel_max) for i in range(n)]
        self.body_down = nn.ModuleList()
        fin = 3
        for i, c in enumerate(enc):
            self.body_down.append(ResBlockD(fin, c, -1, first=i == 0, spectral=spectral))
            fin = c
        # Decoder block i (i >= 1) reads cat(encoder output n-1-i, decoder output i-1).
        dec = [enc[n - 2 - i] for i in range(n - 1)] + [max(base // 2, 1)]
        self.body_up = nn.ModuleList()
        fin = enc[-1]
        for i, c in enumerate(dec):
            self.body_up.append(ResBlockD(fin if i == 0 else fin + enc[n - 1 - i], c, 1,
                                          spectral=spectral))
            fin = c
        self.layer_up_last = nn.Conv2d(dec[-1], n_classes + 1, 1)
        self.feat_channels = enc + dec

    def forward(self, x, return_feats=False):
        enc = []
        for block in self.body_down:
            x = block(x)
            enc.append(x)
        feats = list(enc)
        x = self.body_up[0](x)
        feats.append(x)
        for i in range(1, len(self.body_up)):
            x = self.body_up[i](torch.cat([enc[-1 - i], x], 1))
            feats.append(x)
        logits = self.layer_up_last(x)
        return (logits, feats) if return_feats else logits
