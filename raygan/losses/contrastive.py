"""Contrastive losses of DCL (docs/METHODS.md, "DCL"; Zhao et al., Eq. 5–7)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def per_sample(features: torch.Tensor, pool: str = "flatten") -> torch.Tensor:
    """[N, C, H, W] -> [N, D]: flattened whole (default) or global-average-pooled."""
    if pool == "gap" and features.ndim == 4:
        return features.mean((2, 3))
    return features.flatten(1)


def generator_infonce(target_feats: torch.Tensor, source_feats: torch.Tensor, tau: float) -> torch.Tensor:
    """L_CL1, Eq. 5–6.

    mean_i −log [ f(t_i, s_i) / Σ_j f(t_i, s_j) ],  f(a, b) = exp(cos(a, b)/τ),
    with t_i = G_t^l(z_i), s_j = G_s^l(z_j) as per-sample vectors [N, D].
    """
    logits = F.cosine_similarity(target_feats[:, None], source_feats[None], dim=-1) / tau
    return F.cross_entropy(logits, torch.arange(len(logits), device=logits.device))


def discriminator_infonce(fake_feats: torch.Tensor, source_feats: torch.Tensor,
                          real_feats: torch.Tensor, tau: float) -> torch.Tensor:
    """L_CL2, Eq. 7.

    mean_i −log [ f(d_i, s_i) / (f(d_i, s_i) + Σ_{j=1..M} f(d_i, x_j)) ],
    d_i = D^l'(G_t(z_i)), s_i = D^l'(G_s(z_i)) [N, D], x_j = D^l'(real_j) [M, D].
    """
    pos = F.cosine_similarity(fake_feats, source_feats, dim=-1)[:, None]
    neg = F.cosine_similarity(fake_feats[:, None], real_feats[None], dim=-1)
    logits = torch.cat([pos, neg], dim=1) / tau
    return F.cross_entropy(logits, torch.zeros(len(logits), dtype=torch.long, device=logits.device))
