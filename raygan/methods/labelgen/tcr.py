"""TCR (Mustafa & Mantiuk, 2020) as the semi-paired paper applies it to label-to-image:
OASIS's generator and supervised adversarial loss on P, plus transformation
consistency on the unpaired label maps T_u: G's image of a flipped/cropped
label map must be the same flip/crop of G's image of the original,
L_tcr = |G(z, T(t_u)) − T(G(z, t_u))|_1 (the same z on both sides)."""
from __future__ import annotations

from dataclasses import dataclass

from raygan.config import knob
from raygan.losses.segmentation import random_flip_crop, sample_flip_crop, transform_consistency
from raygan.methods.labelgen import oasis



@dataclass
class Config(oasis.Config):
    lambda_tcr: float = knob(1.0, lo=0.0, help="weight of the transformation consistency (choice)")


class Method(oasis.Method):
    unpaired_labels = True

    def fakes(self, batch):
        return super().fakes({"t_p": batch["t_p"]})  # D_c judges paired fakes only

    def g_terms(self, batch):
        loss, logs = super().g_terms(batch)
        t_u = batch["t_u"]
        b, _, h, w = t_u.shape
        params = sample_flip_crop(b, h, w, self.torch_rng)
        z = self.z(b)
        l_tcr = transform_consistency(self.g(random_flip_crop(t_u, params, labels=True), z),
                                      random_flip_crop(self.g(t_u, z), params))
        logs["loss/tcr"] = l_tcr.detach()
        return loss + self.cfg.lambda_tcr * l_tcr, logs
