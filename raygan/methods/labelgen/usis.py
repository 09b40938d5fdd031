"""USIS-style fully unpaired label-to-image (Eskandar et al.): no pairs at all.
A separate segmenter S is the reverse mapping: G and S together minimise the
cycle loss CE(S(G(z, t_u)), t_u), and an unconditional (wavelet) D_u judges
G(z, t_u) against the unpaired images x_u."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from raygan.config import knob
from raygan.losses.segmentation import cycle_loss, unconditional_d_loss, unconditional_g_loss
from raygan.methods.labelgen.harness import LabelToImage



@dataclass
class Config:
    lambda_cyc: float = knob(1.0, lo=0.0, help="weight of the cycle loss through S (choice)")


class Method(LabelToImage):
    paired = False
    unpaired_images = unpaired_labels = segmenter = True

    def d_terms(self, batch, fakes):
        loss = unconditional_d_loss(self.d_u(batch["x_u"]), self.d_u(fakes["t_u"]))
        return loss, {"loss/d_u": loss.detach()}

    def g_terms(self, batch):
        fake = self.g(batch["t_u"], self.z(len(batch["t_u"])))
        self.s.requires_grad_(True)  # S learns the reverse mapping with G
        self.s.zero_grad(set_to_none=True)
        l_cyc = cycle_loss(self.s(fake), batch["t_u"])
        l_u = unconditional_g_loss(self.d_u(fake))
        return l_u + self.cfg.lambda_cyc * l_cyc, {"loss/cyc": l_cyc.detach(), "loss/g_u": l_u.detach()}

    def after_g_step(self):
        self.grad_sync(list(self.s.parameters()))
        with torch.no_grad():
            self.d_optim.step()  # only S holds gradients here
        self.s.requires_grad_(False)
