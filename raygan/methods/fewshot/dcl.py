"""DCL: dual contrastive learning for few-shot adaptation (Zhao et al., Sec. 3).

Two InfoNCE terms keep the adapted generator G_t close to the source G_s:
- L_CL1 (Eq. 5–6) on a generator layer l: G_t^l(z_i) must be nearer to its own
  source counterpart G_s^l(z_i) than to G_s^l(z_j), j ≠ i;
- L_CL2 (Eq. 7) on a discriminator layer l': D^l'(G_t(z_i)) must be nearer to
  D^l'(G_s(z_i)) than to the real target shots x_j.
Objective (Eq. 8): min_G max_D L_adv + λ1 L_CL1 + λ2 L_CL2. For D the equation
reads three ways, a knob (``d_cl2``): D is trained by L_adv alone and L_CL2 shapes
G only (``none``, the default), D also minimises λ2 L_CL2 (``min``: D as a feature
encoder that "maximizes the agreement" of the positive pair), or D maximises it
(``max``, the literal min-max). On the embedded benchmark ``min`` collapses G_t
to one image and ``max`` keeps G_t from adapting (benchmarks/RESULTS.md). Both
terms use a batch of their own (``consistency_codes``), and layers l and l' are
drawn at random every step. D follows the CDC setup.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from raygan.config import knob
from raygan.errors import UserError
from raygan.losses.contrastive import discriminator_infonce, generator_infonce, per_sample
from raygan.methods.fewshot.adapter import CDCSetup, FewShotAdapter


@dataclass
class Config(CDCSetup):
    lambda1: float = knob(2.0, lo=0.0, help="weight of L_CL1 (generator InfoNCE)")
    lambda2: float = knob(0.5, lo=0.0, help="weight of L_CL2 (discriminator InfoNCE)")
    tau: float = knob(0.07, lo=0.0, lo_open=True, hi=10.0, help="InfoNCE temperature")
    g_layers: list[int] = knob([], help="generator layers for L_CL1 (indices); [] = all")
    d_layers: list[int] = knob([], help="D blocks for L_CL2 (indices); [] = all but the first")
    feature_pool: str = knob("flatten", choices=["flatten", "gap"])
    d_cl2: str = knob("none", choices=["none", "min", "max"],
                      help="D's part in λ2 L_CL2: none (L_adv alone trains D), min, or max (Eq. 8 literally)")

    def validate(self, where, section):
        if any(i < 0 for i in self.g_layers + self.d_layers):
            raise UserError(where, f"{section}.g_layers/d_layers: expected indices >= 0")


class Method(FewShotAdapter):
    def __init__(self, cfg: Config, *args, **kwargs):
        super().__init__(cfg, *args, **kwargs)
        n_g, n_d = 1 + len(self.g.convs), len(self.d.convs)
        self.g_layers = cfg.g_layers or list(range(n_g))
        self.d_layers = cfg.d_layers or list(range(1, n_d))
        bad = [i for i in self.g_layers if i >= n_g] + [i for i in self.d_layers if i >= n_d]
        if bad:
            raise UserError("method", f"layer indices {bad} out of range: G has {n_g} layers, D {n_d} blocks")

    def _source(self, z, noise):
        """G_s(z) and its layer features, without gradients."""
        with torch.no_grad():
            img, _, feats = self.generate(self.g_source, z, noise, return_feats=True)
        return img, feats

    def _l_cl2(self, fake, source_img):
        """L_CL2 on a random D block: D features of G_t(z), G_s(z) and the real shots."""
        l = self.rng.choice(self.d_layers)
        pool = self.cfg.feature_pool
        feats = [self.d(x, return_feats=True)[1][l] for x in (fake, source_img, self.shots)]
        return discriminator_infonce(*(per_sample(f, pool) for f in feats), self.cfg.tau)

    def g_extra(self, step):
        z, noise = self.consistency_codes(self.cfg.consistency_batch)
        fake, _, feats = self.generate(self.g, z, noise, return_feats=True)
        source_img, source_feats = self._source(z, noise)
        l = self.rng.choice(self.g_layers)
        pool = self.cfg.feature_pool
        l_cl1 = generator_infonce(per_sample(feats[l], pool), per_sample(source_feats[l], pool), self.cfg.tau)
        l_cl2 = self._l_cl2(fake, source_img)
        loss = self.cfg.lambda1 * l_cl1 + self.cfg.lambda2 * l_cl2
        return loss, {"loss/cl1": l_cl1.detach(), "loss/cl2_g": l_cl2.detach()}

    def d_extra(self, step):
        if self.cfg.lambda2 == 0 or self.cfg.d_cl2 == "none":
            return super().d_extra(step)
        z, noise = self.consistency_codes(self.cfg.consistency_batch)
        with torch.no_grad():
            fake, _ = self.generate(self.g, z, noise)
        source_img, _ = self._source(z, noise)
        l_cl2 = self._l_cl2(fake, source_img)
        sign = -1.0 if self.cfg.d_cl2 == "max" else 1.0
        return sign * self.cfg.lambda2 * l_cl2, {"loss/cl2_d": l_cl2.detach()}
