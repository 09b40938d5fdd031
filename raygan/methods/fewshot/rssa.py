"""RSSA: relaxed spatial structural alignment (Xiao et al., Sec. 3).

- Spatial structural consistency, L_{Gs↔Gt} = α L_scc + β L_dcc (Eq. 7): the
  self-correlation of each G_t feature map must match G_s's for the same z
  (Eq. 3–4), and how features correlate between an anchor z and its neighbours
  in U(z, r) within a δ×δ window must match too (Eq. 5–6).
- Latent-space compression (Eq. 8): the target shots are inverted into G_s's
  W+; each sampled style w^l is pulled towards the span of the inverted codes
  of its layer by α^l, and G_s and G_t both render the compressed ŵ.
- D as in CDC (image level near anchors, patch level elsewhere), with R1 and
  path-length regularisation (the harness).

Two presets: ``paper`` (α = β = 1, L_dcc every step, neighbours uniform in the
ball U(z, r)) and ``code``, the public code's hard-coded values (α = 0.8,
β = 0.4, L_dcc every 6th step, neighbours z_n = 0.85 z + 0.15 n). Any of α, β,
dcc_every, neighbours set explicitly overrides the preset. Both use the public
code's per-layer α^l profile for faces (14 W+ layers), resampled by depth to
the generator's number of style layers unless ``compression_alpha`` is given.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F

from raygan.config import knob
from raygan.errors import UserError
from raygan.losses.structural import dcc_loss, scc_loss
from raygan.methods.fewshot.adapter import CDCSetup, FewShotAdapter

PRESETS = {
    "paper": dict(alpha=1.0, beta=1.0, dcc_every=1, neighbours="ball"),
    "code": dict(alpha=0.8, beta=0.4, dcc_every=6, neighbours="mix"),
}
FACES_ALPHA = [0.0] * 3 + [0.05] * 4 + [0.45] * 2 + [0.65] * 2 + [0.85] * 3  # public code, 14 W+ layers


@dataclass
class Config(CDCSetup):
    preset: str = knob("paper", choices=list(PRESETS), help="paper's or public code's α, β, dcc_every, neighbours")
    alpha: Optional[float] = knob(None, lo=0.0, help="weight of L_scc (default: preset)")
    beta: Optional[float] = knob(None, lo=0.0, help="weight of L_dcc (default: preset)")
    dcc_every: Optional[int] = knob(None, lo=1, help="L_dcc every k-th step (default: preset)")
    neighbours: Optional[str] = knob(None, choices=["ball", "mix"],
                                     help="ball: uniform in U(z, r); mix: (1-m) z + m n (default: preset)")
    radius: float = knob(2.0, lo=0.0, lo_open=True, help="r of U(z, r) (choice: the paper gives none)")
    mix: float = knob(0.15, lo=0.0, lo_open=True, hi=1.0, help="m of the code's neighbours")
    n_neighbours: int = knob(4, lo=1, help="N neighbours per anchor (a batch of N+1)")
    window: int = knob(3, lo=1, help="δ, the odd width of the window Q of Eq. 5")
    scc_patch: int = knob(16, lo=1, help="tile side for local self-correlation of large maps")
    max_side: int = knob(16, lo=1, help="maps wider than this are average-pooled first")
    pool: int = knob(2, lo=2, help="pooling factor for large maps")
    g_layers: list[int] = knob([], help="generator layers aligned (indices of G's features); [] = all but the first")
    compression: bool = knob(True, help="latent-space compression (Eq. 8)")
    compression_alpha: list[float] = knob([], lo=0.0, hi=1.0, help="α^l per W+ layer; [] = faces profile")
    invert_steps: int = knob(300, lo=1, help="optimisation steps of the W+ inversion of the shots")
    invert_lr: float = knob(0.01, lo=0.0, lo_open=True)
    scc_distance: str = knob("smooth_l1", choices=["smooth_l1", "l1"],
                             help="L_scc's elementwise distance: the paper's smooth L1 or the public code's L1")

    def validate(self, where, section):
        if self.window % 2 == 0:
            raise UserError(where, f"{section}.window: expected an odd width, got {self.window}")
        if any(i < 0 for i in self.g_layers):
            raise UserError(where, f"{section}.g_layers: expected indices >= 0")

    def setting(self, name: str):
        """A preset-governed knob: its explicit value, else the preset's."""
        value = getattr(self, name)
        return PRESETS[self.preset][name] if value is None else value


def layer_alphas(cfg: Config, n_latent: int) -> list[float]:
    """α^l for each of the generator's W+ layers: explicit, or the faces profile by depth."""
    if cfg.compression_alpha:
        return list(cfg.compression_alpha)
    last = len(FACES_ALPHA) - 1
    return [FACES_ALPHA[round(i * last / max(1, n_latent - 1))] for i in range(n_latent)]


