"""Bad input through the real CLI (`raygan.cli.main`, in-process): exit code 2, exactly one line
`raygan: error: <file>: <what was expected>` on stderr, no traceback, Ray never started, and
nothing in the test folder created, changed or removed. Each case is a row of the README's
"When the input is wrong" table; YAML mistakes of the experiment file are in test_config.py.
"""
import os
import pickle
import shutil
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image

from raygan.cli import main
from raygan.data.layouts import open_layout
from raygan.models.stylegan2 import Discriminator, Generator
from test_layouts import MAKERS

DCL = "method: {name: dcl, tau: {uniform: [0.03, 0.3]}}\n"
CASES = {}  # name -> build(tmp, packed) -> (argv, where, expected)


def case(fn):
    CASES[fn.__name__] = fn
    return fn


def write(tmp, name, text):
    (tmp / name).write_text(textwrap.dedent(text))
    return name


def snapshot(root):
    """Every file's bytes and every folder under root."""
    out = {}
    for d, dirs, files in os.walk(root):
        for name in dirs:
            out[os.path.relpath(os.path.join(d, name), root)] = "<dir>"
        for name in files:
            p = os.path.join(d, name)
            with open(p, "rb") as f:
                out[os.path.relpath(p, root)] = f.read()
    return out


# ---- experiment YAML (the 18 kinds of test_config.py are not repeated here) ---------------------

@case
def yaml_duplicate_key(tmp, packed):
    path = write(tmp, "dup.yaml", DCL + "train: {steps: 3}\ntrain: {steps: 30}\n")
    return ["tune", path], path, "duplicate key 'train'"


@case
def yaml_not_utf8(tmp, packed):
    (tmp / "latin1.yaml").write_bytes("method: {name: dcl}  # caf\xe9\n".encode("latin-1"))
    return ["tune", "latin1.yaml"], "latin1.yaml", "not UTF-8 text"


@case
def rssa_per_layer_list_wrong_length(tmp, packed):
    path = write(tmp, "rssa.yaml", "method: {name: rssa, compression_alpha: [0, 0.5, 0.9], alpha: {uniform: [0.5, 1]}}\n")
    return ["tune", path], path, "method.compression_alpha: expected 8 values (one per W+ layer"


# ---- checkpoints (model.checkpoint) --------------------------------------------------------------

def _with_checkpoint(tmp, ck):
    return write(tmp, "ck.yaml", DCL + f"model: {{checkpoint: {ck}}}\n")


@case
def checkpoint_wrong_architecture(tmp, packed):
    torch.save({"g_ema": Discriminator(32, channel_max=32).state_dict()}, tmp / "d.pt")  # a D where G belongs
    return ["tune", _with_checkpoint(tmp, "d.pt")], "d.pt", "not a StyleGAN2 checkpoint this code can build"


