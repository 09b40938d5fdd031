"""EWC (Li et al., 2020): TGAN + λ_ewc Σ_i F_i (θ_i − θ_s,i)².

F is the diagonal (empirical) Fisher information of G's weights, estimated
once on the source model: the mean over single samples z of the squared
gradient of the generator's adversarial log-likelihood, −softplus(−D_s(G_s(z))),
with respect to each weight. Weights the source depends on most move least.

λ_ewc is calibrated to this model (preset ``calibrated``, the default): the
paper's 5e8 (preset ``paper``) was set for its own network, Fisher estimate and
parametrisation; on the embedded source with equalised-lr weights Σ F (θ − θ_s)²
is 1.6 where plain fine-tuning (TGAN) stands after 500 steps, so 5e8 makes the
penalty ~10⁹ nats and G_t cannot move. The calibrated λ = 10 makes the penalty
~16 nats at TGAN's displacement: a strong pull back, at a scale where the
adversarial loss (~1 nat) still moves G_t.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F

from raygan.config import knob
from raygan.losses.regularizers import ewc_penalty
from raygan.methods.fewshot.adapter import FewShotAdapter


PRESETS = {"calibrated": 10.0, "paper": 5e8}


@dataclass
class Config:
    preset: str = knob("calibrated", choices=list(PRESETS),
                       help="λ_ewc calibrated to this model's parametrisation, or the EWC paper's 5e8")
    lambda_ewc: Optional[float] = knob(None, lo=0.0, help="weight of the EWC penalty (default: the preset's)")
    fisher_samples: int = knob(32, lo=1, help="samples z behind the Fisher estimate")


def diagonal_fisher(g, d, n: int, style_dim: int, generator: torch.Generator, device="cpu") -> list:
    """E_z[(∂ log D(G(z)) / ∂θ)²] per weight of g, one sample z at a time."""
    fisher = [torch.zeros_like(p) for p in g.parameters()]
    for _ in range(n):
        z = torch.randn(1, style_dim, generator=generator).to(device)
        log_likelihood = -F.softplus(-d(g([z])[0])).sum()
        grads = torch.autograd.grad(log_likelihood, list(g.parameters()), allow_unused=True)
        for f, gr in zip(fisher, grads):
            if gr is not None:
                f.add_(gr.pow(2) / n)
    return fisher


class Method(FewShotAdapter):
    def __init__(self, cfg: Config, *args, **kwargs):
        super().__init__(cfg, *args, **kwargs)
        g_s = self.g_source.requires_grad_(True)  # gradients wrt the source weights, once
        d_s = self.d.eval()
        self.fisher = diagonal_fisher(g_s, d_s, cfg.fisher_samples, g_s.style_dim, self.torch_rng, self.device)
        self.g_source.requires_grad_(False)
        self.d.train()
        self.source_params = [p.detach() for p in self.g_source.parameters()]

    def g_extra(self, step):
        penalty = ewc_penalty(list(self.g.parameters()), self.source_params, self.fisher)
        lam = PRESETS[self.cfg.preset] if self.cfg.lambda_ewc is None else self.cfg.lambda_ewc
        return lam * penalty, {"loss/ewc": penalty.detach()}
