"""DCL's method wiring: the L_CL2 sign on the D side follows `d_maximizes_cl2`."""
import dataclasses

import torch

from raygan.config import TrainConfig
from raygan.data.synthetic import few_shot_target
from raygan.methods import dcl
from raygan.models.checkpoint import load_source


def make(**knobs):
    cfg = dataclasses.replace(dcl.Config(), **knobs)
    train = TrainConfig(batch_size=2)
    return dcl.Method(cfg, train, load_source("embedded"), few_shot_target(32, 4), seed=0)


def d_term(method):
    z, noise = method.sample_z(2, 1), method.sample_noise(2)
    with torch.no_grad():
        fake, _ = method.g([z], noise=noise)
        method.rng.seed(0)
        loss, logs = method.d_extra(z, noise, fake, method.discriminate(fake, 1), None, 1)
    return loss.item(), logs["loss/cl2_d"]


def test_d_side_sign_of_l_cl2():
    agree, l_agree = d_term(make(lambda2=0.5))
    oppose, l_oppose = d_term(make(lambda2=0.5, d_maximizes_cl2=True))
    assert l_agree == l_oppose > 0  # same nets, same draws: the same L_CL2
    assert agree == 0.5 * l_agree and oppose == -0.5 * l_oppose


def test_one_step_runs_and_logs_both_terms():
    logs = make().step()
    assert {"loss/cl1", "loss/cl2_g", "loss/cl2_d", "loss/d_adv", "loss/g_adv"} <= logs.keys()
