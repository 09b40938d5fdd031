"""The few-shot harness runs the public code's recipe: EMA of G_t, frozen noise
strengths (a knob), style mixing, flipped shots, and evaluation of the EMA."""
import dataclasses

import pytest
import torch

from raygan.methods.fewshot.sections import EMA_DECAY, TrainConfig
from raygan.data.synthetic import few_shot_target
from raygan.methods.fewshot import tgan as finetune
from raygan.methods.fewshot.adapter import is_noise_strength
from raygan.models.ema import update_ema
from raygan.models.checkpoint import load_source
from raygan.methods.base import FewShotData

SOURCE = load_source("embedded")
SHOTS = few_shot_target(32, 4)


def make(**train):
    cfg = TrainConfig(batch_size=2, r1_every=2, pl_every=2, **train)
    return finetune.Method(finetune.Config(), {"train": cfg}, FewShotData(SOURCE, SHOTS), seed=0)


def test_defaults_are_the_public_codes():
    t = TrainConfig()
    assert (t.r1, t.mixing, t.flip, t.lr, t.batch_size) == (10.0, 0.9, True, 0.002, 4)
    assert t.ema_decay == pytest.approx(0.99778, abs=1e-5) == EMA_DECAY


def test_ema_follows_g_t_by_its_decay_and_is_what_is_saved():
    m = make(ema_decay=0.5)
    ema = [p.clone() for p in m.g.parameters()]
    for _ in range(3):
        m.step()
        ema = [0.5 * e + 0.5 * p.detach() for e, p in zip(ema, m.g.parameters())]
    assert all(torch.allclose(e, p, atol=1e-6) for e, p in zip(ema, m.g_ema.parameters()))
    assert any(not torch.allclose(e, p) for e, p in zip(m.g_ema.parameters(), m.g.parameters()))
    state = m.state_dict()
    assert all(torch.equal(state["g_ema"][k], v) for k, v in m.g_ema.state_dict().items())
    again = make(ema_decay=0.5)
    again.load_state_dict(state)  # resuming restores the EMA too
    assert all(torch.equal(a, b) for a, b in zip(again.g_ema.parameters(), m.g_ema.parameters()))


def test_no_ema_means_g_ema_is_g_t():
    m = make(ema_decay=0.0)
    m.step()
    assert m.g_ema is m.g


def test_update_ema_is_a_lerp():
    a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    expected = 0.9 * a.weight.detach() + 0.1 * b.weight.detach()
    update_ema(a, b, 0.9)
    assert torch.allclose(a.weight, expected)


def noise_strengths(g):
    return {n: p.detach().clone() for n, p in g.named_parameters() if is_noise_strength(n)}


@pytest.mark.parametrize("trained", [False, True])
def test_noise_strengths_train_only_when_asked(trained):
    m = make(train_noise_strengths=trained, ema_decay=0.0)
    before = noise_strengths(m.g)
    assert len(before) == m.g.num_layers
    for _ in range(2):
        m.step()
    after = noise_strengths(m.g)
    moved = [not torch.equal(before[n], after[n]) for n in before]
    assert all(moved) if trained else not any(moved)
    others = [p for n, p in m.g.named_parameters() if not is_noise_strength(n)]
    assert {id(p) for p in others} <= {id(p) for p in m.g_trainable}  # everything else still trains


def test_adversarial_codes_are_mixed_with_the_mixing_probability():
    m = make(mixing=0.9)
    draws = [m.adversarial_codes(2, step=1) for _ in range(200)]
    mixed = sum(isinstance(d, list) for d in draws) / len(draws)
    assert 0.8 < mixed < 0.97
    assert not any(isinstance(make(mixing=0.0).adversarial_codes(2, 1), list) for _ in range(20))


def test_shots_are_flipped_only_with_flip():
    shots = torch.linspace(-1, 1, 32).expand(1, 3, 32, 32).clone()  # asymmetric left-right
    m = finetune.Method(finetune.Config(), {"train": TrainConfig(batch_size=2)}, FewShotData(SOURCE, shots), seed=0)
    batch = m.real_batch(64)
    flipped = (batch == shots.flip(3)).flatten(1).all(1)
    assert 0.3 < flipped.float().mean() < 0.7 and ((batch == shots).flatten(1).all(1) | flipped).all()
    m.train = dataclasses.replace(m.train, flip=False)
    assert (m.real_batch(16) == shots).all()


def test_a_run_is_reproducible_whatever_the_global_rng_held_before():
    """CDC's patch head is initialised from torch's global RNG: the loop seeds it before building
    the method (it once did after, and every CDC/DCL/RSSA run started from another patch head)."""
    from raygan.train.loop import Hooks, run
    from raygan.search_space import load_experiment

    cfg = load_experiment("search_spaces/cdc.yaml").trial_config
    cfg["train"].update(steps=3, eval_every=3, eval_samples=20, batch_size=2)
    cfg["method"]["lambda_dist"] = 1000.0
    finals = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        finals.append({k: v for k, v in run(cfg, Hooks(report=lambda m, s: None)).items() if k != "sec_per_step"})
    assert finals[0] == finals[1]
