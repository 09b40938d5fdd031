"""Label-to-image evaluation with the user's own segmenter on a packed held-out split."""
import numpy as np
import pytest
import torch
import torch.nn as nn

from raygan.data.semipaired import pack
from raygan.errors import UserError
from raygan.evaluation.label_scoring import LabelMapEvaluator, load_segmenter, packed_evaluator
from raygan.search_space import typed
from test_layouts import make_cityscapes


class ColourSegmenter(nn.Module):
    """Predicts class c where the red channel is closest to the level of class c: an exact
    inverse of `colour_generator`, so a perfect generator scores mIoU 1."""

    def __init__(self, n_classes: int):
        super().__init__()
        self.register_buffer("levels", torch.linspace(-1, 1, n_classes))

    def forward(self, x):
        return -(x[:, :1] - self.levels.view(1, -1, 1, 1)).abs()


def colour_generator(n_classes: int):
    levels = torch.linspace(-1, 1, n_classes)
    return lambda onehot: (levels.view(1, -1, 1, 1) * onehot).sum(1, keepdim=True).expand(-1, 3, -1, -1)


def save_script(module, path):
    torch.jit.save(torch.jit.script(module), str(path))
    return path


def slow_miou(pred, target, n_classes, ignore):
    """Per-class IoU accumulated over all pixels by loops; classes absent from target and
    prediction skipped; `ignore` pixels of the target left out."""
    ious = []
    for c in range(n_classes):
        inter = union = 0
        for p, t in zip(pred.reshape(-1).tolist(), target.reshape(-1).tolist()):
            if t == ignore:
                continue
            inter += (p == c and t == c)
            union += (p == c or t == c)
        if union:
            ious.append(inter / union)
    return float(np.mean(ious))


@pytest.fixture(scope="module")
def city_val(tmp_path_factory):
    d = tmp_path_factory.mktemp("city")
    make_cityscapes(d / "src", "val")
    pack(str(d / "src"), d / "val", layout="cityscapes", ratio=1.0, size=16, split="val")
    return d


def test_perfect_generator_scores_one_and_dontcare_is_ignored(city_val):
    seg = save_script(ColourSegmenter(35), city_val / "colours.pt")
    ev = packed_evaluator(city_val / "val", seg, n_samples=2)
    assert ev.miou_name == "miou_colours"
    assert ev.metrics(colour_generator(35)) == {"miou_colours": pytest.approx(1.0)}
    # A generator that paints every pixel as class 7 (road): compare with the slow reference,
    # which leaves the don't-care class 0 out of the target.
    road = lambda onehot: colour_generator(35)(torch.nn.functional.one_hot(  # noqa: E731
        torch.full(onehot.shape[:1] + onehot.shape[2:], 7), 35).permute(0, 3, 1, 2).float())
    got = ev.metrics(road)["miou_colours"]
    assert got == pytest.approx(slow_miou(torch.full_like(ev.labels, 7), ev.labels, 35, ignore=0))
    assert got != pytest.approx(slow_miou(torch.full_like(ev.labels, 7), ev.labels, 35, ignore=-1))


