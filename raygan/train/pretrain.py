"""`raygan pretrain`: the embedded source generator, trained on procedural "shapes".

Plain StyleGAN2 training (non-saturating loss, lazy R1, G_ema) on an
unlimited supply of source-domain renders; writes a rosinality-layout
checkpoint (g, d, g_ema, latent_avg) plus the constructor args raygan uses.
"""
from __future__ import annotations

import copy
import time
from pathlib import Path

import torch

from raygan.errors import UserError
from raygan.losses.adversarial import d_nonsaturating, g_nonsaturating, r1_penalty

# The embedded model: narrow so that a few-shot trial fits in about a minute on 2 CPU cores.
EMBEDDED_G = dict(style_dim=128, n_mlp=4, channel_multiplier=2, channel_max=64)


def _source_pool(n: int, size: int, seed: int) -> torch.Tensor:
    from raygan.data.synthetic import render, sample_scenes

    return render(sample_scenes(seed + 50_000, n), size, "source")


def pretrain(out, steps=5000, size=32, seed=0, force=False, batch=8, lr=0.002, r1=0.1,
             r1_every=16, ema_decay=0.995, pool=20_000, log_every=250, init=None) -> Path:
    from torchvision.utils import save_image

    from raygan.cache import save_atomic
    from raygan.models.stylegan2 import Discriminator, Generator

    out = Path(out)
    if out.exists() and not force:
        raise UserError(out, "exists; pass --force to overwrite it or --out another path")
    torch.manual_seed(seed)
    torch.set_flush_denormal(True)  # denormal activations slow CPU convs down by orders of magnitude
    g = Generator(size, **EMBEDDED_G)
    d = Discriminator(size, channel_multiplier=EMBEDDED_G["channel_multiplier"],
                      channel_max=EMBEDDED_G["channel_max"])
    if init is not None:  # continue an earlier run
        from raygan.models.checkpoint import load_file

        state = load_file(init)
        try:
            g.load_state_dict(state["g"]), d.load_state_dict(state["d"])
            g_ema_state = state["g_ema"]
        except (KeyError, RuntimeError, TypeError, AttributeError) as e:
            kind = f"no '{e.args[0]}'" if isinstance(e, KeyError) else "a different architecture"
            raise UserError(init, f"{kind}: expected a checkpoint written by `raygan pretrain` "
                                  f"({size}px, keys g, d, g_ema)") from None
    g_ema = copy.deepcopy(g).eval().requires_grad_(False)
    if init is not None:
        g_ema.load_state_dict(g_ema_state)
    ratio = r1_every / (r1_every + 1)
    g_opt = torch.optim.Adam(g.parameters(), lr=lr, betas=(0.0, 0.99))
    d_opt = torch.optim.Adam(d.parameters(), lr=lr * ratio, betas=(0.0, 0.99 ** ratio))
    data = _source_pool(pool, size, seed)
    print(f"raygan pretrain: {steps} steps, batch {batch}, {size}px, pool of {len(data)} source renders", flush=True)
    t0 = time.time()
    for step in range(1, steps + 1):
        real = data[torch.randint(len(data), (batch,))]
        z = torch.randn(batch, g.style_dim)
        g.requires_grad_(False), d.requires_grad_(True)
        fake, _ = g([z])
        loss_d = d_nonsaturating(d(real), d(fake))
        if step % r1_every == 0:
            real.requires_grad_(True)
            loss_d = loss_d + r1 / 2 * r1_penalty(d(real), real) * r1_every
        d_opt.zero_grad(set_to_none=True)
        loss_d.backward()
        d_opt.step()

        g.requires_grad_(True), d.requires_grad_(False)
        fake, _ = g([torch.randn(batch, g.style_dim)])
        loss_g = g_nonsaturating(d(fake))
        g_opt.zero_grad(set_to_none=True)
        loss_g.backward()
        g_opt.step()
        with torch.no_grad():
            for pe, p in zip(g_ema.parameters(), g.parameters()):
                pe.lerp_(p, 1 - ema_decay)
        if step % log_every == 0 or step == steps:
            rate = step / (time.time() - t0)
            print(f"  step {step}/{steps}  loss_d {loss_d.item():.3f}  loss_g {loss_g.item():.3f}  "
                  f"{rate:.1f} it/s  eta {(steps - step) / rate:.0f} s", flush=True)
    with torch.no_grad():
        latent_avg = g_ema.mean_latent(4096)[0]
        preview, _ = g_ema([torch.randn(64, g.style_dim, generator=torch.Generator().manual_seed(1))])
    save_atomic({"g": g.state_dict(), "d": d.state_dict(), "g_ema": g_ema.state_dict(),
                 "latent_avg": latent_avg, "g_config": g.config, "d_config": d.config}, out)
    grid = out.with_suffix(".png")
    save_image(preview, grid, nrow=8, normalize=True, value_range=(-1, 1))
    print(f"raygan pretrain: wrote {out} and a sample grid {grid}")
    return out
