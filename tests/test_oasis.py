"""OASIS as published: LabelMix, the EMA generator, the class-balance normalisation and D's
learning rate, each a knob that reaches the code using it (docs/METHODS.md, "OASIS as published")."""
import pytest
import torch

from raygan.families import labelgen
from raygan.losses.segmentation import (balance_weights, labelmix_images, labelmix_loss, labelmix_mask,
                                        oasis_d_loss)
from raygan.models.ema import refresh_batchnorm, warmup_decay
from raygan.search_space import typed

SMALL = {"data": {"n_train": 120, "ratio": 0.1}, "model": {"g_base": 8, "d_base": 8, "z_dim": 8},
         "train": {"steps": 10, "batch_size": 2}}


def make(name, train=None, data=None, **knobs):
    torch.manual_seed(0)
    cfg = {"method": {"name": name, **knobs}, "data": {**SMALL["data"], **(data or {})},
           "model": SMALL["model"], "train": {**SMALL["train"], **(train or {})}}
    return labelgen.build(typed(cfg))


def onehot(classes, n):
    return torch.nn.functional.one_hot(torch.tensor(classes), n).permute(0, 3, 1, 2).float()


# -- LabelMix ------------------------------------------------------------------------------------

def test_labelmix_loss_and_images_by_hand():
    # One 2x2 image, classes [[0, 0], [1, 2]]; the coin sends class 0 to the real image.
    mask = torch.tensor([[[[1.0, 1.0], [0.0, 0.0]]]])
    real, fake = torch.full((1, 3, 2, 2), 0.5), torch.full((1, 3, 2, 2), -0.5)
    mixed = labelmix_images(mask, real, fake)
    assert mixed[0, :, 0].eq(0.5).all() and mixed[0, :, 1].eq(-0.5).all()
    # D outputs with N + 1 = 2 channels: real 1, fake 3 everywhere, mixed 2 everywhere.
    d_real, d_fake, d_mixed = torch.ones(1, 2, 2, 2), torch.full((1, 2, 2, 2), 3.0), torch.full((1, 2, 2, 2), 2.0)
    # target = M·1 + (1 − M)·3: 1 on the top row, 3 on the bottom; (2 − 1)² = (2 − 3)² = 1 at all 8 entries
    assert labelmix_loss(mask, d_mixed, d_real, d_fake).item() == pytest.approx(1.0)
    d_mixed = torch.tensor([[[[1.0, 1.0], [3.0, 3.0]], [[1.0, 2.0], [3.0, 5.0]]]])  # exact but for 2 entries
    assert labelmix_loss(mask, d_mixed, d_real, d_fake).item() == pytest.approx((1 + 4) / 8)


def test_labelmix_mask_gives_each_class_one_bit_and_both_bits_occur():
    t = onehot([[[0, 0, 1], [1, 2, 2]], [[2, 2, 0], [0, 1, 1]]], 3)
    seen = set()
    for seed in range(20):
        mask = labelmix_mask(t, torch.Generator().manual_seed(seed))
        assert mask.shape == (2, 1, 2, 3) and set(mask.unique().tolist()) <= {0.0, 1.0}
        classes = t.argmax(1, keepdim=True)
        for c in range(3):
            bits = mask[classes == c].unique()
            assert len(bits) == 1  # the whole class, in every image of the batch, on one side
            seen.add((c, bits.item()))
    assert seen == {(c, b) for c in range(3) for b in (0.0, 1.0)}


def test_oasis_d_step_adds_labelmix_and_lambda_zero_turns_it_off():
    on, off = make("oasis", lambda_labelmix=10.0), make("oasis", lambda_labelmix=0.0)
    batch = on.batch(0)
    fakes = on.fakes(batch)
    loss_on, logs_on = on.d_terms(batch, fakes)
    loss_off, logs_off = off.d_terms(batch, fakes)
    assert "loss/labelmix" in logs_on and "loss/labelmix" not in logs_off
    assert loss_on.item() == pytest.approx(loss_off.item() + 10.0 * float(logs_on["loss/labelmix"]), rel=1e-5)
    assert logs_on["loss/labelmix"] > 0


# -- class balance ---------------------------------------------------------------------------------

def test_class_balance_modes():
    t = onehot([[[0, 0], [0, 1]], [[0, 0], [1, 1]]], 3)  # counts 5, 3, 0 of 8 pixels
    oasis, raw, off = (balance_weights(t, m) for m in ("oasis", "unnormalised", "off"))
    assert raw.tolist() == pytest.approx([8 / 5, 8 / 3, 0.0])
    assert oasis.tolist() == pytest.approx((raw / 2).tolist())  # two classes present
    # OASIS's normalisation makes the pixel-averaged weight 1: the real term keeps CE's scale
    assert (oasis[t.argmax(1)].mean()).item() == pytest.approx(1.0)
    assert off.tolist() == [1.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="class balance"):
        balance_weights(t, "median")


@pytest.mark.parametrize("mode", ["oasis", "unnormalised", "off"])
def test_class_balance_knob_reaches_the_losses(mode):
    m = make("oasis", lambda_labelmix=0.0, train={"class_balance": mode})
    batch = m.batch(0)
    fakes = m.fakes(batch)
    loss, _ = m.d_terms(batch, fakes)
    with torch.no_grad():
        want = oasis_d_loss(m.d_c(batch["x_p"]), m.d_c(fakes["t_p"]), batch["t_p"],
                            balance_weights(batch["t_p"], mode))
    assert loss.item() == pytest.approx(want.item(), rel=1e-3)  # (spectral norm steps u per forward)
    semi = make("semipaired", train={"class_balance": mode})
    assert torch.equal(semi.class_weights(batch["t_p"]), balance_weights(batch["t_p"], mode))


