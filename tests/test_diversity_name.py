"""One name for diversity (`diversity`), whichever backbone computed it: an experiment file keeps its
meaning when LPIPS weights appear; the backbone is in the provenance."""
import textwrap

import pytest
import torch

from raygan import weights as W
from raygan.data.synthetic import few_shot_target
from raygan.errors import UserError
from raygan.evaluation.trials import Evaluator
from raygan.families.fewshot import diversity_metric, reported_names
from raygan.metrics.diversity import intra_cluster_diversity, shapesnet_distance
from raygan.metrics.features import load_shapesnet
from raygan.models.checkpoint import load_source
from raygan.search_space import load_experiment, typed


@pytest.fixture
def no_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch_home"))
    monkeypatch.delenv(W.DIR_VAR, raising=False)
    for k in W.KNOWN.values():
        monkeypatch.delenv(k.env, raising=False)


@pytest.fixture
def vgg_weights(tmp_path, monkeypatch, no_weights):
    """A stand-in VGG16 of the right architecture in $RAYGAN_WEIGHTS (no download here)."""
    import torchvision

    wdir = tmp_path / "weights"
    wdir.mkdir()
    vgg = torchvision.models.vgg16(weights=None).features
    torch.save({f"features.{k}": v for k, v in vgg.state_dict().items()}, wdir / W.KNOWN["vgg16"].file)
    monkeypatch.setenv(W.DIR_VAR, str(wdir))


def sections(tmp_path, evaluation=""):
    p = tmp_path / "div.yaml"
    p.write_text(textwrap.dedent(f"""
        method: {{name: dcl, tau: {{uniform: [0.05, 0.1]}}}}
        train: {{steps: 4, eval_every: 2, eval_samples: 20}}
        eval: {{lpips_net: vgg{evaluation}}}
        search: {{metric: diversity, mode: max}}
    """))
    exp = load_experiment(p)
    t = typed(exp.trial_config)
    return exp, t["data"], t["eval"]


def test_the_same_yaml_names_diversity_with_and_without_lpips_weights(tmp_path, no_weights, request):
    exp, data, ev = sections(tmp_path)
    assert diversity_metric(data, ev) == "intra_shapesnet"
    assert "diversity" in reported_names(data, ev) and exp.search.objectives == [("diversity", "max")]
    request.getfixturevalue("vgg_weights")
    assert diversity_metric(data, ev) == "intra_lpips"  # weights appeared: another backbone, same name
    assert "diversity" in reported_names(data, ev)
    _, data, pinned = sections(tmp_path, ", diversity: shapesnet")
    assert diversity_metric(data, pinned) == "intra_shapesnet"  # a study that must not change backbone pins it


def test_diversity_is_the_backbones_metric_with_its_provenance(no_weights):
    src = load_source("embedded")
    shots = few_shot_target(size=src.size, n_shots=10, seed=0)
    ev = Evaluator(src.generator(), shots, 40, metrics=["realism", "diversity", "intra_shapesnet"],
                   diversity="intra_shapesnet")
    images = ev.generate(src.generator())
    out = ev.score(images)
    expected = intra_cluster_diversity(images, shots, shapesnet_distance(load_shapesnet(src.size)))
    assert out["diversity"] == pytest.approx(expected) == pytest.approx(out["intra_shapesnet"])
    assert ev.provenance["diversity"]["computed_as"] == "intra_shapesnet"
    assert "shapesnet" in ev.provenance["diversity"]["network"]
    only = Evaluator(src.generator(), shots, 40, metrics=["diversity"], diversity="intra_shapesnet")
    assert set(only.score(images)) == {"diversity"} and set(only.provenance) == {"diversity"}


def test_diversity_counts_a_collapsed_generator_as_not_diverse(no_weights):
    src = load_source("embedded")
    shots = few_shot_target(size=src.size, n_shots=10, seed=0)
    ev = Evaluator(src.generator(), shots, 40, metrics=["diversity"], diversity="intra_shapesnet")
    varied = ev.generate(src.generator())
    collapsed = varied[:1].repeat(len(varied), 1, 1, 1)
    assert ev.score(collapsed)["diversity"] < 0.05 * ev.score(varied)["diversity"]


def test_shapesnet_diversity_on_a_folder_target_is_refused(tmp_path, no_weights):
    from PIL import Image

    from raygan.orchestrate.tune import prepare_shared_assets

    folder = tmp_path / "shots"
    folder.mkdir()
    for i in range(4):
        Image.new("RGB", (32, 32), (40 * i, 90, 200)).save(folder / f"{i}.png")
    p = tmp_path / "folder.yaml"
    p.write_text(textwrap.dedent(f"""
        method: {{name: dcl, tau: {{uniform: [0.05, 0.1]}}}}
        data: {{target: {folder}, shots: 4}}
        train: {{steps: 4, eval_every: 2, eval_samples: 20}}
        eval: {{metrics: [diversity], diversity: shapesnet}}
        search: {{metric: diversity, mode: max}}
    """))
    with pytest.raises(UserError) as e:
        prepare_shared_assets(load_experiment(p))
    assert "eval.diversity: intra_shapesnet uses raygan's ShapesNet" in str(e.value) and "\n" not in str(e.value)
