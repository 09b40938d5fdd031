"""Rare-class sampling of the paired set (METHODS.md, "Semi-paired label-to-image")."""
from fractions import Fraction as Fr

import numpy as np
import pytest
import torch

from raygan.data.rare_classes import RareClassSampler, class_pixel_counts, rare_class_weights

# three 2x2 label maps, 3 classes; map 2 holds the only pixel of class 2
LABELS = torch.tensor([[[0, 0], [0, 0]],
                       [[0, 0], [1, 1]],
                       [[0, 1], [1, 2]]])
# n_k = (4,0,0), (2,2,0), (1,2,1); N = (7, 4, 1)
P_SUM = [Fr(4, 7), Fr(2, 7) + Fr(2, 4), Fr(1, 7) + Fr(2, 4) + Fr(1, 1)]
P_MAX = [Fr(4, 7), max(Fr(2, 7), Fr(2, 4)), max(Fr(1, 7), Fr(2, 4), Fr(1, 1))]
EXPECTED = {mode: [float(p / sum(ps)) for p in ps] for mode, ps in (("sum", P_SUM), ("max", P_MAX))}
UNIFORM = 1 / 3
DRAWS = 2000
# binomial sd of a frequency near 1/2 over 2000 draws is ~0.011; 0.05 is > 4 sd, while the
# rare map's probability (0.548) is 0.21 away from uniform, so neither check can pass for the other
TOL = 0.05


def test_counts_and_probabilities_by_hand():
    assert class_pixel_counts(LABELS, 3).tolist() == [[4, 0, 0], [2, 2, 0], [1, 2, 1]]
    assert sum(P_SUM) == 3  # "sum": each present class contributes 1 in total
    for mode in ("sum", "max"):
        p = rare_class_weights(LABELS, 3, mode=mode)
        assert p.tolist() == pytest.approx(EXPECTED[mode], rel=1e-12)
        assert p.sum().item() == pytest.approx(1.0)
    assert EXPECTED["max"] == pytest.approx([8 / 29, 7 / 29, 14 / 29])
    # numpy input, an extra (absent) class and an ignore label change nothing
    with_ignore = np.concatenate([LABELS.numpy(), np.full((3, 2, 1), 255)], axis=2)
    assert rare_class_weights(with_ignore, 5).tolist() == pytest.approx(EXPECTED["sum"])
    with pytest.raises(ValueError):
        rare_class_weights(LABELS, 3, mode="mean")


def frequencies(sampler, steps, batch=8):
    idx = torch.cat([sampler.indices(s, batch) for s in steps])
    assert idx.dtype == torch.long and len(idx) == DRAWS
    return torch.bincount(idx, minlength=3).double() / len(idx)


FIRST = range(0, DRAWS // 8)            # steps 0..249 of 1000
SECOND = range(500, 500 + DRAWS // 8)   # steps 500..749


@pytest.mark.parametrize("mode", ["sum", "max"])
def test_first_phase_rare_then_uniform(mode):
    s = RareClassSampler(LABELS, 3, total_steps=1000, phase="first", mode=mode, seed=1)
    assert s.rare_active(0) and s.rare_active(499) and not s.rare_active(500)
    f = frequencies(s, FIRST)
    assert f.tolist() == pytest.approx(EXPECTED[mode], abs=TOL)
    assert f[2] > UNIFORM + TOL
    g = frequencies(s, SECOND)
    assert g.tolist() == pytest.approx([UNIFORM] * 3, abs=TOL)


def test_second_phase_is_the_reverse():
    s = RareClassSampler(LABELS, 3, total_steps=1000, phase="second", seed=2)
    assert frequencies(s, FIRST).tolist() == pytest.approx([UNIFORM] * 3, abs=TOL)
    f = frequencies(s, SECOND)
    assert f.tolist() == pytest.approx(EXPECTED["sum"], abs=TOL) and f[2] > UNIFORM + TOL


def test_off_is_uniform_throughout():
    s = RareClassSampler(LABELS, 3, total_steps=1000, phase="off", seed=3)
    for steps in (FIRST, SECOND):
        assert frequencies(s, steps).tolist() == pytest.approx([UNIFORM] * 3, abs=TOL)
    with pytest.raises(ValueError):
        RareClassSampler(LABELS, 3, total_steps=10, phase="middle")


def test_deterministic_from_seed():
    def stream(seed):
        s = RareClassSampler(LABELS, 3, total_steps=20, seed=seed)
        return torch.cat([s.indices(step, 4) for step in range(20)])

    assert torch.equal(stream(5), stream(5))
    assert not torch.equal(stream(5), stream(6))


def test_state_dict_round_trip_resumes_the_stream():
    a = RareClassSampler(LABELS, 3, total_steps=20, seed=9)
    for step in range(7):
        a.indices(step, 4)
    state = a.state_dict()
    rest = torch.cat([a.indices(step, 4) for step in range(7, 20)])  # crosses the half-way switch
    b = RareClassSampler(LABELS, 3, total_steps=20, seed=0)
    b.load_state_dict(state)
    assert torch.equal(torch.cat([b.indices(step, 4) for step in range(7, 20)]), rest)
