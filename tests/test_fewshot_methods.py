"""The few-shot methods' wiring on the embedded source: what each one trains and adds."""
import dataclasses
import textwrap

import pytest
import torch

from raygan.cli import main
from raygan.methods.fewshot.sections import TrainConfig
from raygan.data.synthetic import few_shot_target
from raygan.losses.contrastive import per_sample
from raygan.losses.correspondence import cross_domain_distance
from raygan.methods.fewshot import cdc, ewc, freezed, rssa
from raygan.models.checkpoint import load_source
from raygan.registry import method_module
from raygan.search_space import load_experiment
from raygan.methods.base import FewShotData
from raygan.commands.evaluate import sampling_map

SOURCE = load_source("embedded")
SHOTS = few_shot_target(32, 4)
FAST = TrainConfig(batch_size=2, r1_every=2, pl_every=2)


def make(module, **knobs):
    cfg = dataclasses.replace(module.Config(), **knobs)
    return module.Method(cfg, {"train": FAST}, FewShotData(SOURCE, SHOTS), seed=0)


@pytest.mark.parametrize("name", ["tgan", "freezed", "ewc", "cdc", "dcl", "rssa"])
def test_every_method_takes_finite_steps(name):
    knobs = {"invert_steps": 5} if name == "rssa" else {}
    m = make(method_module(name), **knobs)
    before = [p.clone() for p in m.g.parameters()]
    for _ in range(2):
        logs = m.step()
    assert all(torch.isfinite(v) for v in logs.values())
    assert any(not torch.equal(a, b) for a, b in zip(before, m.g.parameters()))


def test_freezed_keeps_the_first_blocks():
    m = make(freezed, frozen_blocks=2)
    frozen = [p.clone() for b in m.d.convs[:2] for p in b.parameters()]
    free = [p.clone() for b in m.d.convs[2:] for p in b.parameters()]
    for _ in range(2):
        m.step()
    assert all(torch.equal(a, b) for a, b in zip(frozen, [p for b in m.d.convs[:2] for p in b.parameters()]))
    assert any(not torch.equal(a, b) for a, b in zip(free, [p for b in m.d.convs[2:] for p in b.parameters()]))


def test_ewc_fisher_is_mean_squared_gradient_and_penalty_holds_g_back():
    m = make(ewc, fisher_samples=3)
    gen = torch.Generator().manual_seed(5)
    torch.manual_seed(0)  # noise maps
    fisher = ewc.diagonal_fisher(m.g_source.requires_grad_(True), m.d, 3, 128, gen)
    gen.manual_seed(5)
    torch.manual_seed(0)
    w = m.g_source.conv1.conv.weight  # slow reference for one tensor
    ref = torch.zeros_like(w)
    for _ in range(3):
        z = torch.randn(1, 128, generator=gen)
        ll = -torch.nn.functional.softplus(-m.d(m.g_source([z])[0])).sum()
        ref += torch.autograd.grad(ll, w)[0] ** 2 / 3
    idx = [n for n, _ in m.g_source.named_parameters()].index("conv1.conv.weight")
    assert torch.allclose(fisher[idx], ref, rtol=1e-5, atol=1e-12)

    def drift(lam):
        mm = make(ewc, fisher_samples=3, lambda_ewc=lam)
        for _ in range(3):
            mm.step()
        return sum((p - s).pow(2).sum().item() for p, s in zip(mm.g.parameters(), mm.source_params))
    assert drift(1e12) < drift(0.0)


def test_cdc_adds_lambda_times_l_dist_on_its_own_batch():
    m = make(cdc, lambda_dist=10.0, g_layers=[3], consistency_batch=3)
    with torch.no_grad():
        m.g.convs[2].conv.weight.add_(torch.randn_like(m.g.convs[2].conv.weight))  # G_t != G_s
    state = m.torch_rng.get_state()
    with torch.no_grad():
        loss, logs = m.g_extra(1)
    m.torch_rng.set_state(state)  # the same draws: the consistency batch of 3 codes and its noise
    z, noise = m.consistency_codes(3)
    with torch.no_grad():
        _, _, feats = m.g([z], noise=noise, return_feats=True)
        _, _, src = m.g_source([z], noise=noise, return_feats=True)
    expected = cross_domain_distance(per_sample(feats[3]), per_sample(src[3]))
    assert float(logs["loss/dist"]) == pytest.approx(expected.item(), rel=1e-5) and expected.item() > 0
    assert loss.item() == pytest.approx(10 * expected.item(), rel=1e-5)


def test_rssa_renders_compressed_styles_for_both_generators():
    m = make(rssa, invert_steps=5, compression_alpha=[0, 0, 0, 0, 1, 1, 1, 1])
    z, noise = torch.randn(2, 128), m.sample_noise(2)
    with torch.no_grad():
        plain = m.g_source([z], noise=noise)[0]
        squeezed = m.generate(m.g_source, z, noise)[0]
        target = m.generate(m.g, z, noise)[0]
    assert not torch.allclose(plain, squeezed) and torch.allclose(squeezed, target)  # G_t == G_s at start
    none = make(rssa, invert_steps=5, compression_alpha=[0.0] * 8)
    with torch.no_grad():
        assert torch.allclose(none.generate(none.g_source, z, noise)[0], plain, atol=1e-5)
    assert m.codes.shape == (len(SHOTS), 8, 128)


