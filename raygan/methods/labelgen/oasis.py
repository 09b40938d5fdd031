"""OASIS (Schönfeld et al., 2021) trained on the paired part P only — the
supervised baseline of the semi-paired paper: the class-balanced N+1 loss of the
U-Net D_c (L_Dc) and its generator side, with the VGG loss as in OASIS-style
setups. Feature matching is off (OASIS found it unnecessary); LabelMix and
the EMA generator of OASIS are not part of this baseline."""
from __future__ import annotations

from dataclasses import dataclass

from raygan.config import knob
from raygan.losses.segmentation import oasis_d_loss, oasis_g_loss
from raygan.methods.labelgen import harness
from raygan.methods.labelgen.harness import LabelToImage



@dataclass
class Config:
    lambda_vgg: float = knob(10.0, lo=0.0, help="VGG loss (OASIS-style setups: 10)")


class Method(LabelToImage):
    paired = True

    def __init__(self, cfg: Config, t, data, **kwargs):
        super().__init__(cfg, t, data, **kwargs)
        self.vgg = harness.vgg_loss(self.train, self.device) if cfg.lambda_vgg > 0 else None

    def d_terms(self, batch, fakes):
        loss = oasis_d_loss(self.d_c(batch["x_p"]), self.d_c(fakes["t_p"]), batch["t_p"])
        return loss, {"loss/d_c": loss.item()}

    def g_terms(self, batch):
        fake = self.g(batch["t_p"], self.z(len(batch["t_p"])))
        loss = oasis_g_loss(self.d_c(fake), batch["t_p"])
        logs = {"loss/g_c": loss.item()}
        if self.vgg is not None:
            l_vgg = self.vgg(fake, batch["x_p"])
            loss, logs["loss/vgg"] = loss + self.cfg.lambda_vgg * l_vgg, l_vgg.item()
        return loss, logs
