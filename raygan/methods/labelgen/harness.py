"""The label-to-image harness: the semi-paired method and its baselines (OASIS,
USIS, TCR) share the data, the networks and the step skeleton.

Data: a small paired set P = {(x_k, t_k)} (sampled with the rare-class
sampler), unpaired images X_u and unpaired label maps T_u (not aligned),
split from the embedded procedural scenes by the supervision ratio r.
Networks (built when a method needs them): G a SPADE-family generator
(wavelet by default), D_c the OASIS U-Net with N+1 outputs, D_u an
unconditional discriminator (wavelet by default), S a separate segmenter.
One ``step`` updates the discriminators on ``d_terms`` and then G on
``g_terms``; each method file states its terms. An EMA of G (``g_ema``, OASIS's) is what
is evaluated and saved; its BatchNorm statistics are recomputed before it generates.
"""
from __future__ import annotations

import abc
import copy
from typing import Callable

import torch
import torch.nn.functional as F

from raygan.methods.base import Method, load_optimizer
from raygan.losses.segmentation import balance_weights, labelmix_images, labelmix_loss, labelmix_mask
from raygan.methods.labelgen.sections import TrainConfig
from raygan.models.accel import resolve, to_device
from raygan.models.ema import refresh_batchnorm, update_ema, warmup_decay
from raygan.sync import no_sync


BN_REFRESH_BATCHES = 50  # OASIS's forward passes of the EMA generator before it evaluates


