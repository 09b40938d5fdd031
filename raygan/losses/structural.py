"""Spatial structural consistency of RSSA (Xiao et al.; docs/METHODS.md, "RSSA", Eq. 3–6).

Reductions (a choice; the equations write sums): every term is a mean over
samples, positions and entries, summed over layers, so the paper's α = β = 1
weigh layers of any resolution alike.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def reduce_map(f: torch.Tensor, max_side: int, pool: int) -> torch.Tensor:
    """Average-pool a feature map [B, C, H, W] by ``pool`` while it is wider than
    ``max_side`` (the paper pools large maps before correlating them)."""
    while f.shape[-1] > max_side and pool > 1 and f.shape[-1] >= pool:
        f = F.avg_pool2d(f, pool)
    return f


def self_correlation(f: torch.Tensor, patch: int = 0) -> torch.Tensor:
    """C(x,y)(i,j) = cos(f(x,y), f(i,j)), Eq. 3, for f [B, C, H, W] -> [B', P, P].

    With ``patch`` > 0 and a map wider than it, the map is cut into
    non-overlapping patch×patch tiles (a remainder is dropped) and each tile is
    one local self-correlation matrix (B' = B × tiles, P = patch²).
    """
    b, c, h, w = f.shape
    if patch and max(h, w) > patch:
        tiles = f.unfold(2, patch, patch).unfold(3, patch, patch)  # [B, C, h', w', p, p]
        f = tiles.permute(0, 2, 3, 1, 4, 5).reshape(-1, c, patch * patch)
    else:
        f = f.reshape(b, c, h * w)
    f = F.normalize(f, dim=1)
    return f.transpose(1, 2) @ f


SCC_DISTANCES = {"smooth_l1": F.smooth_l1_loss, "l1": F.l1_loss}


def scc_loss(target_feats, source_feats, patch: int = 16, max_side: int = 16, pool: int = 2,
             distance: str = "smooth_l1") -> torch.Tensor:
    """L_scc, Eq. 4: Σ_l mean smoothL1(C^{t,l}, C^{s,l}) over samples and matrix entries
    (``distance="l1"``: the public RSSA code's plain L1 instead of the paper's smooth L1).

    ``target_feats`` / ``source_feats``: lists of G_t / G_s feature maps [B, C, H, W]
    for the same z (the source side without gradients).
    """
    dist = SCC_DISTANCES[distance]
    total = 0.0
    for ft, fs in zip(target_feats, source_feats):
        ft, fs = reduce_map(ft, max_side, pool), reduce_map(fs, max_side, pool)
        total = total + dist(self_correlation(ft, patch), self_correlation(fs, patch))
    return total


def window_correlation(f: torch.Tensor, window: int) -> torch.Tensor:
    """D_jk(x,y), Eq. 5: softmax over the window Q (window×window around (x,y),
    clipped at the border) of cos(f_j(x,y), f_k(m,n)), for every ordered pair
    j ≠ k of the batch. f [n, C, H, W] -> [n(n−1), window², H·W]."""
    n, c, h, w = f.shape
    r = window // 2
    f = F.normalize(f, dim=1)
    neighbours = F.unfold(f, window, padding=r).view(n, c, window * window, h * w)
    cos = torch.einsum("jcp,kcqp->jkqp", f.reshape(n, c, h * w), neighbours)
    inside = F.unfold(f.new_ones(1, 1, h, w), window, padding=r).view(1, 1, window * window, h * w) > 0
    cos = cos.masked_fill(~inside, float("-inf"))
    pairs = ~torch.eye(n, dtype=torch.bool, device=f.device)
    return F.softmax(cos[pairs], dim=1)


def dcc_loss(target_feats, source_feats, window: int = 3, max_side: int = 16, pool: int = 2) -> torch.Tensor:
    """L_dcc, Eq. 6: Σ_l mean_{j,k,x,y} ‖D^{t,l}_jk(x,y) − D^{s,l}_jk(x,y)‖_1.

    Feature lists as for ``scc_loss``, for a batch of an anchor and its N
    neighbours in U(z, r).
    """
    total = 0.0
    for ft, fs in zip(target_feats, source_feats):
        ft, fs = reduce_map(ft, max_side, pool), reduce_map(fs, max_side, pool)
        diff = window_correlation(ft, window) - window_correlation(fs, window)
        total = total + diff.abs().sum(1).mean()
    return total
