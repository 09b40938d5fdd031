"""The few-shot adaptation harness shared by TGAN, FreezeD, EWC, CDC, DCL and RSSA.

It runs the public few-shot code's recipe (CDC's train.py, on which the DCL
and RSSA code are built): G_s (frozen), G_t and D start from the source
checkpoint; one ``step`` is a D update then a G update with the non-saturating
loss, lazy R1 on D and lazy path-length regularisation on G (StyleGAN2);
adversarial codes use style mixing; the shots are flipped at random; an EMA of
G_t (``g_ema``) is what is evaluated and saved. A method adds its own terms by
overriding ``g_extra`` / ``d_extra``; consistency terms (CDC, DCL, RSSA) draw
their own batch of codes (``consistency_codes``), as the public code does.

Optionally the discriminator follows the CDC setup (Ojha et al.; used by DCL
and RSSA): z is drawn from a small "anchor" region around fixed codes every
``anchor_every``-th step and judged by the image-level D; all other steps draw
z ~ N(0, I) and are judged by a patch-level D on an intermediate D block.
"""
from __future__ import annotations

import copy
import random
from dataclasses import dataclass
from typing import Callable

import torch

from raygan.config import knob
from raygan.errors import UserError
from raygan.losses.adversarial import d_nonsaturating, g_nonsaturating, path_length_penalty, r1_penalty
from raygan.methods.base import FewShotData, Method, load_optimizer
from raygan.models.accel import full_precision, resolve
from raygan.models.ema import update_ema
from raygan.models.patch_disc import PatchHead
from raygan.models.stylegan2 import use_fused_modconv
from raygan.registry import method_named_by
from raygan.sync import no_sync


@dataclass
class CDCSetup:
    """Knobs of the CDC discriminator setup (anchor region + patch-level D) and of
    the consistency terms' own batch."""
    patch_d: bool = knob(True, help="image-level D on anchor steps, patch-level D elsewhere")
    anchor_every: int = knob(4, lo=1, help="every k-th step samples z near an anchor")
    n_anchors: int = knob(10, lo=1)
    subspace_std: float = knob(0.1, lo=0.0, lo_open=True)
    patch_block: int = knob(-2, help="index of the D block whose features the patch head judges")
    consistency_batch: int = knob(4, lo=2, help="codes z ~ N(0, I) of the consistency terms' own batch "
                                                "(CDC's feat_const_batch)")


def is_noise_strength(name: str) -> bool:
    """The per-layer noise-injection strengths of a StyleGAN2 generator (``*.noise.weight``)."""
    return name.endswith("noise.weight")


