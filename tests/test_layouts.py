"""Tiny fixtures in the exact Cityscapes / ADE20K / COCO-stuff folder layouts."""
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from raygan.data import layouts as Ly
from raygan.errors import UserError

W, H = 24, 16


def _image(path, seed):
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(path)


def _label(path, values, seed):
    """Blocks of 4x4 pixels, each one of `values` (so nearest resizing has clear regions)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    blocks = rng.choice(np.asarray(values), (H // 4, W // 4))
    blocks.flat[: len(values)] = values                      # every value occurs
    lab = np.kron(blocks, np.ones((4, 4), int)).astype(np.uint8)
    Image.fromarray(lab).save(path)
    return lab


CITY_IDS = [0, 1, 7, 8, 11, 24, 26, 33]     # 0 unlabeled (don't care), 7 road, 26 car, 33 bicycle
ADE_IDS = [0, 1, 3, 13, 150]                # 0 other (don't care)
COCO_IDS = [0, 1, 95, 181, 255]             # 255 unlabeled


CITIES = ("aachen", "bochum", "bremen")


def make_cityscapes(root, split="train", n=2):
    """n pairs named as Cityscapes ships them: <city>_<seq>_<frame>, with the other gtFine files beside."""
    labels = {}
    for k in range(n):
        city = CITIES[k % len(CITIES)]
        name = f"{city}_{k // len(CITIES):06d}_{19 + 294 * k:06d}"
        _image(root / "leftImg8bit" / split / city / f"{name}_leftImg8bit.png", k)
        gt = root / "gtFine" / split / city
        labels[name] = _label(gt / f"{name}_gtFine_labelIds.png", CITY_IDS, k)
        _label(gt / f"{name}_gtFine_instanceIds.png", [0, 26], k)          # distractors in the same folder
        _image(gt / f"{name}_gtFine_color.png", k + 10)
        (gt / f"{name}_gtFine_polygons.json").write_text("{}")
    return labels


def make_ade20k(parent, split="training", n=2):
    """n pairs as ADEChallengeData2016 ships them: ADE_<train|val>_<8 digits>.jpg / .png."""
    base = parent / "ADEChallengeData2016"
    labels = {}
    for k in range(1, n + 1):
        name = f"ADE_{'train' if split == 'training' else 'val'}_{k:08d}"
        _image(base / "images" / split / f"{name}.jpg", k)
        labels[name] = _label(base / "annotations" / split / f"{name}.png", ADE_IDS, k)
    return labels


def make_cocostuff(root, split="train"):
    labels = {}
    for k, name in enumerate(["000000000009", "000000000025"]):
        _image(root / f"{split}_img" / f"{name}.jpg", k)
        labels[name] = _label(root / f"{split}_label" / f"{name}.png", COCO_IDS, k)
    return labels


MAKERS = {"cityscapes": make_cityscapes, "ade20k": make_ade20k, "cocostuff": make_cocostuff}


def _one_line_naming(err, path):
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg, msg
    return msg


def test_class_counts_and_dontcare():
    assert {k: v.n_classes for k, v in Ly.LAYOUTS.items()} == {"cityscapes": 35, "ade20k": 151, "cocostuff": 183}
    assert all(v.dontcare == 0 for v in Ly.LAYOUTS.values())


def test_cityscapes(tmp_path):
    raw = make_cityscapes(tmp_path)
    ds = Ly.open_layout("cityscapes", tmp_path, "train", size=None)
    assert len(ds) == 2 and ds.n_classes == 35 and ds.kind == "cityscapes"
    img, lab = ds[0]
    assert img.shape == (H, W, 3) and img.dtype == np.uint8 and lab.shape == (H, W) and lab.dtype == np.uint8
    assert np.array_equal(lab, raw["aachen_000000_000019"])          # labelIds used as they are
    assert ds.pairs[1][1].name == "bochum_000000_000313_gtFine_labelIds.png"
    small = Ly.open_layout("cityscapes", tmp_path, "train", size=(8, 16))
    img, lab = small[1]
    assert img.shape == (8, 16, 3) and lab.shape == (8, 16)
    assert set(np.unique(lab)) <= set(CITY_IDS)                      # nearest: no blended ids
    with pytest.raises(UserError):
        Ly.open_layout("cityscapes", tmp_path, "val", 8)              # no val split here


def test_ade20k_root_or_parent(tmp_path):
    raw = make_ade20k(tmp_path)
    for root in (tmp_path, tmp_path / "ADEChallengeData2016"):
        ds = Ly.open_layout("ade20k", root, "train", size=8)
        assert len(ds) == 2 and ds.n_classes == 151
        img, lab = ds[1]
        assert img.shape == (8, 8, 3) and lab.shape == (8, 8)
        assert set(np.unique(lab)) <= set(ADE_IDS) and lab.max() <= 150
    img, lab = Ly.open_layout("ade20k", tmp_path, "training", size=None)[0]
    assert np.array_equal(lab, raw["ADE_train_00000001"])           # 0 stays "other"/don't care


def test_cocostuff_mapping(tmp_path):
    raw = make_cocostuff(tmp_path)
    ds = Ly.open_layout("cocostuff", tmp_path, "train", size=None)
    assert len(ds) == 2 and ds.n_classes == 183
    _, lab = ds[0]
    r = raw["000000000009"]
    expect = np.where(r == 255, 0, r.astype(int) + 1)               # OASIS: v + 1, 255 -> 0
    assert np.array_equal(lab, expect)
    assert set(np.unique(lab)) == {0, 1, 2, 96, 182}
    img, lab = Ly.open_layout("cocostuff", tmp_path, "train", size=12)[1]
    assert img.shape == (12, 12, 3) and set(np.unique(lab)) <= {0, 1, 2, 96, 182}


def test_to_tensors(tmp_path):
    make_cocostuff(tmp_path)
    ds = Ly.open_layout("cocostuff", tmp_path, "train", size=16)
    img, lab = Ly.to_tensors(*ds[0], ds.n_classes)
    assert img.shape == (3, 16, 16) and img.dtype == torch.float32 and -1 <= img.min() and img.max() <= 1
    assert lab.shape == (16, 16) and lab.dtype == torch.int64 and lab.max() < 183
    u8 = np.array([[[0, 255, 128]]], np.uint8)
    t, _ = Ly.to_tensors(u8, np.zeros((1, 1), np.uint8), 2)
    assert torch.allclose(t[:, 0, 0], torch.tensor([-1.0, 1.0, 128 / 127.5 - 1]), atol=1e-6)
    with pytest.raises(ValueError):
        Ly.to_tensors(u8, np.full((1, 1), 5, np.uint8), 5)


# ---- errors: one line, naming the path ------------------------------------------------------

@pytest.mark.parametrize("kind", list(MAKERS))
def test_missing_root_and_subfolder(tmp_path, kind):
    with pytest.raises(UserError) as e:
        Ly.open_layout(kind, tmp_path / "nope", "train", 8)
    _one_line_naming(e, tmp_path / "nope")
    MAKERS[kind](tmp_path)
    sub = {"cityscapes": tmp_path / "gtFine",
           "ade20k": tmp_path / "ADEChallengeData2016" / "annotations",
           "cocostuff": tmp_path / "train_label"}[kind]
    shutil.rmtree(sub)
    with pytest.raises(UserError) as e:
        Ly.open_layout(kind, tmp_path, "train", 8)
    _one_line_naming(e, sub)


@pytest.mark.parametrize("kind", list(MAKERS))
def test_no_images(tmp_path, kind):
    MAKERS[kind](tmp_path)
    img_dir = {"cityscapes": tmp_path / "leftImg8bit" / "train",
               "ade20k": tmp_path / "ADEChallengeData2016" / "images" / "training",
               "cocostuff": tmp_path / "train_img"}[kind]
    shutil.rmtree(img_dir)
    img_dir.mkdir()
    with pytest.raises(UserError) as e:
        Ly.open_layout(kind, tmp_path, "train", 8)
    assert "no images" in _one_line_naming(e, img_dir)


@pytest.mark.parametrize("kind", list(MAKERS))
def test_image_without_label(tmp_path, kind):
    MAKERS[kind](tmp_path)
    ds = Ly.open_layout(kind, tmp_path, "train", 8)
    img, lab = ds.pairs[1]
    lab.unlink()
    with pytest.raises(UserError) as e:
        Ly.open_layout(kind, tmp_path, "train", 8)
    msg = _one_line_naming(e, img)
    assert str(lab) in msg


@pytest.mark.parametrize("kind", list(MAKERS))
def test_corrupt_image(tmp_path, kind):
    MAKERS[kind](tmp_path)
    ds = Ly.open_layout(kind, tmp_path, "train", 8)
    img = ds.pairs[0][0]
    img.write_bytes(img.read_bytes()[:40])                           # truncated
    ds.pairs[1][0].write_bytes(b"not an image at all")
    for i in (0, 1):
        with pytest.raises(UserError) as e:
            ds[i]
        assert "corrupt" in _one_line_naming(e, ds.pairs[i][0])


@pytest.mark.parametrize("kind,bad", [("cityscapes", 34), ("cityscapes", 255), ("ade20k", 151),
                                      ("cocostuff", 182), ("cocostuff", 200)])
def test_label_out_of_range(tmp_path, kind, bad):
    MAKERS[kind](tmp_path)
    ds = Ly.open_layout(kind, tmp_path, "train", 8)
    lab_path = ds.pairs[0][1]
    lab = np.asarray(Image.open(lab_path)).copy()
    lab[0, 0] = bad
    Image.fromarray(lab).save(lab_path)
    with pytest.raises(UserError) as e:
        ds[0]
    assert str(bad) in _one_line_naming(e, lab_path)
    ds[1]                                                            # the other item still loads


def test_rgb_label_and_size_mismatch(tmp_path):
    make_cocostuff(tmp_path)
    ds = Ly.open_layout("cocostuff", tmp_path, "train", 8)
    _image(ds.pairs[0][1], 5)                                        # colour PNG in place of ids
    with pytest.raises(UserError) as e:
        ds[0]
    assert "single-channel" in _one_line_naming(e, ds.pairs[0][1])
    Image.fromarray(np.zeros((H, W + 4), np.uint8)).save(ds.pairs[1][1])
    with pytest.raises(UserError) as e:
        ds[1]
    _one_line_naming(e, ds.pairs[1][1])


def test_unknown_kind_and_split(tmp_path):
    with pytest.raises(UserError):
        Ly.open_layout("pascal", tmp_path, "train", 8)
    with pytest.raises(UserError):
        Ly.open_layout("cocostuff", tmp_path, "testing", 8)
