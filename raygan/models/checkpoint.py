"""StyleGAN2 checkpoints in the rosinality layout: load, infer the architecture, save atomically.

A file holds ``g_ema`` (and optionally ``g``, ``d``, ``latent_avg``); raygan's
own files add ``g_config``/``d_config`` (plain dicts of constructor args). For
files without them the architecture is read off the parameter shapes.
"""
from __future__ import annotations

import argparse
import math
import pickle
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from raygan.errors import UserError
from raygan.models.stylegan2 import Discriminator, Generator

EMBEDDED = Path(__file__).resolve().parent.parent / "assets" / "source_shapes32.pt"


# Beyond tensors and containers, the port's training files hold its argparse
# options ("args"); a Namespace only gets attributes set, nothing is called.
SAFE_GLOBALS = [argparse.Namespace]


def load_file(path) -> dict:
    """torch.load with weights_only=True; user mistakes become one-line errors."""
    p = Path(path)
    if not p.is_file():
        raise UserError(path, "no such checkpoint file (expected a StyleGAN2 .pt in rosinality layout)")
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected pickle protocol")  # plain pickles: one line
            state = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        with open(p, "rb") as f:
            head = f.read(4)
        if not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"):  # neither torch's zip nor a pickle
            raise UserError(path, "corrupt, truncated or not a torch checkpoint (neither a zip nor a pickle)") from None
        text = str(e).split("WeightsUnpickler error:", 1)[-1]  # torch's reason, not its advice
        first = next((line.strip() for line in text.splitlines() if line.strip()), "unsafe content")
        first = first.split(" Please use", 1)[0]  # torch's how-to-allow-it advice is not ours to give
        raise UserError(path, f"refused: not a plain weights file ({first[:120]})") from None
    except Exception as e:  # torch.load raises many types on bad bytes (KeyError, EOFError, RuntimeError, ...)
        raise UserError(path, f"corrupt, truncated or not a torch checkpoint ({type(e).__name__})") from None
    if not isinstance(state, dict) or not isinstance(state.get("g_ema"), dict):
        raise UserError(path, "expected a dict with 'g_ema' (rosinality StyleGAN2 layout)")
    return state


def infer_generator_config(sd: dict) -> dict:
    """Constructor args of the port's Generator that reproduce these shapes."""
    def count(prefix, leaf):  # keys "<prefix>.<i>.<leaf>"
        return sum(1 for k in sd if k.split(".")[0] == prefix and k.split(".")[2:] == [leaf])

    n_mlp = count("style", "weight")
    style_dim = sd["style.1.weight"].shape[0]
    size = 2 ** (2 + count("to_rgbs", "bias"))
    c4 = sd["input.input"].shape[1]
    for cm in (2, 1, 4):
        for cmax in sorted({512, c4}):
            cfg = dict(size=size, style_dim=style_dim, n_mlp=n_mlp, channel_multiplier=cm, channel_max=cmax)
            shapes = {k: v.shape for k, v in Generator(**cfg).state_dict().items()}
            if shapes == {k: v.shape for k, v in sd.items()}:
                return cfg
    raise ValueError("parameter shapes match no StyleGAN2 generator configuration")


@dataclass
class SourceModel:
    """A pretrained source: builds fresh G / D copies with its weights."""
    path: str
    g_state: dict
    g_config: dict
    d_state: dict | None
    d_config: dict
    latent_avg: torch.Tensor | None

    @property
    def size(self) -> int:
        return self.g_config["size"]

    def generator(self) -> Generator:
        g = Generator(**self.g_config)
        g.load_state_dict(self.g_state)
        return g

    def discriminator(self) -> Discriminator:
        d = Discriminator(**self.d_config)
        if self.d_state is not None:
            d.load_state_dict(self.d_state)
        return d


def random_source(g_config: dict, seed: int = 0) -> SourceModel:
    """A randomly initialised source with these Generator kwargs (its D of the same widths): for
    measuring and testing steps, whose cost and dtypes do not depend on the weights."""
    torch.manual_seed(seed)
    d_config = {k: g_config[k] for k in ("size", "channel_multiplier", "channel_max")}
    g, d = Generator(**g_config), Discriminator(**d_config)
    with torch.no_grad():
        latent_avg = g.mean_latent(1000)[0]
    return SourceModel(f"random {g_config}", g.state_dict(), dict(g_config), d.state_dict(), d_config, latent_avg)


def save_source(src: SourceModel, path) -> None:
    """A source as a rosinality-layout file (``g`` and ``g_ema`` both its generator's weights, ``d``,
    ``latent_avg``) plus raygan's constructor args, written atomically."""
    from raygan.cache import save_atomic

    save_atomic({"g": src.g_state, "g_ema": src.g_state, "d": src.d_state, "latent_avg": src.latent_avg,
                 "g_config": src.g_config, "d_config": src.d_config}, path)


def load_source(path: str = "embedded") -> SourceModel:
    """Load a pretrained source generator ('embedded' or a rosinality-layout file)."""
    path = str(EMBEDDED) if path == "embedded" else path
    state = load_file(path)
    g_sd = state["g_ema"]
    try:
        g_cfg = state.get("g_config") or infer_generator_config(g_sd)
        d_cfg = state.get("d_config") or {k: g_cfg[k] for k in ("size", "channel_multiplier", "channel_max")}
        src = SourceModel(path, g_sd, dict(g_cfg), state.get("d"), dict(d_cfg), state.get("latent_avg"))
        src.generator(), src.discriminator()  # fail here, not in a worker
    except (KeyError, ValueError, RuntimeError, TypeError, AttributeError, IndexError) as e:
        # e.g. another network's weights under g_ema, non-tensor values, a g_config that is not a dict
        msg = f"no parameter {e.args[0]!r}" if isinstance(e, KeyError) else \
            (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        raise UserError(path, f"not a StyleGAN2 checkpoint this code can build ({msg})") from None
    if not math.log2(src.size).is_integer():
        raise UserError(path, f"generator size {src.size} is not a power of two")
    return src
