"""SPADE generator for label-to-image synthesis (OASIS-style), plain or wavelet.

Follows the OASIS generator (Sushko et al.): a one-hot label map with a 3-D
noise tensor (z broadcast over space and concatenated channel-wise) is
downsampled to the initial resolution, mapped by a 3x3 conv, then refined by a
stack of SPADE residual blocks with nearest 2x upsampling between them; every
SPADE layer is conditioned on the same label+noise map. Spectral norm sits on
the residual blocks' convs (not on the SPADE MLPs, ``fc`` or the output conv),
as in OASIS.

``wavelet=True`` is the wavelet SPADE generator of USIS / the semi-paired
paper: the features stop at half the output resolution, every stage (or the
last ``wavelet_levels`` stages) predicts Haar wavelet coefficients of the RGB
image (4x3 channels at the stage's resolution), these are summed from coarse
to fine as SWAGAN's wavelet skip (``skip = head(x) + wavelet_upsample(skip)``)
and the image is the inverse DWT of the finest sum. Both variants end in tanh.

Widths: the block at resolution r outputs ``min(base * size / r, 16 * base,
channel_max)`` channels (OASIS's [16, 16, 16, 8, 4, 2, 1] * ch at 256 px is
this rule with base = ch); the wavelet variant keeps the same widths and
drops the full-resolution block, as SWAGAN does relative to StyleGAN2.
"""

import math

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.parametrizations import spectral_norm

from raygan.models.layers import make_kernel
from raygan.models.wavelet import haar_idwt, wavelet_upsample

_NORMS = ("batch", "instance")


def _param_free_norm(kind, channels):
    if kind == "batch":
        return nn.BatchNorm2d(channels, affine=False)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=False)
    raise ValueError(f"norm must be one of {_NORMS}, got {kind!r}")


def _sn(module, enabled=True):
    return spectral_norm(module) if enabled else module


class SPADE(nn.Module):
    """Param-free norm of x, modulated by gamma, beta predicted from the label map.

    ``out = norm(x) * (1 + gamma(seg)) + beta(seg)``; ``seg`` is resized
    (nearest) to x's spatial size; the MLP is conv(label_nc -> hidden) + ReLU,
    then one conv each for gamma and beta (kernel ``ks``).
    """

    def __init__(self, norm_nc, label_nc, hidden=128, norm="batch", ks=3):
        super().__init__()
        self.param_free_norm = _param_free_norm(norm, norm_nc)
        pw = ks // 2
        self.mlp_shared = nn.Sequential(nn.Conv2d(label_nc, hidden, ks, padding=pw), nn.ReLU())
        self.mlp_gamma = nn.Conv2d(hidden, norm_nc, ks, padding=pw)
        self.mlp_beta = nn.Conv2d(hidden, norm_nc, ks, padding=pw)

    def forward(self, x, seg):
        if seg.shape[2:] != x.shape[2:]:
            seg = F.interpolate(seg, size=x.shape[2:], mode="nearest")
        actv = self.mlp_shared(seg)
        return self.param_free_norm(x) * (1 + self.mlp_gamma(actv)) + self.mlp_beta(actv)


class SPADEResBlock(nn.Module):
    """OASIS/SPADE residual block: 2x (SPADE, lrelu 0.2, 3x3 conv) + shortcut.

    The shortcut is SPADE + 1x1 conv (no bias) when ``fin != fout``, identity
    otherwise; all convs carry spectral norm unless ``spectral=False``.
    ``label_nc`` counts every channel of the conditioning map (classes + z).
    """

    def __init__(self, fin, fout, label_nc, hidden=128, norm="batch", spectral=True):
        super().__init__()
        self.learned_shortcut = fin != fout
        fmiddle = min(fin, fout)
        self.conv_0 = _sn(nn.Conv2d(fin, fmiddle, 3, padding=1), spectral)
        self.conv_1 = _sn(nn.Conv2d(fmiddle, fout, 3, padding=1), spectral)
        self.norm_0 = SPADE(fin, label_nc, hidden, norm)
        self.norm_1 = SPADE(fmiddle, label_nc, hidden, norm)
        if self.learned_shortcut:
            self.conv_s = _sn(nn.Conv2d(fin, fout, 1, bias=False), spectral)
            self.norm_s = SPADE(fin, label_nc, hidden, norm)

    def forward(self, x, seg):
        x_s = self.conv_s(self.norm_s(x, seg)) if self.learned_shortcut else x
        dx = self.conv_0(F.leaky_relu(self.norm_0(x, seg), 0.2))
        dx = self.conv_1(F.leaky_relu(self.norm_1(dx, seg), 0.2))
        return x_s + dx


