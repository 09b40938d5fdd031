"""Semi-paired label-to-image synthesis (seed paper, Sec. 2; docs/METHODS.md).

Each step takes a paired batch (x_p, t_p) and an unpaired batch (x_u, t_u).
- D_c, a U-Net with N+1 outputs, segments real paired images into their
  labels (class-balanced) and fakes into the "fake" class (L_Dc);
- on paired data G must make D_c segment G(z, t_p) into t_p, plus feature
  matching on D_c's layers and the VGG loss (L_G,p);
- on unpaired data D_c, FROZEN, is the reverse mapping: G must make it segment
  G(z, t_u) back into t_u (L_cyc; the fake channel is ignored), and D_u judges
  G(z, t_u) against x_u (L_G,u; D_u learns softplus(−D_u(x_u)) + softplus(D_u(G))).
G minimises L_G,p + λ_cyc L_cyc + λ_u L_G,u. Paired images are drawn with the
rare-class sampler in the first half of training. As for OASIS here, the class
weights are OASIS's (``train.class_balance``) and G's EMA is what is evaluated
(the harness).

Ablations of the paper's Table 2 (``ablation``): A a separate segmenter S for
the reverse mapping (trained on P) instead of D_c; B D_c unfrozen during L_cyc
(it is then also updated by the cycle gradient); C no L_fm; D no L_vgg; E no
rare-class sampling; F rare-class sampling in the second half.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from raygan.config import knob
from raygan.data.rare_classes import RareClassSampler
from raygan.losses.segmentation import (cycle_loss, feature_matching, oasis_d_loss, oasis_g_loss,
                                        unconditional_d_loss, unconditional_g_loss)
from raygan.methods.labelgen import harness
from raygan.methods.labelgen.harness import LabelToImage

ABLATIONS = ["none", "A", "B", "C", "D", "E", "F"]


@dataclass
class Config:
    lambda_cyc: float = knob(1.0, lo=0.0, help="weight of the cycle loss through D_c (choice: the paper gives none)")
    lambda_u: float = knob(1.0, lo=0.0, help="weight of the unconditional adversarial loss (choice)")
    lambda_fm: float = knob(10.0, lo=0.0, help="feature matching on D_c's layers (choice: SPADE's 10)")
    lambda_vgg: float = knob(10.0, lo=0.0, help="VGG loss (OASIS-style setups: 10)")
    rare_sampling: str = knob("first", choices=["first", "second", "never"],
                              help="when paired images are drawn by rare-class probability")
    rare_mode: str = knob("sum", choices=["sum", "max"], help="p̃_k: sum over classes (paper) or max")
    lambda_labelmix: float = knob(0.0, lo=0.0, help="OASIS's LabelMix on D_c (not in the paper: 0; OASIS: 10)")
    ablation: str = knob("none", choices=ABLATIONS, help="one row of the paper's Table 2 (see the module doc)")


class Method(LabelToImage):
    paired = unpaired_images = unpaired_labels = True

    def __init__(self, cfg: Config, t, data, **kwargs):
        self.segmenter = cfg.ablation == "A"
        super().__init__(cfg, t, data, **kwargs)
        phase = {"E": "off", "F": "second"}.get(cfg.ablation, cfg.rare_sampling.replace("never", "off"))
        self.sampler = RareClassSampler(data.paired_labels, self.n, self.train.steps, phase, cfg.rare_mode,
                                        seed=int(torch.randint(2**31, (1,), generator=self.torch_rng)))
        self.lambda_fm = 0.0 if cfg.ablation == "C" else cfg.lambda_fm
        self.vgg = None
        if cfg.lambda_vgg > 0 and cfg.ablation != "D":
            self.vgg = harness.vgg_loss(self.train, self.device)
        self.reverse = self.s if self.s is not None else self.d_c  # the network of L_cyc

    def paired_indices(self, step, batch):
        return self.sampler.indices(step, batch)

    def d_terms(self, batch, fakes):
        x, t, fake = batch["x_p"], batch["t_p"], fakes["t_p"]
        real_logits, fake_logits = self.d_c(x), self.d_c(fake)
        l_dc = oasis_d_loss(real_logits, fake_logits, t, self.class_weights(t))
        l_du = unconditional_d_loss(self.d_u(batch["x_u"]), self.d_u(fakes["t_u"]))
        loss, logs = l_dc + l_du, {"loss/d_c": l_dc.detach(), "loss/d_u": l_du.detach()}
        if self.cfg.lambda_labelmix > 0:  # not in the paper: OASIS's regulariser, for the comparison
            l_lm = self.labelmix(x, fake, t, real_logits, fake_logits)
            loss, logs["loss/labelmix"] = loss + self.cfg.lambda_labelmix * l_lm, l_lm.detach()
        if self.s is not None:  # ablation A: S learns to segment the real pairs
            l_s = F.cross_entropy(self.s(batch["x_p"])[:, : self.n], batch["t_p"].argmax(1))
            loss, logs["loss/s"] = loss + l_s, l_s.detach()
        return loss, logs

    def g_terms(self, batch):
        fake_p = self.g(batch["t_p"], self.z(len(batch["t_p"])))
        logits, feats_fake = self.d_c(fake_p, return_feats=True)
        with torch.no_grad():
            _, feats_real = self.d_c(batch["x_p"], return_feats=True)
        l_adv = oasis_g_loss(logits, batch["t_p"], self.class_weights(batch["t_p"]))
        l_fm = feature_matching(feats_real, feats_fake)
        loss = l_adv + self.lambda_fm * l_fm
        logs = {"loss/g_c": l_adv.detach(), "loss/fm": l_fm.detach()}
        if self.vgg is not None:
            l_vgg = self.vgg(fake_p, batch["x_p"])
            loss, logs["loss/vgg"] = loss + self.cfg.lambda_vgg * l_vgg, l_vgg.detach()

        fake_u = self.g(batch["t_u"], self.z(len(batch["t_u"])))
        if self.cfg.ablation == "B":  # the cycle gradient reaches D_c's parameters too
            self.d_c.requires_grad_(True)
            self.d_c.zero_grad(set_to_none=True)
        l_cyc = cycle_loss(self.reverse(fake_u), batch["t_u"])
        l_u = unconditional_g_loss(self.d_u(fake_u))
        loss = loss + self.cfg.lambda_cyc * l_cyc + self.cfg.lambda_u * l_u
        logs.update({"loss/cyc": l_cyc.detach(), "loss/g_u": l_u.detach()})
        return loss, logs

    def after_g_step(self):
        if self.cfg.ablation == "B":  # D_c steps on the cycle loss's gradient (the ablated variant)
            self.grad_sync(list(self.d_c.parameters()))
            self.d_optim.step()
            self.d_c.requires_grad_(False)

    def state_dict(self):
        return {**super().state_dict(), "sampler": self.sampler.state_dict()}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.sampler.load_state_dict(state["sampler"])
