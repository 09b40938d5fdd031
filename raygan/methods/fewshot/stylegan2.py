"""StyleGAN2 (Karras et al., 2020, "Analyzing and Improving the Image Quality of StyleGAN")
trained on a folder of images from its initial weights: the pretraining behind `raygan pretrain
FOLDER` (raygan/orchestrate/pretrain.py), whose output every other command reads as a source.

The harness's step as it is, which is StyleGAN2's recipe as rosinality's train.py runs it: the
non-saturating loss, lazy R1 (γ = 10 every 16 steps), lazy path-length regularisation (weight 2
every 4 steps), style mixing (0.9) and an EMA generator. What differs from adaptation lies in
the config `raygan pretrain` writes: every image of the folder (``data.shots: 0``), a randomly
initialised source (its ``init.pt``) and the noise strengths trained (StyleGAN2 trains them).
Each Ray Train rank draws its own batches (its sampling is seeded apart, orchestrate/train.py)
and the gradients are averaged across ranks, as DDP does."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from raygan.methods.fewshot.adapter import FewShotAdapter

MEAN_LATENT_CODES = 4096  # codes averaged into latent_avg (rosinality's generate.py and train.py)


@dataclass
class Config:
    """No knobs of its own (lr, batch, regularisers live in ``train``)."""


class Method(FewShotAdapter):
    """Plain StyleGAN2 training; every state carries the mean W of G_ema (``latent_avg``, what
    truncation reads), not the initial network's."""

    def state_dict(self) -> dict:
        state = super().state_dict()
        codes = torch.randn(MEAN_LATENT_CODES, self.g_ema.style_dim, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():  # a fixed draw: no effect on the training RNGs, the same codes every time
            state["latent_avg"] = self.g_ema.style(codes.to(self.device)).mean(0)
        return state
