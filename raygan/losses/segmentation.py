"""Losses of semi-paired label-to-image synthesis (docs/METHODS.md, "Semi-paired label-to-image").

Shapes: `logits` [B, N+1, H, W] are the per-pixel outputs of the U-Net discriminator D_c
(channels 0..N-1 the N semantic classes, channel N the "fake" class); `onehot` [B, N, H, W]
float one-hot label maps. Everything here is a pure function of tensors; the VGG19
perceptual loss L_VGG is a frozen network, raygan/models/vgg.py.

Reductions follow OASIS (boschresearch/OASIS, models/losses.py): the per-pixel (weighted)
cross-entropy is averaged over batch and pixels, i.e. docs/METHODS.md's Σ_{h,w} becomes a mean
over h, w (the equations divided by H·W).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F




# ----------------------------------------------------------------------------- class balancing

CLASS_BALANCE = ("oasis", "unnormalised", "off")


def class_balance_weights(onehot: torch.Tensor, oasis_normalise: bool = False) -> torch.Tensor:
    """Class-balancing weights [N] of docs/METHODS.md: w_c = (H·W) / Σ_{h,w} E_t[t_{h,w,c}].

    E_t is the mean over the batch, so w_c = B·H·W / (pixels of class c in the batch); classes
    absent from the batch get w_c = 0 (they have no pixels, so the weight is never used).

    Differences from OASIS's `get_class_balancing`: OASIS computes
    numel(label) / (N · n_present · count_c) = B·H·W / (n_present · count_c), i.e. docs/METHODS.md's
    weight divided by the number of classes present in the batch (which makes the pixel-averaged
    weight 1); set `oasis_normalise=True` for that. OASIS leaves absent classes at 1/0 = inf
    (harmless there: it looks weights up by each pixel's argmax class, so they are never read);
    here they are 0. OASIS's optional "dontcare" class (weight 0 for class 0) is not applied;
    zero that entry of the returned weights and pass them as `weights=` to the losses.
    The weights carry no gradient."""
    onehot = onehot.detach()
    b, _, h, w = onehot.shape
    count = onehot.sum(dim=(0, 2, 3))
    present = count > 0
    weights = torch.where(present, b * h * w / count.clamp_min(torch.finfo(count.dtype).tiny),
                          torch.zeros_like(count))
    if oasis_normalise:
        weights = weights / present.sum().clamp_min(1)
    return weights


def balance_weights(onehot: torch.Tensor, mode: str) -> torch.Tensor:
    """The weights [N] of ``train.class_balance``: "oasis" (OASIS's normalisation by the classes
    present), "unnormalised" (docs/METHODS.md's w_c as written), "off" (every class 1, OASIS's
    --no_balancing_inloss)."""
    if mode not in CLASS_BALANCE:
        raise ValueError(f"class balance mode must be one of {CLASS_BALANCE}, got {mode!r}")
    if mode == "off":
        return torch.ones(onehot.shape[1], dtype=onehot.dtype, device=onehot.device)
    return class_balance_weights(onehot, oasis_normalise=mode == "oasis")


def _balanced_ce(logits: torch.Tensor, onehot: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """mean_{b,h,w} −Σ_c w_c t_bhwc log softmax(logits)_bhwc over the N+1 channels."""
    n = onehot.shape[1]
    if weights is None:
        weights = class_balance_weights(onehot)
    log_p = F.log_softmax(logits, dim=1)[:, :n]
    return -(weights.to(log_p.dtype)[None, :, None, None] * onehot * log_p).sum(1).mean()


def oasis_d_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor, onehot: torch.Tensor,
                 weights: torch.Tensor | None = None) -> torch.Tensor:
    """L_Dc (docs/METHODS.md; OASIS's (N+1)-class loss) on a paired batch:

    −E[Σ_c w_c Σ_{h,w} t_hwc log softmax(D_c(x))_hwc] − E[Σ_{h,w} log softmax(D_c(G(z,t)))_{hw,N+1}]

    with the softmax over all N+1 channels. Reduction as in OASIS: each term is a per-pixel
    (class-weighted) cross-entropy averaged over batch and pixels (torch.mean), and the two
    are summed. `weights` [N] default to class_balance_weights(onehot)."""
    real = _balanced_ce(logits_real, onehot, weights)
    fake = -F.log_softmax(logits_fake, dim=1)[:, onehot.shape[1]].mean()
    return real + fake


def oasis_g_loss(logits_fake: torch.Tensor, onehot: torch.Tensor,
                 weights: torch.Tensor | None = None) -> torch.Tensor:
    """First term of L_G,p (docs/METHODS.md): the class-balanced (N+1)-way cross-entropy of D_c's
    output on the fakes G(z, t) against their input labels t,
    −E[Σ_c w_c Σ_{h,w} t_hwc log softmax(D_c(G(z,t)))_hwc], averaged over pixels as in OASIS."""
    return _balanced_ce(logits_fake, onehot, weights)


def feature_matching(feats_real: Sequence[torch.Tensor], feats_fake: Sequence[torch.Tensor]) -> torch.Tensor:
    """L_fm of L_G,p without its λ_fm: Σ_{l<L} mean |D_c^l(x) − D_c^l(G(z,t))| over every D_c
    layer but the last (the last entry of each list is D_c's output and is skipped). The real
    features are detached."""
    if len(feats_real) != len(feats_fake):
        raise ValueError(f"feature lists differ in length: {len(feats_real)} vs {len(feats_fake)}")
    if len(feats_real) < 2:
        raise ValueError("feature matching needs at least one layer before the last")
    return sum((fr.detach() - ff).abs().mean() for fr, ff in zip(feats_real[:-1], feats_fake[:-1]))


def cycle_loss(logits: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
    """L_cyc = CE(D_c(G(z, t_u))[:, :N], t_u) (docs/METHODS.md, unpaired G term).

    The fake channel is dropped before the softmax (an N-way softmax over the class channels);
    plain (unweighted) cross-entropy averaged over batch and pixels. Gradients flow to `logits`
    (hence to G): "D_c frozen" means D_c's parameters receive none, which the caller arranges
    (requires_grad_(False) on D_c or stepping only G's optimiser), not this function."""
    n = onehot.shape[1]
    log_p = F.log_softmax(logits[:, :n], dim=1)
    return -(onehot * log_p).sum(1).mean()


def unconditional_g_loss(d_fake: torch.Tensor) -> torch.Tensor:
    """L_G,u = mean softplus(−D_u(G(z, t_u)))."""
    return F.softplus(-d_fake).mean()


def unconditional_d_loss(d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    """L_Du = mean softplus(−D_u(x_u)) + mean softplus(D_u(G(z, t_u)))."""
    return F.softplus(-d_real).mean() + F.softplus(d_fake).mean()


# ----------------------------------------------------------------------------- LabelMix (OASIS)

def labelmix_mask(onehot: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """OASIS's LabelMix mask M [B, 1, H, W]: every class present in the batch's label maps
    is assigned, by one fair coin each (the same for the whole batch, as OASIS draws it),
    to the real image (1) or the fake (0); each pixel takes its class's bit."""
    classes = onehot.argmax(1, keepdim=True)
    coin = torch.randint(0, 2, (onehot.shape[1],), generator=generator).to(onehot.device, onehot.dtype)
    return coin[classes]


def labelmix_loss(mask: torch.Tensor, logits_mixed: torch.Tensor, logits_real: torch.Tensor,
                  logits_fake: torch.Tensor) -> torch.Tensor:
    """L_LM, OASIS's LabelMix regularisation of D_c (docs/METHODS.md, "LabelMix"): D_c's output on the mixed image
    LabelMix(x, x̂, M) = M ⊙ x + (1 − M) ⊙ x̂ must equal the same mix of its outputs on the real
    and the fake image, ‖D(LabelMix(x, x̂, M)) − (M ⊙ D(x) + (1 − M) ⊙ D(x̂))‖², averaged over
    batch, the N+1 channels and pixels (OASIS: torch.nn.MSELoss). Gradients reach all three
    outputs, as in OASIS; the D update adds λ_LM L_LM."""
    return F.mse_loss(logits_mixed, mask * logits_real + (1 - mask) * logits_fake)


def labelmix_images(mask: torch.Tensor, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """LabelMix(x, x̂, M) = M ⊙ x + (1 − M) ⊙ x̂ (the image D_c is shown for L_LM)."""
    return mask * real + (1 - mask) * fake


# ----------------------------------------------------------------------------- TCR baseline

def transform_consistency(g_of_transformed: torch.Tensor, transformed_g: torch.Tensor) -> torch.Tensor:
    """TCR's consistency term: mean |G(z, T(t)) − T(G(z, t))| (L1, averaged over all elements).
    Which side is detached, if any, is the caller's choice."""
    return (g_of_transformed - transformed_g).abs().mean()


@dataclass(frozen=True)
class FlipCropParams:
    """Per-sample geometric transform: take the box rows [top, top+height), cols
    [left, left+width) of the image (edge-replicated where the box leaves it: a box of the full
    size at a non-zero offset is an integer translation), resize it back to H×W, then mirror
    horizontally where `flip`. All fields are [B] tensors (bool / long)."""
    flip: torch.Tensor
    top: torch.Tensor
    left: torch.Tensor
    height: torch.Tensor
    width: torch.Tensor


def sample_flip_crop(batch: int, height: int, width: int, generator: torch.Generator,
                     flip_prob: float = 0.5, min_scale: float = 0.75, max_shift: float = 0.125) -> FlipCropParams:
    """Draw FlipCropParams from `generator`: flip with probability `flip_prob`; box side
    round(s·H) × round(s·W) with s ~ U[min_scale, 1] per sample; integer offsets uniform over
    every placement that keeps the box within the image grown by round(max_shift·side) pixels
    on each side."""
    flip = torch.rand(batch, generator=generator) < flip_prob
    scale = min_scale + (1.0 - min_scale) * torch.rand(batch, generator=generator, dtype=torch.float64)
    ch = (scale * height).round().long().clamp(1, height)
    cw = (scale * width).round().long().clamp(1, width)
    sy, sx = round(max_shift * height), round(max_shift * width)
    u = torch.rand(2, batch, generator=generator, dtype=torch.float64)
    top = (-sy + u[0] * (height - ch + 2 * sy + 1)).floor().long().clamp(max=height - ch + sy)
    left = (-sx + u[1] * (width - cw + 2 * sx + 1)).floor().long().clamp(max=width - cw + sx)
    return FlipCropParams(flip, top, left, ch, cw)


def random_flip_crop(x: torch.Tensor, params: FlipCropParams, labels: bool = False) -> torch.Tensor:
    """Apply `params` to images [B, C, H, W] (bilinear resize, align_corners=False) or, with
    `labels=True`, to label maps — one-hot [B, N, H, W] or integer [B, H, W] — with
    nearest-exact resize, so one-hot maps stay one-hot. Both resamplers use the same half-pixel
    grid, so a label boundary stays where the image's step edge crosses its midpoint."""
    squeeze = x.ndim == 3
    if squeeze:
        x = x[:, None]
    dtype = x.dtype
    work = x if dtype.is_floating_point else x.float()
    h, w = work.shape[-2:]
    pad = int(max(0, -int(params.top.min()), -int(params.left.min()),
                  int((params.top + params.height).max()) - h, int((params.left + params.width).max()) - w))
    padded = F.pad(work, (pad, pad, pad, pad), mode="replicate") if pad else work
    out = []
    for i in range(len(work)):
        t, l_, ch, cw = (int(params.top[i]) + pad, int(params.left[i]) + pad,
                         int(params.height[i]), int(params.width[i]))
        crop = padded[i:i + 1, :, t:t + ch, l_:l_ + cw]
        if (ch, cw) != (h, w):
            if labels:
                crop = F.interpolate(crop, size=(h, w), mode="nearest-exact")
            else:
                crop = F.interpolate(crop, size=(h, w), mode="bilinear", align_corners=False)
        if bool(params.flip[i]):
            crop = crop.flip(-1)
        out.append(crop)
    y = torch.cat(out)
    if not dtype.is_floating_point:
        y = y.round().to(dtype)
    return y[:, 0] if squeeze else y