def check(cfg: Config, source, where: str) -> None:
    """α^l must give one value per style layer of this source generator."""
    n = source.generator().n_latent
    if cfg.compression_alpha and len(cfg.compression_alpha) != n:
        raise UserError(where, f"method.compression_alpha: expected {n} values (one per W+ layer of the "
                               f"{source.size}px source generator), got {len(cfg.compression_alpha)}")


def compress(w: torch.Tensor, codes: torch.Tensor, alphas: torch.Tensor) -> torch.Tensor:
    """Eq. 8, every layer at once. w [B, L, D] sampled styles, codes [n, L, D] the
    inverted shots, alphas [L]. w̄^l = A^l (A^lᵀA^l)^{-1} A^lᵀ w^l by least squares
    (A^l = codes[:, l]ᵀ); ŵ^l = α^l w̄^l ‖w^l‖/‖w̄^l‖ + (1 − α^l) w^l."""
    a = codes.permute(1, 2, 0)  # [L, D, n]: the columns of A^l
    coef = torch.linalg.lstsq(a, w.permute(1, 2, 0)).solution  # [L, n, B]
    w_bar = (a @ coef).permute(2, 0, 1)  # [B, L, D]
    scale = w.norm(dim=-1, keepdim=True) / w_bar.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    alphas = alphas.view(1, -1, 1)
    return alphas * w_bar * scale + (1 - alphas) * w


class CompressedStyles:
    """z -> ŵ: the generator's mapping, then Eq. 8's compression towards the inverted
    shots. RSSA trains on these styles and samples with them (the public generate.py);
    checkpoints keep ``codes`` and ``alphas`` so that `raygan eval` samples the same way."""

    def __init__(self, mapping, codes: torch.Tensor, alphas: torch.Tensor):
        self.mapping, self.codes, self.alphas = mapping, codes, alphas

    @torch.no_grad()
    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        w = self.mapping(z)[:, None].repeat(1, len(self.alphas), 1)
        return compress(w, self.codes.to(w.device), self.alphas.to(w.device))


def invert(g, shots: torch.Tensor, steps: int, lr: float, latent_avg=None, progress=print) -> torch.Tensor:
    """W+ codes [n, L, D] that make G_s reproduce the shots (Image2StyleGAN-style:
    Adam on w+ from the mean style, MSE + LPIPS-VGG when its weights are present)."""
    from raygan.models.lpips import backbone_file, build_lpips

    perceptual = build_lpips("vgg").eval() if backbone_file("vgg").is_file() else None
    if perceptual is not None:
        perceptual.requires_grad_(False)
    start = latent_avg if latent_avg is not None else g.mean_latent(4096)
    w = start.detach().reshape(1, 1, -1).repeat(len(shots), g.n_latent, 1).clone().requires_grad_(True)
    optim = torch.optim.Adam([w], lr=lr)
    for i in range(steps):
        img, _ = g([w], input_is_latent=True, randomize_noise=False)
        loss = F.mse_loss(img, shots)
        if perceptual is not None:
            up = lambda x: F.interpolate(x, size=max(64, x.shape[-1]), mode="bilinear", align_corners=False)
            loss = loss + perceptual(up(img), up(shots)).mean()
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        if (i + 1) % 100 == 0 or i + 1 == steps:
            progress(f"rssa: inverting {len(shots)} shots into W+: step {i + 1}/{steps}, loss {loss.item():.4f}")
    return w.detach()


def cached_inversion(g, shots, cfg: Config, latent_avg=None, progress=print) -> torch.Tensor:
    """``invert`` once per (source weights, shots, settings); later trials load the file."""
    from raygan.cache import cache_dir, fingerprint
    from raygan.cache import save_atomic

    key = fingerprint([*g.state_dict().values(), shots], 20, salt=f"{cfg.invert_steps}:{cfg.invert_lr}")
    path = cache_dir() / "inversions" / f"{key}.pt"
    if path.is_file():
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception:
            pass  # a corrupt cache entry is recomputed
    with torch.enable_grad():
        codes = invert(g, shots.cpu(), cfg.invert_steps, cfg.invert_lr, latent_avg, progress)
    save_atomic(codes, path)
    return codes


def prepare(cfg: Config, source, shots, progress=print) -> None:
    """Before trials start: invert the shots once, in the driver."""
    if cfg.compression:
        g = source.generator().requires_grad_(False)
        cached_inversion(g, shots, cfg, source.latent_avg, progress)