class FewShotAdapter(Method):
    """Builds the nets and optimisers and runs one adaptation step (plain PyTorch)."""

    def __init__(self, cfg, t: dict, data: FewShotData, device="cpu", grad_sync: Callable = no_sync, seed: int = 0):
        source, shots, train = data.source, data.shots, t["train"]
        self.cfg, self.train, self.device = cfg, train, torch.device(device)
        self.accel = accel = resolve(train, device, train.modconv)
        self.source = source
        self.name = method_named_by(type(self).__module__)  # in the state: `raygan eval` samples as it does
        self.shots_name = data.shots_name

        def on_device(net):
            return accel.net(use_fused_modconv(net, accel.fused_modconv).to(device))

        self.g_source = on_device(source.generator()).eval().requires_grad_(False)
        self.g = on_device(source.generator()).train()
        self.d = on_device(source.discriminator()).train()
        # What the adversarial passes call (compiled with train.compile; same parameters). R1 and
        # path length call self.d / self.g: they need double backward, which compiled graphs lack.
        self.g_fast, self.d_fast = accel.fast(self.g), accel.fast(self.d)
        # With ema_decay 0 the EMA is G_t itself (no copy, nothing to update).
        self.g_ema = (copy.deepcopy(self.g).eval().requires_grad_(False) if train.ema_decay > 0 else self.g)
        self.latent_avg = source.latent_avg
        self.shots = accel.images(shots.to(device))
        self.grad_sync = grad_sync
        self.rng = random.Random(seed)
        self.torch_rng = torch.Generator().manual_seed(seed)
        self.patch = None
        if isinstance(cfg, CDCSetup) and cfg.patch_d:
            ch = self.d.block_channels()[cfg.patch_block]
            self.patch = accel.net(PatchHead(ch).to(device))
            self.anchors = torch.randn(cfg.n_anchors, self.g.style_dim, generator=self.torch_rng).to(device)
        self.g_trainable, self.d_trainable = self.g_params(), self.d_params()
        betas = (train.beta1, train.beta2)
        # Lazy-regularisation correction of lr and betas, as in StyleGAN2.
        g_ratio = train.pl_every / (train.pl_every + 1) if train.pl_weight > 0 else 1.0
        d_ratio = train.r1_every / (train.r1_every + 1) if train.r1 > 0 else 1.0
        self.g_optim = torch.optim.Adam(self.g_trainable, lr=train.lr * g_ratio,
                                        betas=tuple(b ** g_ratio for b in betas))
        self.d_optim = torch.optim.Adam(self.d_trainable, lr=train.lr * d_ratio,
                                        betas=tuple(b ** d_ratio for b in betas))
        self.mean_path = torch.zeros((), device=device)
        self.step_count = 0

    # -- hooks a method may override -------------------------------------------------
    @staticmethod
    def check(cfg, source, where: str) -> None:
        """Before any trial, in the driver: the method's knobs against the source model
        (e.g. one α^l per W+ layer); a mismatch is a UserError naming ``where``."""

    @staticmethod
    def prepare(cfg, source, shots, progress=print) -> None:
        """Before any trial, in the driver: what every trial of the method shares, built once
        (e.g. RSSA's inversion of the shots)."""

    def g_params(self) -> list:
        """G_t's parameters that adaptation updates: all, but the noise strengths only with
        ``train.train_noise_strengths`` (the embedded source's are ~0; trained, Adam moves
        them by ~lr a step and they turn into per-pixel speckle)."""
        return [p for name, p in self.g.named_parameters()
                if self.train.train_noise_strengths or not is_noise_strength(name)]

    def d_params(self) -> list:
        """D's (and the patch head's) parameters that adaptation updates."""
        return list(self.d.parameters()) + (list(self.patch.parameters()) if self.patch is not None else [])

    def feature_layers(self, chosen: list[int], first: int = 1) -> list[int]:
        """Indices of G's features a loss uses: ``chosen``, or all from ``first`` on
        (by default without the 4x4 ``conv1``)."""
        n = 1 + len(self.g.convs)
        layers = chosen or list(range(first, n))
        if max(layers) >= n:
            raise UserError("method", f"g_layers {chosen} out of range: G has {n} feature layers")
        return layers

    def generate(self, g, z, noise, **kwargs):
        """G(z) for G_s or G_t; ``z`` is one batch of codes or a list of two (style
        mixing). A method may change how codes become styles (RSSA)."""
        if isinstance(z, list) and len(z) == 2:  # the mixing layer from our seeded RNG, not `random`'s
            kwargs.setdefault("inject_index", self.rng.randint(1, g.n_latent - 1))
        return g(z if isinstance(z, list) else [z], noise=noise, **kwargs)

    def latent_map(self) -> Callable | None:
        """How evaluation turns z into G's input: None (G's own mapping), or a function
        z -> W+ styles that ``state_dict`` also saves (RSSA's compression)."""
        return None

    def g_extra(self, step) -> tuple[torch.Tensor, dict]:
        """Extra generator terms (on their own batch of codes: ``consistency_codes``)."""
        return torch.zeros((), device=self.device), {}

    def d_extra(self, step) -> tuple[torch.Tensor, dict]:
        return torch.zeros((), device=self.device), {}

    # -- sampling ----------------------------------------------------------------------
    def anchor_step(self, step: int) -> bool:
        return self.patch is not None and step % self.cfg.anchor_every == 0

    def sample_z(self, n: int, step: int) -> torch.Tensor:
        if self.anchor_step(step):
            idx = torch.randint(len(self.anchors), (n,), generator=self.torch_rng)
            jitter = torch.randn(n, self.g.style_dim, generator=self.torch_rng) * self.cfg.subspace_std
            return self.anchors[idx] + jitter.to(self.device)
        return torch.randn(n, self.g.style_dim, generator=self.torch_rng).to(self.device)

    def adversarial_codes(self, n: int, step: int):
        """The codes of an adversarial batch: anchor codes on anchor steps; otherwise
        z ~ N(0, I), as two codes mixed at a random layer with probability
        ``train.mixing`` (StyleGAN2's style mixing, 0.9 in the public code)."""
        if not self.anchor_step(step) and self.rng.random() < self.train.mixing:
            return [self.sample_z(n, step), self.sample_z(n, step)]
        return self.sample_z(n, step)

    def consistency_codes(self, n: int):
        """(z, noise) of the consistency terms' own batch, z ~ N(0, I)."""
        return torch.randn(n, self.g.style_dim, generator=self.torch_rng).to(self.device), self.sample_noise(n)

    def sample_noise(self, n: int) -> list[torch.Tensor]:
        """Per-layer noise shared by G_s and G_t so their outputs correspond."""
        return [torch.randn(n, 1, b.shape[2], b.shape[3], generator=self.torch_rng).to(self.device)
                for b in self.g.make_noise()]

    def real_batch(self, n: int) -> torch.Tensor:
        """n shots drawn with replacement, each flipped left-right with probability 1/2
        when ``train.flip`` (the public code's augmentation)."""
        idx = torch.randint(len(self.shots), (n,), generator=self.torch_rng)
        real = self.shots[idx.to(self.shots.device)]
        if self.train.flip:
            flip = (torch.rand(n, generator=self.torch_rng) < 0.5).to(real.device)
            real = torch.where(flip[:, None, None, None], real.flip(3), real)
        return self.accel.images(real)

    def discriminate(self, images: torch.Tensor, step: int):
        """(logits, D feats): image-level, or patch-level under the CDC setup."""
        logits, feats = self.d_fast(images, return_feats=True)
        if self.patch is not None and not self.anchor_step(step):
            logits = self.patch(feats[self.cfg.patch_block])
        return logits, feats

    # -- one adaptation step -----------------------------------------------------------
    def step(self) -> dict:
        """One D and one G update; the logs are detached 0-d tensors on the device (reading
        them is a host sync: the loop does at evaluations). The forward passes run under
        ``train.precision``'s autocast, R1 and path length in fp32."""
        step, b, logs = self.step_count, self.train.batch_size, {}
        logs.update(self._d_step(step, b))
        logs.update(self._g_step(step, b))
        if self.g_ema is not self.g:
            update_ema(self.g_ema, self.g, self.train.ema_decay)
        self.step_count += 1
        return logs

    def _train_only(self, params) -> None:
        for net in (self.g, self.d, self.patch):
            if net is not None:
                net.requires_grad_(False)
        for p in params:
            p.requires_grad_(True)

    def _d_step(self, step, b) -> dict:
        self._train_only(self.d_trainable)
        with self.accel.autocast():
            with torch.no_grad():
                fake, _ = self.generate(self.g_fast, self.adversarial_codes(b, step), self.sample_noise(b))
            real = self.real_batch(b)
            fake_d, real_d = self.discriminate(fake, step), self.discriminate(real, step)
            adv = d_nonsaturating(real_d[0].float(), fake_d[0].float())
            extra, logs = self.d_extra(step)
            loss = adv + extra
        if self.train.r1 > 0 and step % self.train.r1_every == 0:
            r1 = self.r1(real)
            loss = loss + self.train.r1 / 2 * r1 * self.train.r1_every
            logs["loss/r1"] = r1.detach()
        self.d_optim.zero_grad(set_to_none=True)
        loss.backward()
        self.grad_sync(self.d_trainable)
        self.d_optim.step()
        return {"loss/d_adv": adv.detach(), **logs}

    def r1(self, real: torch.Tensor) -> torch.Tensor:
        """R1 on the real batch, in fp32 and eager (self.d: double backward)."""
        with full_precision(self.device.type):
            real = real.detach().float().requires_grad_(True)
            return r1_penalty(self.d(real), real)

    def _g_step(self, step, b) -> dict:
        self._train_only(self.g_trainable)
        with self.accel.autocast():
            fake, _ = self.generate(self.g_fast, self.adversarial_codes(b, step), self.sample_noise(b))
            adv = g_nonsaturating(self.discriminate(fake, step)[0].float())
            extra, logs = self.g_extra(step)
            loss = adv + extra
        if self.train.pl_weight > 0 and step % self.train.pl_every == 0:
            pl, logs["loss/path_length"] = self.path_length(self.sample_z(max(1, b // 2), step))
            loss = loss + self.train.pl_weight * pl * self.train.pl_every
        self.g_optim.zero_grad(set_to_none=True)
        loss.backward()
        self.grad_sync(self.g_trainable)
        self.g_optim.step()
        return {"loss/g_adv": adv.detach(), "loss/g_total": loss.detach(), **logs}

    def path_length(self, z) -> tuple[torch.Tensor, torch.Tensor]:
        """(path-length penalty, mean path length) on codes ``z``, in fp32 and eager (double backward)."""
        with full_precision(self.device.type):
            img, latents = self.path_length_batch(z)
            pl, self.mean_path, length = path_length_penalty(img.float(), latents, self.mean_path)
        return pl, length

    def path_length_batch(self, z):
        """(G_t(z), the W+ latents it was rendered from) for the path-length regulariser."""
        return self.g([z], return_latents=True)

    # -- checkpoints -------------------------------------------------------------------
    def state_dict(self) -> dict:
        state = {"g": self.g.state_dict(), "g_ema": self.g_ema.state_dict(), "d": self.d.state_dict(),
                 "g_optim": self.g_optim.state_dict(), "d_optim": self.d_optim.state_dict(),
                 "latent_avg": self.latent_avg, "step": self.step_count, "mean_path": self.mean_path,
                 "rng": self.torch_rng.get_state(), "g_config": self.g.config, "d_config": self.d.config,
                 "method": self.name}
        if self.patch is not None:
            state["patch_head"] = self.patch.state_dict()
            state["anchors"] = self.anchors
        return state

    def load_state_dict(self, state: dict) -> None:
        self.g.load_state_dict(state["g"])
        if self.g_ema is not self.g:
            self.g_ema.load_state_dict(state["g_ema"])
        self.d.load_state_dict(state["d"])
        load_optimizer(self.g_optim, state["g_optim"])
        load_optimizer(self.d_optim, state["d_optim"])
        if self.patch is not None:
            self.patch.load_state_dict(state["patch_head"])
            self.anchors = state["anchors"].to(self.device)
        self.step_count, self.mean_path = state["step"], state["mean_path"].to(self.device)
        self.torch_rng.set_state(state["rng"])