def test_oasis_learning_rates_default_to_the_public_code():
    m = make("oasis")
    assert m.d_optim.param_groups[0]["lr"] == 4e-4 and m.g_optim.param_groups[0]["lr"] == 1e-4
    assert make("oasis", train={"lr_d": 1e-4}).d_optim.param_groups[0]["lr"] == 1e-4


def test_oasis_on_all_pairs_is_the_upper_bound_run():
    m = make("oasis", data={"ratio": 1.0})
    assert len(m.data.paired_labels) == 120 and len(m.data.unpaired_images) == 0
    assert torch.isfinite(torch.tensor(list(m.step().values()))).all()


# -- EMA generator ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["oasis", "semipaired", "usis", "tcr"])
def test_ema_is_a_lerp_of_g_and_is_what_generates(name):
    m = make(name, train={"ema_decay": 0.9, "ema_warmup": False})
    assert m.g_ema is not m.g
    before = [p.clone() for p in m.g_ema.parameters()]
    m.step()
    for e0, e, g in zip(before, m.g_ema.parameters(), m.g.parameters()):
        assert torch.allclose(e, 0.9 * e0 + 0.1 * g, atol=1e-6)
    labels = onehot([[[0] * 32] * 32, [[1] * 32] * 32], m.n)
    torch.manual_seed(1)
    out = m.generate(labels)
    m.g_ema.eval()
    torch.manual_seed(1)
    z = torch.randn(2, m.model.z_dim)
    with torch.no_grad():
        assert torch.allclose(out, m.g_ema(labels, z), atol=1e-6)
        m.g.eval()
        assert not torch.allclose(out, m.g(labels, z), atol=1e-3)  # G's own weights differ


def test_ema_warmup_follows_g_closely_early_and_reaches_the_decay():
    assert [warmup_decay(0.999, k) for k in (0, 90, 8990, 20000)] == pytest.approx([0.1, 0.91, 0.999, 0.999])
    m = make("oasis", train={"ema_decay": 0.999})  # warm-up on by default: step 0 uses decay 0.1
    before = [p.clone() for p in m.g_ema.parameters()]
    m.step()
    for e0, e, g in zip(before, m.g_ema.parameters(), m.g.parameters()):
        assert torch.allclose(e, 0.1 * e0 + 0.9 * g, atol=1e-6)


def test_ema_is_saved_restored_and_decay_zero_means_g_itself():
    m = make("oasis", train={"ema_decay": 0.5})
    for _ in range(2):
        m.step()
    state = m.state_dict()
    assert "g_ema" in state
    resumed = make("oasis", train={"ema_decay": 0.5})
    resumed.load_state_dict(state)
    for a, b in zip(m.g_ema.state_dict().values(), resumed.g_ema.state_dict().values()):
        assert torch.equal(a, b)
    old = {k: v for k, v in state.items() if k != "g_ema"}  # a checkpoint from before the EMA
    resumed.load_state_dict(old)
    assert all(torch.equal(a, b) for a, b in zip(resumed.g_ema.parameters(), m.g.parameters()))
    plain = make("oasis", train={"ema_decay": 0.0})
    assert plain.g_ema is plain.g


def test_ema_batchnorm_statistics_are_recomputed_once_per_step():
    m = make("oasis", train={"ema_decay": 0.9})
    m.step()
    bn = next(mod for mod in m.g_ema.modules() if isinstance(mod, torch.nn.BatchNorm2d))
    copied = bn.running_mean.clone()  # G's statistics, copied by the EMA update
    m.generate(onehot([[[0] * 32] * 32], m.n))
    assert m.ema_refreshed_at == 1 and not torch.equal(bn.running_mean, copied)
    refreshed = bn.running_mean.clone()
    m.generate(onehot([[[1] * 32] * 32], m.n))
    assert torch.equal(bn.running_mean, refreshed)  # same step: not recomputed


def test_refresh_batchnorm_averages_the_batches_and_restores_the_rng():
    net = torch.nn.BatchNorm2d(1)
    inputs = [torch.full((2, 1, 2, 2), 1.0), torch.full((2, 1, 2, 2), 3.0)]
    torch.manual_seed(5)
    want_next = torch.rand(1)
    torch.manual_seed(5)
    refresh_batchnorm(net, inputs, seed=0)
    assert net.running_mean.item() == pytest.approx(2.0)  # cumulative mean of the batch means
    assert torch.equal(torch.rand(1), want_next)


def test_refresh_is_idempotent_and_leaves_spectral_norm_alone():
    m = make("oasis", train={"ema_decay": 0.9})
    m.step()
    maps = m.refresh_label_maps()
    refresh_batchnorm(m.g_ema, maps, seed=1)
    first = {k: v.clone() for k, v in m.g_ema.state_dict().items()}
    refresh_batchnorm(m.g_ema, maps, seed=1)  # as `raygan eval` does on the saved g_ema
    for k, v in m.g_ema.state_dict().items():
        assert torch.equal(v, first[k]), k
    assert any(k.endswith("._u") for k in first)  # there is spectral norm (power-iteration vectors) to leave alone


def test_semipaired_labelmix_is_opt_in():
    off, on = make("semipaired"), make("semipaired", lambda_labelmix=10.0)
    batch = off.batch(0)
    fakes = off.fakes(batch)
    _, logs_off = off.d_terms(batch, fakes)
    loss_on, logs_on = on.d_terms(batch, fakes)
    assert "loss/labelmix" not in logs_off and float(logs_on["loss/labelmix"]) > 0
