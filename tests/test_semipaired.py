"""The semi-paired method and its baselines: what each step trains, and the ablation switches."""
import io

import pytest
import torch

from raygan.families import labelgen
from raygan.search_space import typed
from raygan.train.loop import scalars

SMALL = {"data": {"n_train": 120, "ratio": 0.1}, "model": {"g_base": 8, "d_base": 8, "z_dim": 8},
         "train": {"steps": 10, "batch_size": 2}}


def make(name, **knobs):
    torch.manual_seed(0)
    return labelgen.build(typed({"method": {"name": name, **knobs}, **SMALL}))


def g_grads(m):
    """Run G's terms once and backpropagate; D_c's parameters' gradients after it."""
    batch = m.batch(0)
    m.g.requires_grad_(True)
    for net in m.d_nets:
        net.requires_grad_(False)
    loss, logs = m.g_terms(batch)
    loss.backward()
    return [p.grad for p in m.d_c.parameters()], logs


def test_cycle_loss_reaches_d_c_only_under_ablation_b():
    grads, logs = g_grads(make("semipaired"))
    assert logs["loss/cyc"] > 0 and all(g is None for g in grads)  # D_c frozen in L_cyc (and in L_G,p)
    grads, _ = g_grads(make("semipaired", ablation="B"))
    assert any(g is not None and g.abs().sum() > 0 for g in grads)


def test_ablation_b_updates_d_c_in_the_g_step_and_default_does_not():
    for ablation, changes in (("none", False), ("B", True)):
        m = make("semipaired", ablation=ablation)
        m.step()  # Adam state exists after a first D step
        batch = m.batch(1)
        before = [p.clone() for p in m.d_c.parameters()]
        m.g.requires_grad_(True)
        for net in m.d_nets:
            net.requires_grad_(False)
        m.g_optim.zero_grad(set_to_none=True)
        loss, _ = m.g_terms(batch)
        loss.backward()
        m.g_optim.step()
        m.after_g_step()
        moved = any(not torch.equal(a, b) for a, b in zip(before, m.d_c.parameters()))
        assert moved == changes, ablation


def test_ablation_a_reverse_maps_with_a_separate_segmenter():
    m = make("semipaired", ablation="A")
    assert m.s is not None and m.reverse is m.s
    logs = m.step()
    assert "loss/s" in logs and "loss/cyc" in logs


@pytest.mark.parametrize("ablation,phase", [("none", "first"), ("E", "off"), ("F", "second")])
def test_rare_sampling_phase_follows_the_ablation(ablation, phase):
    assert make("semipaired", ablation=ablation).sampler.phase == phase


def test_ablations_c_and_d_drop_their_terms():
    assert make("semipaired", ablation="C").lambda_fm == 0.0
    m = make("semipaired", ablation="D", lambda_vgg=10.0)
    assert m.vgg is None and "loss/vgg" not in m.step()


def test_vgg_off_is_said_not_silent(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # no vgg19 weights in this cache
    m = make("semipaired", lambda_vgg=10.0)
    assert m.vgg is None and "the VGG loss is off" in capsys.readouterr().out


@pytest.mark.parametrize("name,terms", [
    ("semipaired", {"loss/d_c", "loss/d_u", "loss/g_c", "loss/fm", "loss/cyc", "loss/g_u"}),
    ("oasis", {"loss/d_c", "loss/g_c"}),
    ("tcr", {"loss/d_c", "loss/g_c", "loss/tcr"}),
    ("usis", {"loss/d_u", "loss/cyc", "loss/g_u"}),
])
def test_each_method_steps_resumes_and_logs_its_terms(name, terms):
    m = make(name)
    logs = m.step()
    assert terms <= logs.keys() and all(torch.isfinite(v) for v in logs.values())
    buf = io.BytesIO()
    torch.save(m.state_dict(), buf)  # as a checkpoint: state_dict() holds the live optimiser moments
    buf.seek(0)
    resumed = make(name)
    resumed.load_state_dict(torch.load(buf, weights_only=True))
    assert resumed.step_count == 1
    a, b = m.step(), resumed.step()
    assert scalars(a) == pytest.approx(scalars(b), rel=1e-4)  # same weights, optimiser, sampler and RNG state


def test_oasis_sees_only_pairs_and_usis_only_unpaired():
    assert set(make("oasis").batch(0)) == {"x_p", "t_p"}
    assert set(make("usis").batch(0)) == {"x_u", "t_u"}
    assert set(make("semipaired").batch(0)) == {"x_p", "t_p", "x_u", "t_u"}
