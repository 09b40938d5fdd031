"""DCL's method wiring: G minimises λ1 L_CL1 + λ2 L_CL2 (Eq. 8); D's part in λ2 L_CL2 follows
`d_cl2` (none / min / max)."""
import dataclasses

import pytest
import torch

from raygan.methods.fewshot.sections import TrainConfig
from raygan.data.synthetic import few_shot_target
from raygan.methods.fewshot import dcl
from raygan.models.checkpoint import load_source
from raygan.methods.base import FewShotData


def make(**knobs):
    cfg = dataclasses.replace(dcl.Config(), **knobs)
    train = TrainConfig(batch_size=2)
    return dcl.Method(cfg, {"train": train}, FewShotData(load_source("embedded"), few_shot_target(32, 4)), seed=0)


def d_term(method):
    method.rng.seed(0)
    method.torch_rng.manual_seed(0)
    with torch.no_grad():
        loss, logs = method.d_extra(1)
    return loss.item(), logs.get("loss/cl2_d")


def test_d_side_of_l_cl2():
    agree, l_agree = d_term(make(lambda2=0.5, d_cl2="min"))
    oppose, l_oppose = d_term(make(lambda2=0.5, d_cl2="max"))
    assert l_agree == l_oppose > 0  # same nets, same draws: the same L_CL2
    assert agree == 0.5 * l_agree and oppose == -0.5 * l_oppose
    assert d_term(make(lambda2=0.5)) == (0.0, None)  # the default: L_adv alone trains D


def test_g_side_is_lambda1_l_cl1_plus_lambda2_l_cl2():
    """Both weights and signs: a sign or weight lost in the sum changes this at once (the
    collapse guard, tests/test_dcl_collapse_guard.py, did not notice G's λ2 term flipped)."""
    for lambda1, lambda2 in ((1.0, 0.0), (0.0, 1.0), (2.0, 0.5)):
        method = make(lambda1=lambda1, lambda2=lambda2)
        method.rng.seed(0)
        method.torch_rng.manual_seed(0)
        with torch.no_grad():
            loss, logs = method.g_extra(1)
        assert logs["loss/cl1"] > 0 and logs["loss/cl2_g"] > 0
        assert loss.item() == pytest.approx(lambda1 * logs["loss/cl1"].item() + lambda2 * logs["loss/cl2_g"].item(),
                                            rel=1e-6)


def test_one_step_runs_and_logs_both_terms():
    logs = make().step()
    assert {"loss/cl1", "loss/cl2_g", "loss/d_adv", "loss/g_adv"} <= logs.keys() and "loss/cl2_d" not in logs
    assert "loss/cl2_d" in make(d_cl2="min").step()
