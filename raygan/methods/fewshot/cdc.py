"""CDC / IDC (Ojha et al., 2021): few-shot adaptation via cross-domain correspondence.

For a batch of its own z_0..z_{N-1} (4 codes in the public code) and one layer l (drawn at random
each step), the distribution of each sample's similarities to the others must
stay what it was in the source: L_dist = Σ_i KL(p_i^{t,l} ‖ p_i^{s,l}). The
discriminator is image-level on z near a few anchors and patch-level elsewhere
(the CDC setup in ``fewshot.py``). G objective: L_adv + λ_dist L_dist.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from raygan.config import knob
from raygan.errors import UserError
from raygan.losses.contrastive import per_sample
from raygan.losses.correspondence import cross_domain_distance
from raygan.methods.fewshot.adapter import CDCSetup, FewShotAdapter


@dataclass
class Config(CDCSetup):
    lambda_dist: float = knob(1000.0, lo=0.0, help="weight of L_dist (the public code's value)")
    g_layers: list[int] = knob([], help="generator layers drawn from (indices of G's features); [] = all but the first")
    kl_direction: str = knob("target_source", choices=["target_source", "source_target"],
                             help="KL(p_t‖p_s) as docs/METHODS.md states, or KL(p_s‖p_t) as the public code computes")

    def validate(self, where, section):
        if any(i < 0 for i in self.g_layers):
            raise UserError(where, f"{section}.g_layers: expected indices >= 0")


class Method(FewShotAdapter):
    def __init__(self, cfg: Config, *args, **kwargs):
        super().__init__(cfg, *args, **kwargs)
        self.g_layers = self.feature_layers(cfg.g_layers)

    def g_extra(self, step):
        z, noise = self.consistency_codes(self.cfg.consistency_batch)
        feats = self.generate(self.g, z, noise, return_feats=True)[2]
        with torch.no_grad():
            _, _, source_feats = self.generate(self.g_source, z, noise, return_feats=True)
        l = self.rng.choice(self.g_layers)
        dist = cross_domain_distance(per_sample(feats[l]), per_sample(source_feats[l]), self.cfg.kl_direction)
        return self.cfg.lambda_dist * dist, {"loss/dist": dist.detach()}