class Coarse(nn.Module):
    """Logits at a quarter of the input resolution: class 1 on the left half, 0 on the right."""

    def forward(self, x):
        logits = torch.zeros(x.shape[0], 2, x.shape[2] // 4, x.shape[3] // 4)
        logits[:, 1] = -1
        logits[:, 1, :, : logits.shape[3] // 2] = 1
        return logits


def test_low_resolution_logits_are_upsampled_to_the_labels(tmp_path):
    segment = load_segmenter(save_script(Coarse(), tmp_path / "coarse.pt"), 2, 8)
    ids = segment(torch.zeros(3, 3, 8, 8))
    assert ids.shape == (3, 8, 8)
    assert (ids[:, :, :4] == 1).all() and (ids[:, :, 4:] == 0).all()
    ev = LabelMapEvaluator(ids, torch.zeros(3, 3, 8, 8), segment, 2, "m")
    assert ev.real_miou() == pytest.approx(1.0)


def test_torch_export_programs_load(tmp_path):
    batch = torch.export.Dim("batch")
    program = torch.export.export(ColourSegmenter(8), (torch.zeros(2, 3, 16, 16),), dynamic_shapes={"x": {0: batch}})
    torch.export.save(program, str(tmp_path / "exported.pt2"))
    segment = load_segmenter(tmp_path / "exported.pt2", 8, 16)
    labels = torch.randint(0, 8, (5, 16, 16))
    onehot = torch.nn.functional.one_hot(labels, 8).permute(0, 3, 1, 2).float()
    assert torch.equal(segment(colour_generator(8)(onehot)), labels)
    with pytest.raises(UserError, match="not a working segmenter for 32x32 images"):
        load_segmenter(tmp_path / "exported.pt2", 8, 32)  # exported for 16 px only


def test_bad_segmenters_are_one_line_errors(tmp_path):
    with pytest.raises(UserError, match="segmenter not found"):
        load_segmenter(tmp_path / "missing.pt", 35, 16)
    (tmp_path / "junk.pt").write_bytes(b"not a torchscript archive")
    with pytest.raises(UserError, match="not a working segmenter for 16x16 images"):
        load_segmenter(tmp_path / "junk.pt", 35, 16)
    with pytest.raises(UserError, match=r"expected logits \[B, 35, h, w\]"):
        load_segmenter(save_script(ColourSegmenter(8), tmp_path / "eight.pt"), 35, 16)


def _cfg(**data):
    return {"method": {"name": "semipaired"}, "data": {"size": 32, **data},
            "train": {"steps": 2, "eval_samples": 20}}


def test_experiment_scores_with_the_users_segmenter(tmp_path):
    from raygan.train.loop import build_method
    from raygan.families import labelgen

    pack("scenes", tmp_path / "val", ratio=1.0, n_train=6, size=32, seed=3)
    seg = save_script(ColourSegmenter(8), tmp_path / "mine.pt")
    cfg = _cfg(eval_root=str(tmp_path / "val"), segmenter=str(seg))
    t, method, _ = build_method(cfg)
    labelgen.prepare(t, ["semipaired"], "exp.yaml")
    scores = labelgen.Evaluation(t, method).metrics(method)
    assert set(scores) == {"miou_mine"} and 0.0 <= scores["miou_mine"] <= 1.0


def test_experiment_bad_eval_settings(tmp_path, city_val):
    with pytest.raises(UserError, match="eval_root and data.segmenter go together"):
        typed(_cfg(eval_root=str(city_val / "val")))
    seg = save_script(ColourSegmenter(35), tmp_path / "c.pt")
    t = typed(_cfg(eval_root=str(city_val / "val"), segmenter=str(seg)))
    from raygan.families import labelgen

    with pytest.raises(UserError, match="35 classes at 16 px; the training data has 8 at 32 px"):
        labelgen.prepare(t, ["semipaired"], "exp.yaml")
    t = typed(_cfg(dataset="packed", root=str(city_val / "val")))
    with pytest.raises(UserError, match="no unpaired part"):
        labelgen.prepare(t, ["semipaired"], "exp.yaml")


def test_raygan_eval_rebuilds_a_label_to_image_trial_and_matches_its_score(tmp_path, capsys):
    import json

    from raygan.cli import main
    from raygan.orchestrate.local import train_local
    from raygan.search_space import load_experiment

    pack("scenes", tmp_path / "val", ratio=1.0, n_train=24, size=32, seed=3)
    seg = save_script(ColourSegmenter(8), tmp_path / "colours.pt")
    (tmp_path / "exp.yaml").write_text(
        f"name: tiny\nmethod: {{name: semipaired}}\n"
        f"data: {{n_train: 40, eval_root: {tmp_path / 'val'}, segmenter: {seg}}}\n"
        "model: {g_base: 8, d_base: 8, z_dim: 8}\n"
        "train: {steps: 2, eval_every: 2, eval_samples: 20, batch_size: 2, torch_threads: 1}\n")
    trained = train_local(load_experiment(tmp_path / "exp.yaml"), tmp_path / "out")
    checkpoint = tmp_path / "out" / "checkpoint.pt"

    assert main(["eval", str(checkpoint)]) == 2  # outside a run folder it needs the experiment file
    assert "pass --config" in capsys.readouterr().err
    assert main(["eval", str(checkpoint), "--metrics", "fid"]) == 2
    assert "scored with its trial's own evaluation (miou)" in capsys.readouterr().err

    assert main(["eval", str(checkpoint), "--config", str(tmp_path / "exp.yaml"), "--samples", "20"]) == 0
    out = capsys.readouterr().out
    written = tmp_path / "out" / out.split("scores with provenance in ")[1].strip()
    scores = json.loads(written.read_text())["scores"]
    assert [s["metric"] for s in scores] == ["miou_colours"]
    assert scores[0]["value"] == pytest.approx(trained["miou_colours"])  # the trial's own number, recomputed
    assert scores[0]["network"] == "user segmenter colours.pt" and scores[0]["samples"] == 20