class SPADEGenerator(nn.Module):
    """G(t, z): one-hot label map [B, N, H, W] (+ z [B, z_dim]) -> image [B, 3, H, W] in [-1, 1].

    ``size`` fixes the number of stages (first stage at 4x4 for a square
    ``size`` x ``size`` label map); the label map may be any H x W divisible by
    the total upsampling factor (``size / 4``), e.g. 2:1 maps give 2:1 images
    starting from 4x8. ``z_dim=0`` disables the 3-D noise.

    ``spade_hidden`` (default ``min(base, 128)``; OASIS uses 128 with base 64) is the
    hidden width of every SPADE MLP; ``norm`` the param-free norm
    ("batch", as OASIS/SPADE, or "instance"); ``wavelet_levels`` the number of
    final stages with a wavelet head (None: all stages, as SWAGAN).
    With ``norm="batch"`` the output depends on the batch in train mode and
    on BatchNorm's running statistics in eval mode (OASIS refreshes those
    on the EMA generator before evaluating).
    """

    def __init__(self, n_classes, size=32, base=32, z_dim=64, wavelet=True, channel_max=256,
                 spade_hidden=None, norm="batch", spectral=True, wavelet_levels=None,
                 blur_kernel=(1, 3, 3, 1)):
        super().__init__()
        log_size = int(math.log2(size))
        if size != 2 ** log_size or size < 8:
            raise ValueError(f"size must be a power of 2 >= 8, got {size!r}")
        if spade_hidden is None:
            spade_hidden = min(base, 128)
        self.config = dict(n_classes=n_classes, size=size, base=base, z_dim=z_dim,
                           wavelet=wavelet, channel_max=channel_max, spade_hidden=spade_hidden,
                           norm=norm, spectral=spectral, wavelet_levels=wavelet_levels,
                           blur_kernel=list(blur_kernel))
        self.n_classes, self.size, self.z_dim, self.wavelet = n_classes, size, z_dim, wavelet
        # Stage resolutions for a square map: 4, 8, ..., size (size / 2 for wavelet).
        last = size // 2 if wavelet else size
        self.resolutions = [2 ** i for i in range(2, int(math.log2(last)) + 1)]
        self.upsample_factor = size // 4
        self.channels = [min(base * size // r, 16 * base, channel_max) for r in self.resolutions]
        label_nc = n_classes + z_dim
        self.fc = nn.Conv2d(label_nc, self.channels[0], 3, padding=1)
        self.body = nn.ModuleList()
        fin = self.channels[0]
        for fout in self.channels:
            self.body.append(SPADEResBlock(fin, fout, label_nc, spade_hidden, norm, spectral))
            fin = fout
        if wavelet:
            n = len(self.body)
            levels = n if wavelet_levels is None else wavelet_levels
            if not 1 <= levels <= n:
                raise ValueError(f"wavelet_levels must be in [1, {n}], got {levels!r}")
            self.first_head = n - levels
            # "tWavelet": lrelu + 3x3 conv to 4 bands x RGB at each head stage.
            self.to_wavelets = nn.ModuleList(
                nn.Conv2d(c, 4 * 3, 3, padding=1) for c in self.channels[self.first_head:])
            self.register_buffer("blur_kernel", make_kernel(blur_kernel), persistent=False)
        else:
            self.conv_img = nn.Conv2d(self.channels[-1], 3, 3, padding=1)

    def sample_z(self, batch, device=None, dtype=None):
        return torch.randn(batch, self.z_dim, device=device, dtype=dtype)

    def forward(self, label_onehot, z=None):
        b, n, h, w = label_onehot.shape
        if n != self.n_classes:
            raise ValueError(f"expected {self.n_classes} label channels, got {n}")
        f = self.upsample_factor
        if h % f or w % f:
            raise ValueError(f"label map {h}x{w} must be divisible by {f}")
        seg = label_onehot
        if self.z_dim:
            if z is None:
                z = self.sample_z(b, seg.device, seg.dtype)
            seg = torch.cat([z.view(b, self.z_dim, 1, 1).expand(b, self.z_dim, h, w), seg], 1)
        x = self.fc(F.interpolate(seg, size=(h // f, w // f), mode="nearest"))
        skip = None
        for i, block in enumerate(self.body):
            if i:
                x = F.interpolate(x, scale_factor=2, mode="nearest")
            # Resize the conditioning map once per stage (SPADE would do it per layer).
            x = block(x, F.interpolate(seg, size=x.shape[2:], mode="nearest"))
            if self.wavelet and i >= self.first_head:
                coeffs = self.to_wavelets[i - self.first_head](F.leaky_relu(x, 0.2))
                skip = coeffs if skip is None else coeffs + wavelet_upsample(skip, self.blur_kernel)
        if self.wavelet:
            return torch.tanh(haar_idwt(skip))
        return torch.tanh(self.conv_img(F.leaky_relu(x, 0.2)))
