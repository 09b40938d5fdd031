"""Adversarial losses and StyleGAN2 regularisers (docs/METHODS.md, "Shared adversarial losses")."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def d_nonsaturating(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """L_D = softplus(-D(x)) + softplus(D(G(z))), averaged over samples (and patches)."""
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def g_nonsaturating(fake_logits: torch.Tensor) -> torch.Tensor:
    """L_G = softplus(-D(G(z))), averaged."""
    return F.softplus(-fake_logits).mean()


def r1_penalty(real_logits: torch.Tensor, real_images: torch.Tensor) -> torch.Tensor:
    """R1 = E ||∇_x D(x)||² on real images (``real_images`` must require grad)."""
    (grad,) = torch.autograd.grad(real_logits.sum(), real_images, create_graph=True)
    return grad.pow(2).flatten(1).sum(1).mean()


def path_length_penalty(images: torch.Tensor, latents: torch.Tensor, mean_path: torch.Tensor,
                        decay: float = 0.01):
    """StyleGAN2 path-length regulariser.

    a = ||J_wᵀ y||₂ with y ~ N(0, I)/√(HW), averaged over the W+ layers;
    penalty = E (a − ā)², ā an exponential moving average of a (``decay``).
    Returns (penalty, updated ā, mean a).
    """
    y = torch.randn_like(images) / math.sqrt(images.shape[2] * images.shape[3])
    (grad,) = torch.autograd.grad((images * y).sum(), latents, create_graph=True)
    lengths = grad.pow(2).sum(2).mean(1).sqrt()
    new_mean = mean_path + decay * (lengths.mean().detach() - mean_path)
    return (lengths - new_mean).pow(2).mean(), new_mean, lengths.mean().detach()
