"""SCS, spatial structural consistency (RSSA Eq. 9–10): how well G_t keeps the structure of G_s.

For the same z, the edge maps H_t = E(G_t(z)) and H_s = E(G_s(z)) are compared by their
soft Dice coefficient, per image pair (sums over pixels), then averaged over the pairs:

    SCS = mean_z  2 Σ H_t·H_s / (Σ H_t² + Σ H_s²)

Higher means structure better preserved (1 = identical edge maps). Two empty edge maps
(0/0) count as 1.0: neither image has any structure, so none was lost.

Published numbers use HED edges (``scs_hed``: the weights ``network-bsds500.pytorch`` of
the sniklaus/pytorch-hed port, a local file). Without them the metric is named after the
detector actually used, ``scs_sobel`` or ``scs_canny``, so it never passes for the paper's.
"""
from __future__ import annotations

import math
import pickle
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from scipy import ndimage

from raygan.errors import UserError

LUMA_601 = (0.299, 0.587, 0.114)  # ITU-R BT.601 weights for R, G, B
# The largest Sobel gradient magnitude for an image in [0, 1]: sqrt(4² + 2²), reached by
# e.g. [[0,0,1],[0,·,1],[0,1,1]]. A fixed constant, so maps are never rescaled per image.
SOBEL_MAX = math.sqrt(20.0)
HED_MEAN_BGR = (104.00698793, 116.66876762, 122.67891434)  # Caffe HED, on the 0..255 scale
EDGE_KINDS = ("sobel", "canny", "hed")

_SOBEL_X = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])


# ---- the metric ----------------------------------------------------------------------------

def soft_dice(h_t: torch.Tensor, h_s: torch.Tensor) -> torch.Tensor:
    """RSSA Eq. 9–10 per pair: 2 Σ h_t·h_s / (Σ h_t² + Σ h_s²) over the pixels of each of the
    B pairs of edge maps [B,1,H,W] in [0,1]; returns [B]. Both maps empty (0/0) gives 1.0."""
    if h_t.shape != h_s.shape:
        raise ValueError(f"edge maps differ in shape: {tuple(h_t.shape)} vs {tuple(h_s.shape)}")
    t, s = h_t.flatten(1).double(), h_s.flatten(1).double()
    num = 2.0 * (t * s).sum(1)
    den = (t * t).sum(1) + (s * s).sum(1)
    return torch.where(den > 0, num / den.clamp_min(1e-300), torch.ones_like(den))


@torch.no_grad()
def scs(images_t: torch.Tensor, images_s: torch.Tensor, edges: Callable, batch_size: int = 100) -> float:
    """RSSA Eq. 9–10: mean soft Dice of edges(images_t) vs edges(images_s), pair by pair.

    ``images_t[i]`` and ``images_s[i]`` come from the same z (RGB in [-1,1], [N,3,H,W]);
    ``edges`` is a detector from ``make_edge_detector``."""
    if images_t.shape != images_s.shape:
        raise ValueError(f"image batches differ in shape: {tuple(images_t.shape)} vs {tuple(images_s.shape)}")
    n = images_t.shape[0]
    if n == 0:
        raise ValueError("scs needs at least one image pair")
    total = 0.0
    for i in range(0, n, batch_size):
        h_t = edges(images_t[i:i + batch_size])
        h_s = edges(images_s[i:i + batch_size])
        total += soft_dice(h_t, h_s.to(h_t.device)).sum().item()
    return total / n


def make_edge_detector(kind: str, hed_weights: str = "") -> tuple[str, Callable]:
    """The metric name (``scs_sobel``, ``scs_canny``, ``scs_hed``) and an images -> edge maps
    function for RSSA Eq. 9–10. ``hed`` needs a local path to the HED weights."""
    if kind == "sobel":
        return "scs_sobel", sobel_edges
    if kind == "canny":
        return "scs_canny", canny_edges
    if kind == "hed":
        if not hed_weights:
            raise UserError("scs edges 'hed'", "a local path to the HED weights is needed "
                            "(network-bsds500.pytorch of sniklaus/pytorch-hed); or use sobel/canny")
        net = load_hed(hed_weights)
        return "scs_hed", lambda images: hed_edges(images, net)
    raise UserError(f"scs edges {kind!r}", f"unknown edge detector (expected one of: {', '.join(EDGE_KINDS)})")


# ---- Sobel and Canny -----------------------------------------------------------------------

def _luminance(images: torch.Tensor) -> torch.Tensor:
    """[B,3,H,W] RGB in [-1,1] -> [B,1,H,W] BT.601 luminance in [0,1] (grey [B,1,H,W] passes)."""
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"expected images [B,3,H,W] (or [B,1,H,W]), got {tuple(images.shape)}")
    x = ((images.float() + 1.0) / 2.0).clamp(0.0, 1.0)
    if x.shape[1] == 1:
        return x
    w = torch.tensor(LUMA_601, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True)