@case
def checkpoint_truncated(tmp, packed):
    torch.save({"g_ema": Generator(32, style_dim=32, n_mlp=2, channel_max=32).state_dict()}, tmp / "g.pt")
    data = (tmp / "g.pt").read_bytes()
    (tmp / "g.pt").write_bytes(data[: len(data) // 2])
    return ["train", "--local", _with_checkpoint(tmp, "g.pt")], "g.pt", "corrupt, truncated or not a torch checkpoint"


@case
def checkpoint_not_a_checkpoint(tmp, packed):
    Image.new("RGB", (8, 8)).save(tmp / "photo.png")
    shutil.move(tmp / "photo.png", tmp / "photo.pt")
    return ["train", _with_checkpoint(tmp, "photo.pt")], "photo.pt", "corrupt, truncated or not a torch checkpoint"


class Payload:
    """Unpickling this calls open(path, "w"): proof that loading ran code."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _live_payload(tmp, name, save, unsafe_load):
    """A checkpoint whose unpickling creates tmp/PWNED; shown to work with an unsafe loader first."""
    sentinel = tmp / "PWNED"
    save({"g_ema": Payload(sentinel)}, tmp / name)
    unsafe_load(tmp / name)["g_ema"].close()
    assert sentinel.is_file()
    sentinel.unlink()
    return ["tune", _with_checkpoint(tmp, name)], name, "refused: not a plain weights file"


@case
def checkpoint_pickle_payload(tmp, packed):
    return _live_payload(tmp, "evil.pt", lambda obj, path: path.write_bytes(pickle.dumps(obj)),
                         lambda path: pickle.loads(path.read_bytes()))


@case
def checkpoint_pickle_payload_in_torch_zip(tmp, packed):
    return _live_payload(tmp, "evil_zip.pt", torch.save, lambda path: torch.load(path, weights_only=False))


# ---- results folder --------------------------------------------------------------------------------

@case
def results_dir_not_writable(tmp, packed):
    # chmod does not stop root (the tests run as root in CI); a path below a regular file
    # cannot be created by anyone, which is the same refusal from mkdir's side.
    (tmp / "afile").write_text("keep")
    path = write(tmp, "ok.yaml", DCL)
    return ["tune", path, "--output", "afile/results"], path, "afile/results is not writable (" \
        f"{tmp.resolve() / 'afile'}: not a folder)"


@case
def results_dir_is_a_file(tmp, packed):
    (tmp / "out").mkdir()
    (tmp / "out" / "ok").write_text("keep")
    path = write(tmp, "ok.yaml", DCL)
    return ["tune", path, "--output", "out"], path, "ok is a file; expected the results folder of 'ok'"


@case
def train_results_dir_is_a_file(tmp, packed):
    (tmp / "out").mkdir()
    (tmp / "out" / "ok").write_text("keep")
    path = write(tmp, "ok.yaml", DCL)
    return ["train", "--local", path, "--output", "out"], path, "is a file, not a results folder"


@case
def pretrain_init_of_another_kind(tmp, packed):
    torch.save({"g_ema": Generator(32, style_dim=32, n_mlp=2, channel_max=32).state_dict()}, tmp / "g.pt")
    return ["pretrain", "--init", "g.pt", "--out", "new.pt", "--steps", "1"], "g.pt", \
        "no 'g': expected a checkpoint written by `raygan pretrain`"


@case
def results_dir_already_holds_results(tmp, packed):
    (tmp / "out" / "ok").mkdir(parents=True)
    (tmp / "out" / "ok" / "results.csv").write_text("earlier results")
    path = write(tmp, "ok.yaml", DCL)
    return ["tune", path, "--output", "out"], path, "results for 'ok' already exist in"


@case
def results_dir_from_another_experiment(tmp, packed):
    exp_dir = tmp / "out" / "ok"
    exp_dir.mkdir(parents=True)
    (exp_dir / "experiment.yaml").write_text(
        "name: ok\nmethod: {name: tgan}\ntrain: {lr: {uniform: [0.001, 0.01]}}\n")
    (exp_dir / "experiment_state-2026-01-01_00-00-00.json").write_text("{}")
    path = write(tmp, "ok.yaml", DCL)
    return ["tune", path, "--output", "out", "--resume"], path, \
        "holds the search of another experiment"


@case
def results_dir_tune_state_without_marker(tmp, packed):
    (tmp / "out" / "ok").mkdir(parents=True)
    (tmp / "out" / "ok" / "experiment_state-2026-01-01_00-00-00.json").write_text("{}")
    path = write(tmp, "ok.yaml", DCL)
    return ["tune", path, "--output", "out", "--resume"], path, "holds a Tune search without experiment.yaml"


# ---- packed datasets (data: {dataset: packed, root: ...}) -----------------------------------------

def _packed_space(tmp, root="packed"):
    return write(tmp, "sp.yaml", f"method: {{name: semipaired, lambda_u: {{uniform: [0.5, 1]}}}}\n"
                                 f"data: {{dataset: packed, root: {root}}}\n")


@case
def packed_root_missing(tmp, packed):
    return ["tune", _packed_space(tmp, "nope")], "nope", "no such folder (expected one written by raygan data pack)"


@case
def packed_split_json_missing(tmp, packed):
    (packed() / "split.json").unlink()
    return ["tune", _packed_space(tmp)], "packed", "not a packed semi-paired dataset (no split.json"


@case
def packed_split_json_corrupt(tmp, packed):
    p = packed() / "split.json"
    p.write_text(p.read_text()[:30])
    return ["tune", _packed_space(tmp)], "packed/split.json", "malformed (JSONDecodeError)"


@case
def packed_shard_missing(tmp, packed):
    (packed() / "unpaired_images" / "part-00000.parquet").unlink()
    return ["train", "--local", _packed_space(tmp)], "packed/unpaired_images", "no part-*.parquet shards"


@case
def packed_shard_truncated(tmp, packed):
    p = packed() / "paired" / "part-00000.parquet"
    p.write_bytes(p.read_bytes()[:200])
    return ["tune", _packed_space(tmp)], "packed/paired/part-00000.parquet", "corrupt or truncated parquet shard"


# ---- raygan data pack --------------------------------------------------------------------------------

IMAGE_DIRS = {"cityscapes": "ds/leftImg8bit/train", "ade20k": "ds/ADEChallengeData2016/images/training",
              "cocostuff": "ds/train_img"}


def _dataset(tmp, kind):
    """The test_layouts fixture plus a third pair (copies), so that --ratio 0.5 leaves every part one item."""
    MAKERS[kind](tmp / "ds")
    img, lab = open_layout(kind, "ds", "train", None).pairs[0]
    shutil.copy(img, img.with_name("z" + img.name))
    shutil.copy(lab, lab.with_name("z" + lab.name))
    return open_layout(kind, "ds", "train", None).pairs


def _pack(kind, ratio="0.5"):
    return ["data", "pack", "ds", "dst", "--layout", kind, "--size", "8", "--ratio", ratio]


def _zero_images(kind):
    def build(tmp, packed):
        MAKERS[kind](tmp / "ds")
        shutil.rmtree(IMAGE_DIRS[kind])
        os.mkdir(IMAGE_DIRS[kind])
        return _pack(kind), IMAGE_DIRS[kind], "no images found"
    build.__name__ = f"pack_zero_images_{kind}"
    return build


for _kind in MAKERS:
    case(_zero_images(_kind))


@case
def pack_src_missing(tmp, packed):
    return _pack("cityscapes"), "ds", "no such dataset folder (expected cityscapes layout"


@case
def pack_corrupt_image(tmp, packed):
    img = _dataset(tmp, "cocostuff")[1][0]
    img.write_bytes(b"this is not a JPEG")
    return _pack("cocostuff"), str(img), "unreadable or corrupt image (not an image file PIL recognises); expected a complete JPEG or PNG"


@case
def pack_truncated_png(tmp, packed):
    img = _dataset(tmp, "cityscapes")[2][0]
    data = img.read_bytes()
    img.write_bytes(data[: len(data) * 2 // 3])
    return _pack("cityscapes"), str(img), "unreadable or corrupt image (OSError: image file is truncated"


@case
def pack_truncated_jpeg(tmp, packed):
    img = _dataset(tmp, "ade20k")[0][0]
    data = img.read_bytes()
    img.write_bytes(data[: len(data) * 2 // 3])
    return _pack("ade20k"), str(img), "unreadable or corrupt image (OSError: Truncated File Read); expected a complete JPEG or PNG"


@case
def pack_label_ids_out_of_range(tmp, packed):
    lab = _dataset(tmp, "cityscapes")[1][1]
    ids = np.asarray(Image.open(lab)).copy()
    ids[0, 0] = 200
    Image.fromarray(ids).save(lab)
    return _pack("cityscapes"), str(lab), "label values 200 outside the cityscapes id range (expected labelIds 0..33)"


@case
def pack_image_label_size_mismatch(tmp, packed):
    lab = _dataset(tmp, "cocostuff")[0][1]
    Image.fromarray(np.zeros((5, 7), np.uint8)).save(lab)
    return _pack("cocostuff"), str(lab), "label map is 7x5 but its image"


@case
def pack_too_few_images_for_ratio(tmp, packed):
    MAKERS["ade20k"](tmp / "ds")  # 2 pairs: at r = 0.05 there is nothing left for the unpaired parts
    return _pack("ade20k", ratio="0.05"), "ds", "each part needs at least one"


@case
def pack_destination_exists(tmp, packed):
    (tmp / "dst").mkdir()
    (tmp / "dst" / "mine.txt").write_text("not yours")
    return ["data", "pack", "scenes", "dst", "--n", "8"], "dst", "already exists and is not empty; refusing"


@case
def pack_ratio_out_of_range(tmp, packed):
    return ["data", "pack", "scenes", "dst", "--ratio", "1.5"], "--ratio", "in (0, 1], got 1.5"


@case
def pack_ratio_zero(tmp, packed):
    return ["data", "pack", "scenes", "dst", "--ratio", "0"], "--ratio", "in (0, 1], got 0"


@case
def pack_scene_size_invalid(tmp, packed):
    return ["data", "pack", "scenes", "dst", "--size", "20"], "--size", "a multiple of 16 that is >= 32"


# ---- the test ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def packed_scenes(tmp_path_factory):
    from raygan.data.semipaired import pack

    dst = tmp_path_factory.mktemp("packed") / "scenes"
    pack("scenes", dst, ratio=0.25, n_train=40, size=32)
    return dst


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_is_one_line_exit_2_nothing_written(tmp_path, monkeypatch, capsys, request, name):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    import ray  # a check that stopped working fails the test here instead of running a search

    monkeypatch.setattr(ray, "init", lambda *a, **k: pytest.fail("Ray started: the input was not refused first"))
    monkeypatch.setattr("raygan.train.loop.run", lambda *a, **k: pytest.fail("training started: the input was not refused"))
    packed = lambda: shutil.copytree(request.getfixturevalue("packed_scenes"), tmp_path / "packed")  # noqa: E731
    argv, where, expected = CASES[name](tmp_path, packed)
    before = snapshot(tmp_path)
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    line = err.strip()
    # a path knob of the YAML is named as the trials see it: made absolute from the working folder
    named = (f"raygan: error: {where}: ", f"raygan: error: {tmp_path / where}: ")
    assert line.startswith(named) and expected in line, line
    assert snapshot(tmp_path) == before, "files were written, changed or removed"


def test_resume_marker_accepts_the_same_experiment_only(tmp_path):
    """A search's marker lets --resume continue that experiment and refuses an edited space."""
    from raygan.errors import UserError
    from raygan.orchestrate.results import save_experiment
    from raygan.orchestrate.tune import _check_results_dir
    from raygan.search_space import load_experiment

    exp = load_experiment(tmp_path / write(tmp_path, "ok.yaml", DCL))
    exp_dir = tmp_path / "out" / "ok"
    save_experiment(exp, exp_dir)
    _check_results_dir(exp, tmp_path / "out", exp_dir, resume=True)  # same experiment: accepted
    moved = load_experiment(tmp_path / write(tmp_path, "ok.yaml", DCL.replace("0.3]", "0.4]")))
    with pytest.raises(UserError, match="another experiment"):
        _check_results_dir(moved, tmp_path / "out", exp_dir, resume=True)
    with pytest.raises(UserError, match="already exist"):
        _check_results_dir(exp, tmp_path / "out", exp_dir, resume=False)


def test_yaml_merge_keys_may_override_but_plain_duplicates_may_not(tmp_path):
    from raygan.errors import UserError
    from raygan.search_space import read_yaml

    ok = write(tmp_path, "merge.yaml", "base: &b {steps: 3, lr: 0.1}\ntrain: {<<: *b, steps: 5}\n")
    assert read_yaml(tmp_path / ok)["train"] == {"steps": 5, "lr": 0.1}
    bad = write(tmp_path, "dup.yaml", "train:\n  steps: 3\n  lr: 0.1\n  steps: 5\n")
    with pytest.raises(UserError, match=r"line 4, column 3: duplicate key 'steps'"):
        read_yaml(tmp_path / bad)
