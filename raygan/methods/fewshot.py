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
from typing import Callable, Iterable

import torch

from raygan.config import knob
from raygan.errors import UserError
from raygan.losses.adversarial import d_nonsaturating, g_nonsaturating, path_length_penalty, r1_penalty
from raygan.models.patch_disc import PatchHead


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


def no_sync(params: Iterable[torch.nn.Parameter]) -> None:
    """Single-process default; data-parallel runs pass an all-reduce here."""


@torch.no_grad()
def update_ema(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * model, parameter by parameter (buffers copied)."""
    for pe, p in zip(ema.parameters(), model.parameters()):
        pe.lerp_(p, 1.0 - decay)
    for be, b in zip(ema.buffers(), model.buffers()):
        be.copy_(b)


def is_noise_strength(name: str) -> bool:
    """The per-layer noise-injection strengths of a StyleGAN2 generator (``*.noise.weight``)."""
    return name.endswith("noise.weight")


class FewShotAdapter:
    """Builds the nets and optimisers and runs one adaptation step (plain PyTorch)."""

    def __init__(self, cfg, train, source, shots: torch.Tensor, device="cpu",
                 grad_sync: Callable = no_sync, seed: int = 0):
        self.cfg, self.train, self.device = cfg, train, torch.device(device)
        self.g_source = source.generator().to(device).eval().requires_grad_(False)
        self.g = source.generator().to(device).train()
        self.d = source.discriminator().to(device).train()
        # With ema_decay 0 the EMA is G_t itself (no copy, nothing to update).
        self.g_ema = (copy.deepcopy(self.g).eval().requires_grad_(False) if train.ema_decay > 0 else self.g)
        self.latent_avg = source.latent_avg
        self.shots = shots.to(device)
        self.grad_sync = grad_sync
        self.rng = random.Random(seed)
        self.torch_rng = torch.Generator().manual_seed(seed)
        self.patch = None
        if getattr(cfg, "patch_d", False):
            ch = self.d.block_channels()[cfg.patch_block]
            self.patch = PatchHead(ch).to(device)
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
        return real

    def discriminate(self, images: torch.Tensor, step: int):
        """(logits, D feats): image-level, or patch-level under the CDC setup."""
        logits, feats = self.d(images, return_feats=True)
        if self.patch is not None and not self.anchor_step(step):
            logits = self.patch(feats[self.cfg.patch_block])
        return logits, feats

    # -- one adaptation step -----------------------------------------------------------
    def step(self) -> dict:
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
        with torch.no_grad():
            fake, _ = self.generate(self.g, self.adversarial_codes(b, step), self.sample_noise(b))
        real = self.real_batch(b)
        fake_d, real_d = self.discriminate(fake, step), self.discriminate(real, step)
        adv = d_nonsaturating(real_d[0], fake_d[0])
        extra, logs = self.d_extra(step)
        loss = adv + extra
        if self.train.r1 > 0 and step % self.train.r1_every == 0:
            real = real.detach().requires_grad_(True)
            r1 = r1_penalty(self.d(real), real)
            loss = loss + self.train.r1 / 2 * r1 * self.train.r1_every
            logs["loss/r1"] = r1.item()
        self.d_optim.zero_grad(set_to_none=True)
        loss.backward()
        self.grad_sync(self.d_trainable)
        self.d_optim.step()
        return {"loss/d_adv": adv.item(), **logs}

    def _g_step(self, step, b) -> dict:
        self._train_only(self.g_trainable)
        fake, _ = self.generate(self.g, self.adversarial_codes(b, step), self.sample_noise(b))
        adv = g_nonsaturating(self.discriminate(fake, step)[0])
        extra, logs = self.g_extra(step)
        loss = adv + extra
        if self.train.pl_weight > 0 and step % self.train.pl_every == 0:
            n = max(1, b // 2)
            img, latents = self.path_length_batch(self.sample_z(n, step))
            pl, self.mean_path, length = path_length_penalty(img, latents, self.mean_path)
            loss = loss + self.train.pl_weight * pl * self.train.pl_every
            logs["loss/path_length"] = length.item()
        self.g_optim.zero_grad(set_to_none=True)
        loss.backward()
        self.grad_sync(self.g_trainable)
        self.g_optim.step()
        return {"loss/g_adv": adv.item(), "loss/g_total": loss.item(), **logs}

    def path_length_batch(self, z):
        """(G_t(z), the W+ latents it was rendered from) for the path-length regulariser."""
        return self.g([z], return_latents=True)

    # -- checkpoints -------------------------------------------------------------------
    def state_dict(self) -> dict:
        state = {"g": self.g.state_dict(), "g_ema": self.g_ema.state_dict(), "d": self.d.state_dict(),
                 "g_optim": self.g_optim.state_dict(), "d_optim": self.d_optim.state_dict(),
                 "latent_avg": self.latent_avg, "step": self.step_count, "mean_path": self.mean_path,
                 "rng": self.torch_rng.get_state(), "g_config": self.g.config, "d_config": self.d.config}
        if self.patch is not None:
            state["patch_head"] = self.patch.state_dict()
            state["anchors"] = self.anchors
        return state

    def load_state_dict(self, state: dict) -> None:
        self.g.load_state_dict(state["g"])
        if self.g_ema is not self.g:
            self.g_ema.load_state_dict(state["g_ema"])
        self.d.load_state_dict(state["d"])
        self.g_optim.load_state_dict(state["g_optim"])
        self.d_optim.load_state_dict(state["d_optim"])
        if self.patch is not None:
            self.patch.load_state_dict(state["patch_head"])
            self.anchors = state["anchors"].to(self.device)
        self.step_count, self.mean_path = state["step"], state["mean_path"].to(self.device)
        self.torch_rng.set_state(state["rng"])


# -- the family's entry points (raygan.loop calls these) -------------------------------

def build(t: dict, device="cpu", grad_sync: Callable = no_sync, seed: int = 0, **_) -> FewShotAdapter:
    """The method of a typed config, with its source model and target shots."""
    from raygan.data.images import target_shots
    from raygan.models.checkpoint import load_source
    from raygan.search_space import method_module

    source = load_source(t["model"].checkpoint)
    shots, shots_name = target_shots(t["data"], source.size)
    method = method_module(t["method_name"]).Method(t["method"], t["train"], source, shots, device=device,
                                                    grad_sync=grad_sync, seed=seed)
    method.source, method.shots_name = source, shots_name
    return method


GRID_SHARED_ROWS = ("source",)  # the rows of a trial's samples.png that every trial shares


def trial_metrics(data, train) -> tuple[str, ...]:
    """What an evaluation computes (``train.metrics``): by default the embedded set on the
    embedded sketches; on a folder target fid (or, without a reference set, fid_shots),
    intra_lpips and scs."""
    from raygan.metrics.evaluate import EMBEDDED_DEFAULT

    if train.metrics:
        return tuple(train.metrics)
    if data.embedded:
        return EMBEDDED_DEFAULT
    return ("fid" if data.reference else "fid_shots", "intra_lpips", "scs")


def reported_names(data, train) -> list[str]:
    """The keys an evaluation reports (scs is reported as scs_<edges>; the embedded default's
    diversity is intra_lpips_vgg when VGG weights are cached, else intra_shapesnet)."""
    from raygan.metrics.diversity import backbone_file

    names = []
    for m in trial_metrics(data, train):
        if m == "scs":
            names.append(f"scs_{train.scs_edges}")
        elif m == "intra":
            names.append("intra_lpips_vgg" if backbone_file("vgg").is_file() else "intra_shapesnet")
        else:
            names.append(m)
    return names


def default_objective(cfg: dict) -> tuple[str, str]:
    """search.metric / mode when the experiment names none: fd_shapesnet on the embedded
    sketches, else FID against the reference set (or against the shots without one)."""
    data = cfg["data"]
    if data["target"] == "sketches":
        return "fd_shapesnet", "min"
    return ("fid" if data["reference"] else "fid_shots"), "min"


def run_options(t: dict, device="cpu"):
    """The raygan.eval.EvalOptions of a trial's published metrics: what `raygan eval` of its
    checkpoint needs to compute the same numbers (same samples, seed, reference and weights)."""
    from raygan.eval import EvalOptions

    data, train = t["data"], t["train"]
    return EvalOptions(metrics=trial_metrics(data, train), samples=train.eval_samples,
                       reference=data.reference or None, source=t["model"].checkpoint, lpips_net=train.lpips_net,
                       scs_edges=train.scs_edges, inception=train.inception_weights or None,
                       lpips_weights=train.lpips_weights or None, hed=train.hed_weights or None, seed=train.seed,
                       device=str(device))


def edge_detector(train):
    """(name, edges) of SCS; HED's weights resolved as every weights file is."""
    from raygan.metrics.scs import make_edge_detector

    if train.scs_edges != "hed":
        return make_edge_detector(train.scs_edges)
    from raygan.metrics import weights

    return make_edge_detector("hed", str(weights.resolve("hed", train.hed_weights or None).path))


class Evaluation:
    """The trial's metrics of G_t (``trial_metrics``); grid: G_s above G_t, same z."""
    grid_name = "source_vs_adapted"

    def __init__(self, t: dict, method: FewShotAdapter, device="cpu"):
        from raygan.metrics.evaluate import Evaluator

        train = t["train"]
        self.evaluator = Evaluator(method.g_source, method.shots, train.eval_samples, seed=train.seed,
                                   device=device, edges=edge_detector(train) if "scs" in trial_metrics(
                                       t["data"], train) else None,
                                   latent_map=method.latent_map(), metrics=trial_metrics(t["data"], train),
                                   run_options=run_options(t, device), source=method.source,
                                   shots_name=method.shots_name)

    @property
    def provenance(self) -> dict:
        """Each reported metric: network, weights sha256, resize, samples, reference."""
        return self.evaluator.provenance

    def metrics(self, method: FewShotAdapter) -> dict:
        """The metrics of G_t's EMA (what is saved as g_ema), sampled as the method samples."""
        return self.evaluator.metrics(method.g_ema)

    def grid(self, method: FewShotAdapter) -> torch.Tensor:
        return self.evaluator.grid(method.g_ema)


make_evaluator = Evaluation


def check_metrics(t: dict, objectives, where: str) -> None:
    """Before any trial: the metrics suit the target, their weights files and folders exist
    (one line naming the missing file), and every objective is a reported metric."""
    from raygan.config import EMBEDDED_METRICS
    from raygan.eval_fewshot import preflight

    data, train = t["data"], t["train"]
    metrics = trial_metrics(data, train)
    if not data.embedded:
        embedded = [m for m in metrics if m in EMBEDDED_METRICS]
        if embedded:
            raise UserError(where, f"train.metrics: {embedded[0]} uses raygan's ShapesNet, which knows only the "
                                   "embedded sketches; a folder target is scored by fid/kid (with data.reference), "
                                   "fid_shots, intra_lpips or scs")
    if not data.embedded and not data.reference and {"fid", "kid"} & set(metrics):
        raise UserError(where, "train.metrics: fid/kid on a folder target need data.reference (a folder of "
                               "held-out target images); without one use fid_shots, intra_lpips or scs")
    names = reported_names(data, train)
    for metric, _ in objectives:
        if metric not in names:
            raise UserError(where, f"search.metric: {metric!r} is not reported by this experiment's trials "
                                   f"(they report {', '.join(names)}; set train.metrics)")
    preflight(metrics, run_options(t))
    if "scs" in metrics:
        edge_detector(train)  # a bad HED file fails here


def pinned_weights(t: dict) -> dict[str, str]:
    """The weights files this driver found, as knobs for the trials (``train.*_weights``): a
    trial then reads the very file that was checked and hashed here, whatever environment its
    Ray worker was started with."""
    from raygan.eval_fewshot import INCEPTION_METRICS
    from raygan.metrics import weights

    metrics, train = set(trial_metrics(t["data"], t["train"])), t["train"]
    wanted = {"inception_weights": ("inception", bool(metrics & set(INCEPTION_METRICS))),
              "lpips_weights": ({"vgg": "vgg16", "alex": "alexnet"}[train.lpips_net], "intra_lpips" in metrics),
              "hed_weights": ("hed", "scs" in metrics and train.scs_edges == "hed")}
    return {f"train.{knob}": str(weights.resolve(name, getattr(train, knob) or None).path.resolve())
            for knob, (name, used) in wanted.items() if used}


def prepare(t: dict, methods: list[str], where: str, progress=print, objectives=()) -> dict[str, str]:
    """Check the metrics and each method's knobs against the source (a module's ``check``)
    and build what its trials share (a module's ``prepare``, the metric caches); methods of
    a grid other than the configured one run with their defaults. Returns the knobs to pin
    in every trial (``pinned_weights``)."""
    from raygan.config import build as build_config
    from raygan.data.images import target_shots
    from raygan.models.checkpoint import load_source
    from raygan.search_space import method_module

    source = load_source(t["model"].checkpoint)
    if not t["data"].embedded:
        from raygan.data.images import check_folder

        check_folder(t["data"].target, 1, "target images")  # every file decoded; too few: target_shots says so
    shots, _ = target_shots(t["data"], source.size)
    check_metrics(t, objectives, where)
    for name in methods:
        module = method_module(name)
        mcfg = t["method"] if name == t["method_name"] else build_config(module.Config, {}, where, "method")
        if hasattr(module, "check"):
            module.check(mcfg, source, where)
        if hasattr(module, "prepare"):
            module.prepare(mcfg, source, shots, progress)
    warm_caches(t, source, shots, progress)
    return pinned_weights(t)


def warm_caches(t: dict, source, shots, progress=print) -> None:
    """What every trial's evaluation would otherwise build first, once, in the driver:
    ShapesNet and its reference statistics, the reference set's Inception features."""
    from raygan.metrics.evaluate import SHAPESNET_METRICS, warm_cache

    metrics = trial_metrics(t["data"], t["train"])
    if set(metrics) & set(SHAPESNET_METRICS):
        warm_cache(source.size)
    if {"fid", "kid"} & set(metrics):
        from raygan.eval_fewshot import Run

        progress("inception features of the reference set (cached)")
        Run(run_options(t), source, images=None, z=None).reference_features()