def test_rssa_is_evaluated_and_saved_with_its_compression():
    """Trial evaluations and `raygan eval` sample RSSA's G_t through Eq. 8, as it trains."""
    from raygan.evaluation.sampling import generate

    m = make(rssa, invert_steps=5, compression_alpha=[0, 0, 0, 0, 1, 1, 1, 1])
    for _ in range(2):
        m.step()
    assert all(torch.equal(a, b) for a, b in zip(m.g.style.parameters(), m.g_source.style.parameters()))
    z = torch.randn(6, 128)
    sampled = generate(m.g_ema, z, seed=3, batch=6, latent_map=m.latent_map())
    plain = generate(m.g_ema, z, seed=3, batch=6)
    assert not torch.allclose(sampled, plain, atol=1e-3)
    # The checkpoint carries the map: a generator rebuilt from it samples the same images.
    state = m.state_dict()
    g = SOURCE.generator()
    g.load_state_dict(state["g_ema"])
    assert state["method"] == "rssa"
    again = generate(g, z, seed=3, batch=6, latent_map=sampling_map(state, g))
    assert torch.allclose(again, sampled, atol=1e-5)
    assert sampling_map({}, g) is None and sampling_map(make(method_module("tgan")).state_dict(), g) is None


def test_rssa_scc_distance_knob_reaches_the_loss():
    from raygan.losses.structural import scc_loss

    a, b = [torch.randn(2, 4, 8, 8)], [torch.randn(2, 4, 8, 8)]
    assert scc_loss(a, b, distance="l1").item() > scc_loss(a, b, distance="smooth_l1").item() > 0


def test_rssa_neighbours_stay_in_the_ball():
    m = make(rssa, invert_steps=5, radius=0.5)
    zn = m.neighbourhood(6)
    assert zn.shape == (7, 128) and ((zn[1:] - zn[0]).norm(dim=1) < 0.5).all()


def write(tmp_path, alphas):
    p = tmp_path / "r.yaml"
    p.write_text(textwrap.dedent(f"""
        method: {{name: rssa, alpha: {{uniform: [0.5, 2.0]}}, compression_alpha: {alphas}, invert_steps: 2}}
        train: {{steps: 1}}
        output: {{dir: {tmp_path / 'out'}}}
    """))
    return p


@pytest.mark.parametrize("alphas,message", [
    ("[0, 0, 0.1, {uniform: [0, 0.2]}]", "expected 8 values (one per W+ layer"),
    ("[0, 0, 0, 0, 0.5, 0.5, 0.5, 1.5]", "expected a value <= 1.0"),
    ("[0, 0, 0, 0, 0.5, 0.5, 0.5, {uniform: [0.5, 1.2]}]", "expected a value <= 1.0"),
])
def test_bad_per_layer_alphas_are_one_line_errors(tmp_path, capsys, alphas, message):
    assert main(["train", str(write(tmp_path, alphas)), "--local"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err and "r.yaml" in err
    assert not (tmp_path / "out").exists()


def test_per_layer_distributions_become_searched_knobs(tmp_path):
    exp = load_experiment(write(tmp_path, "[0, 0, 0, 0, 0.5, {uniform: [0.1, 0.9]}, 0.5, {choice: [0.2, 1.0]}]"))
    assert {k: d.kind for k, d in exp.space.items()} == {
        "method.alpha": "uniform", "method.compression_alpha.5": "uniform", "method.compression_alpha.7": "choice"}
    from raygan.search_space import resolve, typed
    cfg = typed(resolve(exp.trial_config, {"method.compression_alpha.5": 0.33, "method.compression_alpha.7": 1.0}))
    assert cfg["method"].compression_alpha == [0, 0, 0, 0, 0.5, 0.33, 0.5, 1.0]


def test_method_grid_runs_each_method_with_its_defaults(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("method: {name: {grid: [freezed, cdc]}}\ntrain: {seed: {grid: [0, 1]}}\n")
    exp = load_experiment(p)
    assert exp.is_grid and exp.methods == ["freezed", "cdc"] and exp.trial_config["method"] == {"name": "freezed"}
    from raygan.search_space import resolve, typed
    assert typed(resolve(exp.trial_config, {"method.name": "cdc"}))["method"].lambda_dist == 1000.0
    p.write_text("method: {name: {grid: [freezed, cdc]}, lambda_dist: 5}\n")
    with pytest.raises(Exception, match="paper defaults"):
        load_experiment(p)
    p.write_text("method: {name: {grid: [freezed, gan9000]}}\n")
    with pytest.raises(Exception, match="gan9000"):
        load_experiment(p)


@pytest.mark.parametrize("knobs,lam", [({}, 10.0), ({"preset": "paper"}, 5e8), ({"preset": "paper", "lambda_ewc": 3.0}, 3.0)])
def test_ewc_lambda_comes_from_its_preset_unless_given(knobs, lam):
    m = make(ewc, fisher_samples=2, **knobs)
    with torch.no_grad():
        m.g.conv1.conv.weight.add_(0.1)  # G_t != G_s: a positive penalty
        loss, logs = m.g_extra(1)
    assert logs["loss/ewc"] > 0 and loss.item() == pytest.approx(lam * float(logs["loss/ewc"]), rel=1e-5)
