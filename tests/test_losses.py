"""Each loss against a hand-computed case or a slow reference loop."""
import math

import torch
import torch.nn.functional as F

from raygan.losses.adversarial import d_nonsaturating, g_nonsaturating, path_length_penalty, r1_penalty
from raygan.losses.contrastive import discriminator_infonce, generator_infonce, per_sample


def test_generator_infonce_hand_case():
    t = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    s = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    tau, r = 0.5, 1 / math.sqrt(2)
    # row 0: cos(t0,s0)=1, cos(t0,s1)=r; row 1: cos(t1,s0)=0, cos(t1,s1)=r
    l0 = -math.log(math.exp(1 / tau) / (math.exp(1 / tau) + math.exp(r / tau)))
    l1 = -math.log(math.exp(r / tau) / (math.exp(0) + math.exp(r / tau)))
    assert abs(generator_infonce(t, s, tau).item() - (l0 + l1) / 2) < 1e-6


def test_generator_infonce_slow_reference():
    torch.manual_seed(0)
    t, s, tau = torch.randn(5, 7), torch.randn(5, 7), 0.07
    f = lambda a, b: math.exp(F.cosine_similarity(a, b, dim=0).item() / tau)
    ref = sum(-math.log(f(t[i], s[i]) / sum(f(t[i], s[j]) for j in range(5))) for i in range(5)) / 5
    assert abs(generator_infonce(t, s, tau).item() - ref) < 1e-4 * max(1, ref)


def test_discriminator_infonce_hand_case():
    d, s = torch.tensor([[1.0, 0.0]]), torch.tensor([[2.0, 0.0]])
    x = torch.tensor([[0.0, 1.0], [1.0, 1.0]])
    tau = 0.2
    pos = math.exp(1 / tau)
    expected = -math.log(pos / (pos + math.exp(0) + math.exp((1 / math.sqrt(2)) / tau)))
    assert abs(discriminator_infonce(d, s, x, tau).item() - expected) < 1e-5


def test_discriminator_infonce_slow_reference_and_gradient_direction():
    torch.manual_seed(1)
    d, s, x, tau = torch.randn(4, 6, requires_grad=True), torch.randn(4, 6), torch.randn(3, 6), 0.1
    f = lambda a, b: math.exp(F.cosine_similarity(a, b, dim=0).item() / tau)
    ref = 0.0
    for i in range(4):
        pos = f(d[i].detach(), s[i])
        ref += -math.log(pos / (pos + sum(f(d[i].detach(), x[j]) for j in range(3))))
    loss = discriminator_infonce(d, s, x, tau)
    assert abs(loss.item() - ref / 4) < 1e-4
    loss.backward()  # moving d towards s lowers the loss
    moved = d.detach() - 0.01 * d.grad
    assert discriminator_infonce(moved, s, x, tau) < loss


def test_per_sample_pooling():
    f = torch.arange(2 * 3 * 2 * 2, dtype=torch.float).reshape(2, 3, 2, 2)
    assert per_sample(f).shape == (2, 12)
    assert torch.allclose(per_sample(f, "gap"), f.mean((2, 3)))


def test_nonsaturating_hand_values():
    zero = torch.zeros(3)
    assert abs(d_nonsaturating(zero, zero).item() - 2 * math.log(2)) < 1e-6
    logit = torch.tensor([2.0])
    assert abs(g_nonsaturating(logit).item() - math.log(1 + math.exp(-2))) < 1e-6


def test_r1_of_linear_discriminator_is_squared_weight_norm():
    w = torch.tensor([1.0, -2.0, 0.5])
    x = torch.randn(4, 3, requires_grad=True)
    assert abs(r1_penalty(x @ w, x).item() - (w @ w).item()) < 1e-6


def test_path_length_of_linear_generator_matches_reference():
    torch.manual_seed(0)
    m = torch.randn(6, 3 * 2 * 2)  # image = w @ m per W+ layer, summed over layers
    latents = torch.randn(2, 4, 6, requires_grad=True)
    images = (latents @ m).sum(1).reshape(2, 3, 2, 2)
    torch.manual_seed(5)
    pen, new_mean, length = path_length_penalty(images, latents, torch.tensor(0.0), decay=0.5)
    torch.manual_seed(5)
    y = torch.randn(2, 3, 2, 2) / math.sqrt(4)
    jty = y.reshape(2, -1) @ m.T  # the same for every layer
    ref = jty.pow(2).sum(1).sqrt()  # mean over layers of identical values
    assert torch.allclose(length, ref.mean(), atol=1e-5)
    mean = 0.5 * ref.mean()
    assert torch.allclose(new_mean, mean, atol=1e-5)
    assert torch.allclose(pen, (ref - mean).pow(2).mean(), atol=1e-5)