def one_hot(labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """int64 [B, H, W] -> float [B, N, H, W]."""
    return F.one_hot(labels, n_classes).permute(0, 3, 1, 2).float()


def vgg_loss(train: TrainConfig, device="cpu"):
    """The VGG19 perceptual loss, or None (and a line saying so) when its weights are absent."""
    from raygan.models.vgg import default_vgg19_file, load_vgg_perceptual

    vgg = load_vgg_perceptual(train.vgg_weights or None, device=device)
    if vgg is not None:
        return vgg.eval().requires_grad_(False)
    print(f"raygan: the VGG loss is off: {default_vgg19_file()} not found "
          "(put torchvision's vgg19 weights there or set train.vgg_weights)", flush=True)
    return None


# -- the harness --------------------------------------------------------------------------------

class LabelToImage(Method):
    """Builds what a method needs and runs one step (plain PyTorch).

    Class attributes say what a method uses: ``paired`` (P and D_c),
    ``unpaired_images`` (X_u and D_u), ``unpaired_labels`` (T_u), ``segmenter``
    (a separate S trained by the method). ``data`` is the family's batch source
    (raygan.families.labelgen: SceneData or PackedData): ``n_classes``, ``size`` and the
    paired / unpaired batches.
    """
    paired = True
    unpaired_images = False
    unpaired_labels = False
    segmenter = False

    def __init__(self, cfg, t: dict, data, device="cpu", grad_sync: Callable = no_sync,
                 seed: int = 0):
        from raygan.models.spade import SPADEGenerator
        from raygan.models.uncond_disc import UncondDiscriminator
        from raygan.models.unet_disc import UNetDiscriminator

        self.cfg, self.train, self.model = cfg, t["train"], t["model"]
        self.device, self.grad_sync = torch.device(device), grad_sync
        self.accel = resolve(self.train, device)
        self.data, self.n = data, data.n_classes
        self.torch_rng = torch.Generator().manual_seed(seed)
        size, m = data.size, self.model
        self.g = SPADEGenerator(self.n, size, base=m.g_base, z_dim=m.z_dim,
                                wavelet=m.generator == "wavelet").to(device)
        # With ema_decay 0 the EMA is G itself (no copy, nothing to update or refresh).
        self.g_ema = (copy.deepcopy(self.g).requires_grad_(False) if self.train.ema_decay > 0 else self.g)
        self.ema_refreshed_at = None  # the step whose BatchNorm statistics g_ema holds
        self.d_c = UNetDiscriminator(self.n, size, base=m.d_base).to(device) if self.paired else None
        self.d_u = (UncondDiscriminator(size, base=m.d_base, wavelet=m.uncond_d == "wavelet").to(device)
                    if self.unpaired_images else None)
        self.s = UNetDiscriminator(self.n, size, base=m.d_base).to(device) if self.segmenter else None
        betas = (self.train.beta1, self.train.beta2)
        self.d_nets = [net for net in (self.d_c, self.d_u, self.s) if net is not None]
        for net in (self.g, *self.d_nets):
            self.accel.net(net)
            if self.accel.compile:
                # In place: every method's call sites run compiled and the state_dict keys stay
                # (no double backward here, unlike the few-shot regularisers). g_ema stays eager.
                net.compile()
        self.g_optim = torch.optim.Adam(self.g.parameters(), lr=self.train.lr_g, betas=betas)
        self.d_optim = torch.optim.Adam([p for net in self.d_nets for p in net.parameters()],
                                        lr=self.train.lr_d, betas=betas)
        self.step_count = 0

    # -- batches ------------------------------------------------------------------------------
    def paired_indices(self, step: int, batch: int) -> torch.Tensor:
        return torch.randint(len(self.data.paired_labels), (batch,), generator=self.torch_rng)

    def batch(self, step: int) -> dict:
        """One step's batches on the device (from host memory or Ray Data: pinned, non-blocking on
        CUDA), in the networks' memory format."""
        b, data = self.train.batch_size, self.data
        out = {}
        if self.paired:
            i = self.paired_indices(step, b)
            out["x_p"], out["t_p"] = data.paired_images[i], one_hot(data.paired_labels[i], self.n)
        if self.unpaired_images:
            out["x_u"] = data.unpaired_image_batch(b, self.torch_rng)
        if self.unpaired_labels:
            out["t_u"] = one_hot(data.unpaired_label_batch(b, self.torch_rng), self.n)
        return {k: self.accel.images(to_device(x, self.device)) for k, x in out.items()}

    def class_weights(self, onehot: torch.Tensor) -> torch.Tensor:
        """D_c's class-balancing weights [N] for a batch of label maps (``train.class_balance``)."""
        return balance_weights(onehot, self.train.class_balance)

    def labelmix(self, x: torch.Tensor, fake: torch.Tensor, onehot: torch.Tensor,
                 real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        """OASIS's LabelMix term L_LM of D_c for a paired batch (losses/segmentation.py), its
        class-to-side mask drawn from the training RNG."""
        mask = labelmix_mask(onehot, self.torch_rng)
        return labelmix_loss(mask, self.d_c(labelmix_images(mask, x, fake)), real_logits, fake_logits)

    def z(self, batch: int) -> torch.Tensor | None:
        if not self.model.z_dim:
            return None
        return torch.randn(batch, self.model.z_dim, generator=self.torch_rng).to(self.device)

    # -- what a method adds ------------------------------------------------------------------------
    @abc.abstractmethod
    def d_terms(self, batch: dict, fakes: dict) -> tuple[torch.Tensor, dict]:
        """The discriminators' loss on a batch and G's images for it, and its logged terms."""

    @abc.abstractmethod
    def g_terms(self, batch: dict) -> tuple[torch.Tensor, dict]:
        """G's loss on a batch, and its logged terms."""

    def fakes(self, batch: dict) -> dict:
        """G's images for the batch's label maps, for the D update (no gradient to G)."""
        with torch.no_grad():
            out = {}
            for key in ("t_p", "t_u"):
                if key in batch:
                    out[key] = self.g(batch[key], self.z(len(batch[key])))
            return out

    # -- one step --------------------------------------------------------------------------
    def step(self) -> dict:
        """One D and one G update under ``train.precision``'s autocast; the logs are detached 0-d
        tensors on the device (the loop reads them at evaluations: no host sync per step)."""
        batch = self.batch(self.step_count)
        self.g.requires_grad_(False)
        for net in self.d_nets:
            net.requires_grad_(True)
        with self.accel.autocast():
            d_loss, d_logs = self.d_terms(batch, self.fakes(batch))
        self.d_optim.zero_grad(set_to_none=True)
        d_loss.backward()
        self.grad_sync([p for net in self.d_nets for p in net.parameters()])
        self.d_optim.step()
        self.d_optim.zero_grad(set_to_none=True)

        self.g.requires_grad_(True)
        for net in self.d_nets:
            net.requires_grad_(False)  # G's terms never train a discriminator (see semipaired's ablation B)
        self.g_optim.zero_grad(set_to_none=True)
        with self.accel.autocast():
            g_loss, g_logs = self.g_terms(batch)
        g_loss.backward()
        self.grad_sync(list(self.g.parameters()))
        self.g_optim.step()
        if self.g_ema is not self.g:
            decay = self.train.ema_decay
            update_ema(self.g_ema, self.g, warmup_decay(decay, self.step_count) if self.train.ema_warmup else decay)
        self.after_g_step()
        self.step_count += 1
        return {**d_logs, **g_logs, "loss/g_total": g_loss.detach()}

    def after_g_step(self) -> None:
        """Hook for updates that follow G's (ablation B's D_c update)."""

    def generate(self, labels_onehot: torch.Tensor) -> torch.Tensor:
        """g_ema's images for label maps, in eval mode (BatchNorm running statistics). z comes
        from the global RNG, which evaluators seed, not from the training RNG: every evaluation
        sees the same z, and evaluating does not change what training draws next."""
        g = self.g_ema
        if g is not self.g and self.ema_refreshed_at != self.step_count:
            refresh_batchnorm(g, self.refresh_label_maps(), seed=self.step_count)
            self.ema_refreshed_at = self.step_count
        was = g.training
        g.eval()
        z = torch.randn(len(labels_onehot), self.model.z_dim).to(self.device) if self.model.z_dim else None
        with torch.no_grad():
            out = g(labels_onehot.to(self.device), z).cpu()
        g.train(was)
        return out

    def refresh_label_maps(self) -> list[torch.Tensor]:
        """The label maps g_ema's BatchNorm statistics are recomputed from: batches of the
        training maps the method sees (the paired ones, else the unpaired maps held in memory;
        a streamed unpaired set is not read for this), drawn by a fixed generator."""
        data = self.data
        maps = data.paired_labels if self.paired else data.unpaired_labels
        if maps is None or not len(maps):
            return []
        rng = torch.Generator().manual_seed(0)
        b = self.train.batch_size
        return [one_hot(maps[torch.randint(len(maps), (b,), generator=rng)], self.n).to(self.device)
                for _ in range(BN_REFRESH_BATCHES)]

    # -- checkpoints -----------------------------------------------------------------------------
    def nets(self) -> dict:
        return {"g": self.g, "g_ema": self.g_ema, "d_c": self.d_c, "d_u": self.d_u, "s": self.s}

    def state_dict(self) -> dict:
        state = {k: net.state_dict() for k, net in self.nets().items() if net is not None}
        state.update(g_optim=self.g_optim.state_dict(), d_optim=self.d_optim.state_dict(),
                     step=self.step_count, rng=self.torch_rng.get_state(), g_config=self.g.config)
        return state

    def load_state_dict(self, state: dict) -> None:
        for k, net in self.nets().items():
            if net is not None:
                # Checkpoints written before the EMA generator have no g_ema: it starts as G.
                net.load_state_dict(state["g" if k == "g_ema" and k not in state else k])
        load_optimizer(self.g_optim, state["g_optim"])
        load_optimizer(self.d_optim, state["d_optim"])
        self.step_count = state["step"]
        self.torch_rng.set_state(state["rng"])
