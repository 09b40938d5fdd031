"""A real-layout run end to end, as a user runs it: a Cityscapes and an ADE20K folder in the
datasets' own naming, packed with `raygan data pack`, trained by `raygan train` (ADE20K on Ray,
the unpaired sets streaming through Ray Data; Cityscapes with --local, the same loop without
Ray: what is layout-specific is the packing, the classes and the scoring, not the Ray path),
scored by `raygan eval` with a TorchScript segmenter; a truncated image or an out-of-range
label id is a one-line error naming the file."""
import json
import re

import numpy as np
import pytest
from PIL import Image

from raygan.cli import main
from raygan.data.layouts import open_layout
from test_label_eval import ColourSegmenter, save_script
from test_layouts import make_ade20k, make_cityscapes

N_TRAIN, N_VAL = 12, 3   # r = 0.4: 3 pairs, 4 unpaired images, 4 unpaired label maps
STEPS, BATCH = 3, 2      # 3 steps over 4 unpaired rows at batch 2: the streams start a second epoch
# (layout, fixture maker, train / val split folder names, classes, an id outside the layout's range)
LAYOUTS = {"cityscapes": (make_cityscapes, "train", "val", 35, 34),
           "ade20k": (make_ade20k, "training", "validation", 151, 151)}

# The unpaired sets (a few KiB, under data.in_memory_mib) are read by Ray Data once into the
# object store and reach the Train worker as its streaming_split shards; streamed from the
# shards every epoch instead (in_memory_mib: 0) a step costs ~10 s on a busy 2-core machine.
EXPERIMENT = """\
name: {kind}
method: {{name: semipaired}}
data: {{dataset: packed, root: {root}, eval_root: {val}, segmenter: {seg}, shuffle_buffer: 4}}
model: {{g_base: 8, d_base: 8, z_dim: 8}}
train: {{steps: {steps}, batch_size: {batch}, eval_every: {steps}, eval_samples: 20, torch_threads: 1}}
scaling: {{cpus_per_worker: 0.5}}
output: {{dir: {out}}}
"""


def _pack(src, dst, kind, *args):
    return main(["data", "pack", str(src), str(dst), "--layout", kind, "--size", "32", *args])


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("kind, where", [("cityscapes", "local"), ("ade20k", "ray")])
def test_real_layout_packs_trains_and_evaluates(kind, where, request, tmp_path, capsys):
    make, train_split, val_split, n_classes, _ = LAYOUTS[kind]
    src = tmp_path / kind
    make(src, train_split, N_TRAIN)
    make(src, val_split, N_VAL)
    assert _pack(src, tmp_path / "train", kind, "--ratio", "0.4") == 0
    assert _pack(src, tmp_path / "val", kind, "--split", "val", "--ratio", "1") == 0
    split = json.loads((tmp_path / "train" / "split.json").read_text())
    assert (split["layout"], split["n_classes"], split["counts"]) == (
        kind, n_classes, {"paired": 3, "unpaired_images": 4, "unpaired_labels": 4})
    assert json.loads((tmp_path / "val" / "split.json").read_text())["counts"]["paired"] == N_VAL

    seg = save_script(ColourSegmenter(n_classes), tmp_path / f"{kind}_seg.pt")
    exp = tmp_path / f"{kind}.yaml"
    exp.write_text(EXPERIMENT.format(kind=kind, root=tmp_path / "train", val=tmp_path / "val", seg=seg,
                                     steps=STEPS, batch=BATCH, out=tmp_path / "out"))
    capsys.readouterr()
    if where == "ray":
        request.getfixturevalue("local_ray")
        assert main(["train", str(exp)]) == 0
        printed = capsys.readouterr().out
        final = dict(re.findall(r"(\S+)=(\S+)", printed.split("raygan: final metrics ")[1].splitlines()[0]))
        # every step drew one batch from each Ray Data stream (the only source of unpaired rows)
        assert float(final["data/streamed_rows"]) == STEPS * 2 * BATCH
    else:
        assert main(["train", str(exp), "--local"]) == 0
        last = [line for line in capsys.readouterr().out.splitlines() if f"] step={STEPS} " in line][-1]
        final = dict(re.findall(r"(\S+)=(\S+)", last))
    assert 0.0 <= float(final[f"miou_{kind}_seg"]) <= 1.0

    run = tmp_path / "out" / kind
    assert main(["eval", str(run), "--config", str(exp), "--samples", "20"]) == 0
    written = run / capsys.readouterr().out.split("scores with provenance in ")[1].strip()
    scores = json.loads(written.read_text())["scores"]
    assert [s["metric"] for s in scores] == [f"miou_{kind}_seg"]
    assert np.isfinite(scores[0]["value"]) and 0.0 <= scores[0]["value"] <= 1.0
    assert scores[0]["value"] == pytest.approx(float(final[f"miou_{kind}_seg"]), rel=1e-3)  # the run's own number
    assert scores[0]["samples"] == N_VAL and scores[0]["network"] == f"user segmenter {seg.name}"


def _files(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _one_line_error(capsys, *names):
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith("raygan: error: ") and all(str(n) in err for n in names), err
    return err


@pytest.mark.parametrize("kind", list(LAYOUTS))
def test_truncated_image_and_out_of_range_id_are_one_line_errors(kind, tmp_path, capsys):
    make, train_split, _, _, bad_id = LAYOUTS[kind]
    src, packs = tmp_path / kind, tmp_path / "packs"
    make(src, train_split, 4)
    assert _pack(src, packs / "good", kind, "--ratio", "1") == 0
    good = _files(packs / "good")
    pairs = open_layout(kind, src).pairs

    image = pairs[2][0]                                   # a .png (Cityscapes) or .jpg (ADE20K) cut in half
    intact = image.read_bytes()
    image.write_bytes(intact[: len(intact) // 2])
    assert _pack(src, packs / "new", kind, "--ratio", "1") == 2
    _one_line_error(capsys, image, "corrupt image", "expected a complete JPEG or PNG file")
    assert _pack(src, packs / "good", kind, "--ratio", "1") == 2   # onto the existing pack: refused, untouched
    _one_line_error(capsys, packs / "good", "not empty")
    image.write_bytes(intact)

    label = pairs[1][1]
    ids = np.array(Image.open(label))
    ids[3, 5] = bad_id
    Image.fromarray(ids).save(label)
    assert _pack(src, packs / "new", kind, "--ratio", "1") == 2
    err = _one_line_error(capsys, label, f"label values {bad_id} outside the {kind} id range")
    assert {"cityscapes": "expected labelIds 0..33", "ade20k": "expected 0..150"}[kind] in err

    # nothing half-written is left behind, and the pack made before is as it was
    assert sorted(p.name for p in packs.iterdir()) == ["good"]
    assert _files(packs / "good") == good
