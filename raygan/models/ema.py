"""The exponential moving average of a generator's weights, which both families evaluate and
save as ``g_ema`` (few-shot: CDC's recipe; label-to-image: OASIS's)."""
from __future__ import annotations

from typing import Iterable

import torch


@torch.no_grad()
def update_ema(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * model, parameter by parameter (buffers copied)."""
    for pe, p in zip(ema.parameters(), model.parameters()):
        pe.lerp_(p, 1.0 - decay)
    for be, b in zip(ema.buffers(), model.buffers()):
        be.copy_(b)


def warmup_decay(decay: float, step: int) -> float:
    """The EMA decay at update ``step`` (0-based) with warm-up: min(decay, (1 + step) / (10 + step)),
    the num_updates rule of TensorFlow's ExponentialMovingAverage (diffusers' EMAModel has it
    too). A generator trained from scratch changes fastest early; with a constant 0.999 its EMA
    after 1000 steps still holds 37 % of the random initial weights, with warm-up it averages
    about the last tenth of the run until the decay reaches ``decay`` (step ~9000 for 0.999)."""
    return min(decay, (1.0 + step) / (10.0 + step))


@torch.no_grad()
def refresh_batchnorm(model: torch.nn.Module, inputs: Iterable[torch.Tensor], seed: int = 0) -> None:
    """Recompute the BatchNorm running statistics of ``model`` as their plain average over
    forward passes on ``inputs``. An EMA generator's averaged weights do not match the
    statistics copied from the trained G, so OASIS runs its EMA generator over training label
    maps before every evaluation. Only the BatchNorm layers run in train mode (unlike torch's
    ``update_bn``, which trains the whole net: spectral norm would then take power-iteration
    steps and change the weights), so the result depends on the inputs alone and a reloaded
    checkpoint refreshes to the same statistics. Whatever the forward pass draws (OASIS's 3-D
    noise) comes from ``seed``; the global RNG is restored afterwards."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    inputs = list(inputs)
    if not norms or not inputs:
        return
    was = model.training
    model.eval()
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
        m.train()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for x in inputs:
            model(x)
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    model.train(was)
