"""Cross-domain correspondence of CDC/IDC (Ojha et al.; docs/METHODS.md, "Few-shot baselines")."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def similarity_distribution(feats: torch.Tensor) -> torch.Tensor:
    """p_i = softmax_{j≠i} cos(F(z_i), F(z_j)) for per-sample vectors [N, D] -> [N, N-1]."""
    n = len(feats)
    cos = F.cosine_similarity(feats[:, None], feats[None], dim=-1)
    off_diagonal = ~torch.eye(n, dtype=torch.bool, device=feats.device)
    return F.softmax(cos[off_diagonal].view(n, n - 1), dim=1)


def cross_domain_distance(target_feats: torch.Tensor, source_feats: torch.Tensor,
                          direction: str = "target_source") -> torch.Tensor:
    """L_dist (CDC) for one layer: Σ_i KL(p_i^t ‖ p_i^s) / (N(N−1)).

    ``target_feats`` G_t^l(z_i), ``source_feats`` G_s^l(z_i) as [N, D]. The
    1/(N(N−1)) is the element mean of PyTorch's KLDivLoss, the reduction under
    which the public code's λ_dist = 1000 was set. That code computes
    KL(p^s ‖ p^t) (``direction="source_target"``); docs/METHODS.md states KL(p^t ‖ p^s).
    """
    p_t, p_s = similarity_distribution(target_feats), similarity_distribution(source_feats)
    if direction == "source_target":
        p_t, p_s = p_s, p_t
    return (p_t * (p_t.log() - p_s.log())).mean()
