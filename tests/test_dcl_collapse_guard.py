"""DCL's claim is that it keeps more diversity than plain fine-tuning (TGAN). Guard:
from the same source, seed and budget, DCL at its defaults must not lose its
samples' spread faster than TGAN does. The reading of Eq. 8 that collapsed on the
embedded benchmark (D minimising λ2 L_CL2, `d_cl2: min`) is the positive control:
this check catches it.

Spread = mean pairwise distance of 64 samples (fixed z and noise) after 4x4
average pooling, i.e. of their 8x8 layouts (pixel noise averages out), relative
to the source's, averaged over steps 70, 75, ..., 90. 90 steps at lr 0.005 without
EMA or path-length regularisation (to move fast). At this lr one step's spread is
chaotic: at step 90 alone an Intel machine gave TGAN 0.98, DCL 1.13, DCL d_cl2 min 0.62,
an AMD EPYC (AVX-512) on the same seed TGAN 1.21, DCL 1.14 (the guard at step 90 with
margin 0.05 failed there), and between steps 60 and 90 DCL's spread jumps by up to 0.4
(seed 0: 1.04, 0.71, 1.10 at steps 60, 65, 70). Averaged over steps 70-90 (AMD, seeds 0
and 1): TGAN 1.12 and 1.10, DCL 1.07 and 1.12, DCL d_cl2 min 0.57 and 0.68. So DCL may
be at most MARGIN below TGAN, and the collapsing reading must be COLLAPSE below it: the
collapse is ~0.45, the seed-to-seed and machine-to-machine gaps between DCL and TGAN
<= 0.05. Fewer steps or batch 2 did not separate reliably (#26). The positive control (the
collapsing reading must fail the guard) runs with `pytest -m control`, not in the suite: it
shows once that the guard's settings can fail, and costs as much as the guard itself.
"""
import dataclasses
import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import pytest
import torch

from raygan.methods.fewshot.sections import TrainConfig
from raygan.data.synthetic import few_shot_target
from raygan.methods.fewshot import dcl, tgan as finetune
from raygan.evaluation.sampling import generate
from raygan.models.checkpoint import load_source
from raygan.methods.base import FewShotData

SOURCE = load_source("embedded")
Z = torch.randn(64, 128, generator=torch.Generator().manual_seed(1))
FAST = TrainConfig(batch_size=4, lr=0.005, r1=0.2, ema_decay=0.0, pl_weight=0.0)
MARGIN, COLLAPSE = 0.1, 0.25
WINDOW = range(70, 91, 5)  # the steps whose spreads are averaged


def spread(g) -> float:
    layouts = torch.nn.functional.avg_pool2d(generate(g, Z, seed=0, batch=64), 4).flatten(1)
    return torch.cdist(layouts, layouts).mean().item()


def adapted_spread(module, steps=90, **knobs) -> float:
    torch.manual_seed(0)
    m = module.Method(dataclasses.replace(module.Config(), **knobs), {"train": FAST},
                      FewShotData(SOURCE, few_shot_target(32, 10)), seed=0)
    spreads = []
    for step in range(1, steps + 1):
        m.step()
        if step in WINDOW:
            spreads.append(spread(m.g))
    return sum(spreads) / len(spreads) / spread(SOURCE.generator())


def _run(name: str) -> float:
    """One of the three adaptations, in a worker process on one thread (as measured above)."""
    torch.set_num_threads(1)
    return {"tgan": lambda: adapted_spread(finetune), "dcl": lambda: adapted_spread(dcl),
            "dcl_min": lambda: adapted_spread(dcl, d_cl2="min")}[name]()


def _spreads(*names: str) -> list[float]:
    """The named adaptations side by side, one process per core (spawned: one torch thread each)."""
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        return list(pool.map(_run, names))


@pytest.mark.slow
def test_dcl_at_its_defaults_does_not_collapse_faster_than_tgan():
    dcl_default, tgan = _spreads("dcl", "tgan")
    assert dcl_default >= tgan - MARGIN, (dcl_default, tgan)


@pytest.mark.control
def test_the_guard_catches_the_collapse_it_guards_against():
    """The positive control (deselected by default; `pytest -m control`): the collapsing reading
    of Eq. 8 must fail the guard. Its result is in benchmarks/RESULTS.md #26."""
    dcl_min, tgan = _spreads("dcl_min", "tgan")
    assert dcl_min < tgan - COLLAPSE, (dcl_min, tgan)
