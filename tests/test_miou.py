import math

import numpy as np
import pytest
import torch

from raygan.data import scenes as S
from raygan.metrics import miou as M
from raygan.evaluation.label_scoring import SceneEvaluator

torch.set_num_threads(1)

TEST_STEPS = 80        # ~6 s on one thread; held-out mIoU ~0.69 (the full recipe: ~0.95)
N_EVAL, N_REF = 200, 400
PROGRESS = "training the scene segmenter"


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("raygan_cache")


@pytest.fixture(scope="module")
def net(cache_dir):
    return M.load_segnet(32, cache_dir=cache_dir, steps=TEST_STEPS)


@pytest.fixture(scope="module")
def evaluator(net, cache_dir):
    return SceneEvaluator(N_EVAL, 32, seed=0, net=net, cache_dir=cache_dir, n_reference=N_REF)


# ---- confusion / mIoU -------------------------------------------------------------------------

def test_confusion_and_miou_hand_example():
    target = torch.tensor([[0, 0, 1], [1, 1, 0]])
    pred = torch.tensor([[0, 1, 1], [1, 3, 0]])
    conf = M.confusion(pred, target, 4)
    assert conf.dtype == torch.long
    assert conf.tolist() == [[2, 1, 0, 0],      # rows: true class, columns: predicted class
                             [0, 2, 0, 1],
                             [0, 0, 0, 0],
                             [0, 0, 0, 0]]
    mean, iou = M.miou(conf)
    assert iou[0].item() == pytest.approx(2 / 3)            # 2 / (3 + 2 - 2)
    assert iou[1].item() == pytest.approx(1 / 2)            # 2 / (3 + 3 - 2)
    assert math.isnan(iou[2].item())                        # absent from both: excluded
    assert iou[3].item() == 0.0                             # only predicted: IoU 0, included
    assert mean == pytest.approx((2 / 3 + 1 / 2 + 0) / 3)


def test_confusion_ignores_out_of_range_targets_and_checks_predictions():
    target = torch.tensor([[0, 255], [1, -1]])
    pred = torch.tensor([[0, 1], [1, 1]])
    assert M.confusion(pred, target, 2).tolist() == [[1, 0], [0, 1]]
    assert M.miou(M.confusion(pred, target, 2))[0] == 1.0
    with pytest.raises(ValueError):
        M.confusion(torch.tensor([2]), torch.tensor([0]), 2)
    assert math.isnan(M.miou(torch.zeros(3, 3, dtype=torch.long))[0])


# ---- SegNet -----------------------------------------------------------------------------------

def test_segnet_beats_chance_on_held_out_scenes(net):
    x, y = S.held_out(150, 32, seed=3)
    pred = M.segment(x, net, batch=64)
    assert pred.shape == (150, 32, 32) and pred.dtype == torch.long
    assert not net.training
    mean, iou = M.miou(M.confusion(pred, y, S.N_CLASSES))
    assert mean > 0.3, iou
    logits, feats = net(x[:4], return_feats=True)
    assert logits.shape == (4, S.N_CLASSES, 32, 32)
    assert net.features(x[:4]).shape == (4, net.feature_dim)


def test_segnet_cache_reloads_without_training(net, cache_dir, capsys):
    path = cache_dir / f"segnet_32px_{M.VERSION}_{TEST_STEPS}steps.pt"
    assert path.is_file()
    again = M.load_segnet(32, cache_dir=cache_dir, steps=TEST_STEPS)
    assert PROGRESS not in capsys.readouterr().out          # loaded, not retrained
    for (k, a), b in zip(net.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), k
    assert not again.training


def test_segnet_corrupt_cache_retrains(tmp_path, capsys):
    path = tmp_path / f"segnet_32px_{M.VERSION}_3steps.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.warns(UserWarning, match="unusable"):
        M.load_segnet(32, cache_dir=tmp_path, steps=3)
    assert f"{PROGRESS} (cached after the first run): step 3/3" in capsys.readouterr().out
    M.load_segnet(32, cache_dir=tmp_path, steps=3)            # the rewritten file loads
    assert PROGRESS not in capsys.readouterr().out


def test_reference_stats_cached(net, cache_dir):
    mu, sigma = M.scene_reference_stats(net, 32, N_REF, cache_dir=cache_dir)
    assert mu.shape == (net.feature_dim,) and sigma.shape == (net.feature_dim, net.feature_dim)
    files = list(cache_dir.glob(f"ref_scenes_segnet_32px_{N_REF}_*.npz"))
    assert len(files) == 1
    mu2, sigma2 = M.scene_reference_stats(net, 32, N_REF, cache_dir=cache_dir)
    assert np.array_equal(mu, mu2) and np.array_equal(sigma, sigma2)


# ---- SceneEvaluator ---------------------------------------------------------------------------

def _oracle(ev):
    """generate() that returns the real held-out image of each label map (a cheat)."""
    index = {lab.numpy().tobytes(): i for i, lab in enumerate(ev.labels)}

    def generate(onehot):
        ids = [index[lab.numpy().tobytes()] for lab in onehot.argmax(1).cpu()]
        return ev.real_images[ids]
    return generate


def test_evaluator_oracle_colorize_and_noise(evaluator):
    ev = evaluator
    assert ev.labels.shape == (N_EVAL, 32, 32) and ev.real_images.shape == (N_EVAL, 3, 32, 32)
    oracle = ev.metrics(_oracle(ev))
    assert set(oracle) == {M.MIOU_NAME, M.FD_NAME, M.RARE_NAME}
    assert oracle[M.MIOU_NAME] == pytest.approx(ev.real_miou(), abs=1e-12)
    flat = ev.metrics(lambda onehot: S.colorize(onehot.argmax(1)))
    noise = ev.metrics(lambda onehot: torch.rand(len(onehot), 3, *onehot.shape[-2:]) * 2 - 1)
    assert 0 <= oracle[M.FD_NAME] < 0.2 * flat[M.FD_NAME], (oracle, flat)
    assert noise[M.MIOU_NAME] < oracle[M.MIOU_NAME] - 0.2, (noise, oracle)
    assert noise[M.FD_NAME] > 5 * oracle[M.FD_NAME]


def test_evaluator_fixed_noise_and_rng_untouched(evaluator):
    calls = []

    def generate(onehot):
        calls.append(onehot.shape)
        assert onehot.dtype == torch.float32 and torch.all(onehot.sum(1) == 1)
        return torch.randn(len(onehot), 3, *onehot.shape[-2:]).clamp(-1, 1)

    state = torch.get_rng_state()
    a, b = evaluator.metrics(generate), evaluator.metrics(generate)
    assert a == b
    assert torch.equal(torch.get_rng_state(), state)
    assert calls[0] == (min(evaluator.batch, N_EVAL), S.N_CLASSES, 32, 32)


def test_evaluator_grid(evaluator):
    g = evaluator.grid(_oracle(evaluator), n=8)
    assert g.shape == (3, 3 * 33 + 1, 8 * 33 + 1)
    assert g.min() >= 0 and g.max() <= 1
    # second row (real images) equals the third (oracle-generated) row
    assert torch.equal(g[:, 34:67], g[:, 67:100])