class Method(FewShotAdapter):
    check = staticmethod(check)
    prepare = staticmethod(prepare)

    def __init__(self, cfg: Config, *args, **kwargs):
        super().__init__(cfg, *args, **kwargs)
        self.g_layers = self.feature_layers(cfg.g_layers)
        self.codes = self.alphas = None
        if cfg.compression:
            self.codes = cached_inversion(self.g_source, self.shots, cfg, self.latent_avg).to(self.device)
            self.alphas = torch.tensor(layer_alphas(cfg, self.g.n_latent), device=self.device)

    def g_params(self) -> list:
        """With compression, G_t renders styles from G_s's mapping, so its own mapping is
        not trained (it stays G_s's, which is how a checkpoint's g_ema samples ŵ)."""
        params = super().g_params()
        if not self.cfg.compression:
            return params
        mapping = {id(p) for p in self.g.style.parameters()}
        return [p for p in params if id(p) not in mapping]

    def compressed(self, z) -> torch.Tensor:
        """ŵ [B, L, D] of one batch of codes, or of two mixed at a random layer."""
        zs = z if isinstance(z, list) else [z]
        with torch.no_grad():
            ws = [self.g_source.style(c)[:, None].repeat(1, self.g.n_latent, 1) for c in zs]
            if len(ws) == 2:
                k = self.rng.randint(1, self.g.n_latent - 1)
                ws = [torch.cat([ws[0][:, :k], ws[1][:, k:]], 1)]
            return compress(ws[0], self.codes, self.alphas)

    def generate(self, g, z, noise, **kwargs):
        """Both generators render the compressed styles ŵ of G_s's mapping of z."""
        if self.codes is None:
            return super().generate(g, z, noise, **kwargs)
        return g([self.compressed(z)], input_is_latent=True, noise=noise, **kwargs)

    def path_length_batch(self, z):
        """Path length with respect to the compressed styles G_t is rendered from."""
        if self.codes is None:
            return super().path_length_batch(z)
        w = self.compressed(z).requires_grad_(True)
        return self.g([w], input_is_latent=True, return_latents=True)

    @classmethod
    def sampling_map(cls, state: dict, g) -> CompressedStyles | None:
        """A saved RSSA generator is sampled through the compression its state kept."""
        saved = state.get("latent_compression")
        return CompressedStyles(g.style, saved["codes"], saved["alphas"]) if saved else None

    def latent_map(self):
        return CompressedStyles(self.g_source.style, self.codes, self.alphas) if self.codes is not None else None

    def state_dict(self) -> dict:
        state = super().state_dict()
        if self.codes is not None:
            state["latent_compression"] = {"codes": self.codes.cpu(), "alphas": self.alphas.cpu()}
        return state

    def neighbourhood(self, n: int) -> torch.Tensor:
        """An anchor z and N codes from its neighbourhood: a batch of N+1."""
        dim = self.g.style_dim
        z = torch.randn(1, dim, generator=self.torch_rng)
        if self.cfg.setting("neighbours") == "mix":
            m = self.cfg.mix
            near = (1 - m) * z + m * torch.randn(n, dim, generator=self.torch_rng)
        else:  # uniform in the ball |z' − z| < r
            direction = F.normalize(torch.randn(n, dim, generator=self.torch_rng), dim=1)
            radius = self.cfg.radius * torch.rand(n, 1, generator=self.torch_rng) ** (1 / dim)
            near = z + direction * radius
        return torch.cat([z, near]).to(self.device)

    def g_extra(self, step):
        layers = self.g_layers
        z, noise = self.consistency_codes(self.cfg.consistency_batch)
        feats = self.generate(self.g, z, noise, return_feats=True)[2]
        with torch.no_grad():
            source_feats = self.generate(self.g_source, z, noise, return_feats=True)[2]
        l_scc = scc_loss([feats[l] for l in layers], [source_feats[l] for l in layers],
                         self.cfg.scc_patch, self.cfg.max_side, self.cfg.pool, self.cfg.scc_distance)
        loss, logs = self.cfg.setting("alpha") * l_scc, {"loss/scc": l_scc.detach()}
        if step % self.cfg.setting("dcc_every") == 0:
            zn = self.neighbourhood(self.cfg.n_neighbours)
            noise_n = [n.expand(len(zn), -1, -1, -1) for n in self.sample_noise(1)]  # only z is disturbed
            feats_t = self.generate(self.g, zn, noise_n, return_feats=True)[2]
            with torch.no_grad():
                feats_s = self.generate(self.g_source, zn, noise_n, return_feats=True)[2]
            l_dcc = dcc_loss([feats_t[l] for l in layers], [feats_s[l] for l in layers],
                             self.cfg.window, self.cfg.max_side, self.cfg.pool)
            loss = loss + self.cfg.setting("beta") * l_dcc
            logs["loss/dcc"] = l_dcc.detach()
        return loss, logs