def _sobel(gray: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sobel derivatives (x to the right, y downwards) of [B,1,H,W], replicate-padded."""
    kx = _SOBEL_X.to(gray).view(1, 1, 3, 3)
    ky = kx.transpose(2, 3)
    p = F.pad(gray, (1, 1, 1, 1), mode="replicate")
    return F.conv2d(p, kx), F.conv2d(p, ky)


def sobel_edges(images: torch.Tensor) -> torch.Tensor:
    """Edge maps for RSSA Eq. 9–10: Sobel gradient magnitude of the BT.601 luminance of
    [-1,1] RGB images, divided by the fixed SOBEL_MAX (not per image); [B,1,H,W] in [0,1]."""
    gx, gy = _sobel(_luminance(images))
    return (torch.sqrt(gx * gx + gy * gy) / SOBEL_MAX).clamp(0.0, 1.0)


def _gaussian_blur(gray: torch.Tensor, sigma: float) -> torch.Tensor:
    if sigma <= 0:
        return gray
    r = max(1, math.ceil(3.0 * sigma))
    x = torch.arange(-r, r + 1, dtype=gray.dtype, device=gray.device)
    k = torch.exp(-x * x / (2.0 * sigma * sigma))
    k = k / k.sum()
    out = F.conv2d(F.pad(gray, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
    return F.conv2d(F.pad(out, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1))


# neighbour offset (drow, dcol) along the gradient for quantised directions 0°, 45°, 90°, 135°
_NMS_OFFSETS = ((0, 1), (1, 1), (1, 0), (1, -1))
_TIE = 1e-6  # magnitudes (in [0,1]) closer than this count as equal


def _non_max_suppression(mag: torch.Tensor, gx: torch.Tensor, gy: torch.Tensor) -> torch.Tensor:
    """Boolean map of pixels that are maxima of ``mag`` along their quantised gradient
    direction. Ties (within float noise, _TIE) go to the first pixel (> behind, >= ahead) so
    that lines stay 1 px thin and the choice does not depend on rounding."""
    h, w = mag.shape[-2:]
    ang = torch.rad2deg(torch.atan2(gy, gx)) % 180.0
    direction = torch.div(ang + 22.5, 45.0, rounding_mode="floor").long() % 4
    p = F.pad(mag, (1, 1, 1, 1))  # zeros outside the image

    def shifted(dr, dc):
        return p[..., 1 + dr:1 + dr + h, 1 + dc:1 + dc + w]

    keep = torch.zeros_like(mag, dtype=torch.bool)
    for d, (dr, dc) in enumerate(_NMS_OFFSETS):
        is_max = (mag > shifted(-dr, -dc) + _TIE) & (mag >= shifted(dr, dc) - _TIE)
        keep |= (direction == d) & is_max
    return keep


def canny_edges(images: torch.Tensor, sigma: float = 1.0, low: float = 0.1, high: float = 0.2) -> torch.Tensor:
    """Binary Canny edge maps {0.,1.} [B,1,H,W] for RSSA Eq. 9–10: BT.601 luminance, Gaussian
    blur (``sigma``), Sobel, non-maximum suppression along 4 directions, double threshold
    (``low``/``high`` are fractions of the fixed SOBEL_MAX), hysteresis: weak edges are kept
    when their 8-connected component holds a strong one."""
    if not 0.0 <= low <= high:
        raise ValueError(f"expected 0 <= low <= high, got low={low}, high={high}")
    gray = _gaussian_blur(_luminance(images), sigma)
    gx, gy = _sobel(gray)
    mag = torch.sqrt(gx * gx + gy * gy) / SOBEL_MAX
    thin = _non_max_suppression(mag, gx, gy)
    weak = (thin & (mag >= low)).cpu().numpy()[:, 0]
    strong = (thin & (mag >= high)).cpu().numpy()[:, 0]
    out = np.zeros_like(weak)
    eight = np.ones((3, 3), dtype=bool)
    for b in range(weak.shape[0]):
        labels, n = ndimage.label(weak[b], structure=eight)
        good = np.zeros(n + 1, dtype=bool)
        good[labels[strong[b]]] = True
        good[0] = False
        out[b] = good[labels]
    return torch.from_numpy(out).to(device=images.device, dtype=torch.float32).unsqueeze(1)


# ---- HED (the sniklaus/pytorch-hed port) ---------------------------------------------------

def _vgg_stage(c_in: int, c_out: int, n_convs: int, pool: bool) -> nn.Sequential:
    layers: list[nn.Module] = [nn.MaxPool2d(kernel_size=2, stride=2)] if pool else []
    for i in range(n_convs):
        layers += [nn.Conv2d(c_in if i == 0 else c_out, c_out, kernel_size=3, stride=1, padding=1), nn.ReLU()]
    return nn.Sequential(*layers)


class HED(nn.Module):
    """Holistically-nested edge detection (Xie & Tu, 2015), laid out as the sniklaus/pytorch-hed
    port so that its ``network-bsds500.pytorch`` loads unchanged (after ``load_hed``'s renaming).

    ``forward`` takes what the port takes: BGR images in [0,1], [B,3,H,W]. It scales them to
    0..255, subtracts the Caffe mean, runs the VGG16 trunk, takes a 1x1 score per stage,
    bilinearly upsamples each (align_corners=False) to H×W, and fuses the five with a 1x1
    conv and a sigmoid: [B,1,H,W] edge probabilities."""

    def __init__(self):
        super().__init__()
        self.netVggOne = _vgg_stage(3, 64, 2, pool=False)
        self.netVggTwo = _vgg_stage(64, 128, 2, pool=True)
        self.netVggThr = _vgg_stage(128, 256, 3, pool=True)
        self.netVggFou = _vgg_stage(256, 512, 3, pool=True)
        self.netVggFiv = _vgg_stage(512, 512, 3, pool=True)
        self.netScoreOne = nn.Conv2d(64, 1, kernel_size=1)
        self.netScoreTwo = nn.Conv2d(128, 1, kernel_size=1)
        self.netScoreThr = nn.Conv2d(256, 1, kernel_size=1)
        self.netScoreFou = nn.Conv2d(512, 1, kernel_size=1)
        self.netScoreFiv = nn.Conv2d(512, 1, kernel_size=1)
        self.netCombine = nn.Sequential(nn.Conv2d(5, 1, kernel_size=1), nn.Sigmoid())

    def forward(self, bgr: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(HED_MEAN_BGR, dtype=bgr.dtype, device=bgr.device).view(1, 3, 1, 1)
        x = bgr * 255.0 - mean
        size = x.shape[-2:]
        scores = []
        for stage, score in ((self.netVggOne, self.netScoreOne), (self.netVggTwo, self.netScoreTwo),
                             (self.netVggThr, self.netScoreThr), (self.netVggFou, self.netScoreFou),
                             (self.netVggFiv, self.netScoreFiv)):
            x = stage(x)
            scores.append(F.interpolate(score(x), size=size, mode="bilinear", align_corners=False))
        return self.netCombine(torch.cat(scores, 1))


def rename_port_keys(state: dict) -> dict:
    """The port's renaming on load: every 'module' in a key becomes 'net'
    (the weight file has ``moduleVggOne.0.weight``, the network ``netVggOne.0.weight``)."""
    return {k.replace("module", "net"): v for k, v in state.items()}


def load_hed(path) -> HED:
    """The HED network (eval mode, frozen) from a local copy of the port's weights, for the
    ``scs_hed`` variant of RSSA Eq. 9–10. Bad files raise a one-line UserError naming ``path``."""
    p = Path(path)
    if not p.is_file():
        raise UserError(path, "no such file (expected network-bsds500.pytorch, the HED weights of sniklaus/pytorch-hed)")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else "unsafe content"
        raise UserError(path, f"refused: not a plain weights file ({first[:120]})") from None
    except Exception as e:  # torch.load raises many types on bad bytes (KeyError, EOFError, RuntimeError, ...)
        raise UserError(path, f"corrupt, truncated or not a torch file ({type(e).__name__}); "
                        "expected the HED weights of sniklaus/pytorch-hed") from None
    if not isinstance(state, dict) or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in state.items()):
        raise UserError(path, "expected a state dict of tensors (HED weights of sniklaus/pytorch-hed)")
    state = rename_port_keys(state)
    net = HED()
    want = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    missing = [k for k in want if k not in state]
    unexpected = [k for k in state if k not in want]
    wrong = [k for k in want if k in state and tuple(state[k].shape) != want[k]]
    if missing or unexpected or wrong:
        parts = [f"{name} {', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''}"
                 for name, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)) if keys]
        raise UserError(path, f"not the sniklaus/pytorch-hed HED layout ({'; '.join(parts)})")
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as e:
        msg = str(e).strip().splitlines()[0][:160]
        raise UserError(path, f"not the sniklaus/pytorch-hed HED layout ({msg})") from None
    return net.eval().requires_grad_(False)


@torch.no_grad()
def hed_edges(images: torch.Tensor, net: HED) -> torch.Tensor:
    """Edge maps for RSSA Eq. 9–10 from HED: [-1,1] RGB [B,3,H,W] -> [B,1,H,W] in [0,1],
    on the images' device. The port's input convention (BGR, [0,1]) is applied here."""
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"expected RGB images [B,3,H,W], got {tuple(images.shape)}")
    device = next(net.parameters()).device
    bgr = ((images.float() + 1.0) / 2.0).clamp(0.0, 1.0).flip(1)
    return net(bgr.to(device)).clamp(0.0, 1.0).to(images.device)
