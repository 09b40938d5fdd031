"""OASIS (Schönfeld et al., 2021) trained on the paired part P only — the
supervised baseline of the semi-paired paper (and, at r = 1, its upper bound), as
the public OASIS code trains it: the class-balanced N+1 loss of the U-Net D_c
(L_Dc) with LabelMix regularisation (λ_LM), its generator side with the VGG loss,
the EMA generator and OASIS's class-balance normalisation (both in the harness,
``train.ema_decay`` / ``train.class_balance``) and D's learning rate 4e-4
(``train.lr_d``). Feature matching is off (OASIS found it unnecessary)."""
from __future__ import annotations

from dataclasses import dataclass

from raygan.config import knob
from raygan.losses.segmentation import oasis_d_loss, oasis_g_loss
from raygan.methods.labelgen import harness
from raygan.methods.labelgen.harness import LabelToImage


@dataclass
class Config:
    lambda_vgg: float = knob(10.0, lo=0.0, help="VGG loss (OASIS-style setups: 10)")
    lambda_labelmix: float = knob(10.0, lo=0.0, help="LabelMix regularisation of D_c (OASIS: 10, Cityscapes 5; "
                                                     "0: off)")


class Method(LabelToImage):
    paired = True

    def __init__(self, cfg: Config, t, data, **kwargs):
        super().__init__(cfg, t, data, **kwargs)
        self.vgg = harness.vgg_loss(self.train, self.device) if cfg.lambda_vgg > 0 else None

    def d_terms(self, batch, fakes):
        x, t, fake = batch["x_p"], batch["t_p"], fakes["t_p"]
        real_logits, fake_logits = self.d_c(x), self.d_c(fake)
        loss = oasis_d_loss(real_logits, fake_logits, t, self.class_weights(t))
        logs = {"loss/d_c": loss.detach()}
        if self.cfg.lambda_labelmix > 0:
            l_lm = self.labelmix(x, fake, t, real_logits, fake_logits)
            loss, logs["loss/labelmix"] = loss + self.cfg.lambda_labelmix * l_lm, l_lm.detach()
        return loss, logs

    def g_terms(self, batch):
        t = batch["t_p"]
        fake = self.g(t, self.z(len(t)))
        loss = oasis_g_loss(self.d_c(fake), t, self.class_weights(t))
        logs = {"loss/g_c": loss.detach()}
        if self.vgg is not None:
            l_vgg = self.vgg(fake, batch["x_p"])
            loss, logs["loss/vgg"] = loss + self.cfg.lambda_vgg * l_vgg, l_vgg.detach()
        return loss, logs
