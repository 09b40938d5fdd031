"""Experiment YAML: every kind of bad input is a one-line error naming file and key, exit 2."""
import textwrap

from pathlib import Path

import pytest

from raygan.cli import main
from raygan.orchestrate.distributions import to_tune
from raygan.search_space import load_experiment, resolve, typed

GOOD = """
name: t
method:
  name: dcl
  lambda1: {loguniform: [0.1, 10]}
  tau: {uniform: [0.03, 0.3]}
  g_layers: {choice: [[0, 1], [2, 3]]}
train:
  steps: {int: [10, 20]}
  lr: 5e-4
"""


def write(tmp_path, text, name="space.yaml"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


def test_good_file_maps_knobs_to_distributions(tmp_path):
    exp = load_experiment(write(tmp_path, GOOD))
    assert {k: d.kind for k, d in exp.space.items()} == {
        "method.lambda1": "loguniform", "method.tau": "uniform", "method.g_layers": "choice", "train.steps": "int"}
    assert exp.trial_config["train"]["lr"] == 5e-4  # YAML 1.1 reads "5e-4" as text; accepted as a number
    tune_space = {k: to_tune(d) for k, d in exp.space.items()}
    assert tune_space["train.steps"].lower == 10 and tune_space["train.steps"].upper == 21  # inclusive
    cfg = resolve(exp.trial_config, {"method.lambda1": 3.0, "method.g_layers": "[2, 3]", "train.steps": 12})
    t = typed(cfg)
    assert t["method"].lambda1 == 3.0 and t["method"].g_layers == [2, 3] and t["train"].steps == 12
    assert t["method"].lambda2 == 0.5 and t["method"].tau == 0.07  # paper defaults


BAD = {
    "malformed": ("method: {name: dcl\n  tau: [", "malformed YAML at line"),
    "not_mapping": ("- 1\n- 2\n", "expected a mapping"),
    "unknown_top": ("method: {name: dcl}\nbogus: 1\n", "unknown key 'bogus'"),
    "unknown_knob": ("method: {name: dcl, lamda1: 2}\n", "unknown key 'method.lamda1'"),
    "unknown_method": ("method: {name: gan9000}\n", "method.name: expected one of"),
    "no_method": ("train: {steps: 3}\n", "method: expected a mapping with 'name'"),
    "bad_dist": ("method: {name: dcl, tau: {normal: [0, 1]}}\n", "method.tau: expected a value or one distribution"),
    "dist_arity": ("method: {name: dcl, tau: {uniform: [0.1]}}\n", "method.tau: uniform expects [low, high]"),
    "dist_order": ("method: {name: dcl, tau: {uniform: [0.3, 0.1]}}\n", "method.tau: expected low < high"),
    "dist_range": ("method: {name: dcl, tau: {uniform: [-1, 0.1]}}\n", "method.tau: expected a value > 0.0"),
    "log_zero": ("method: {name: dcl, lambda1: {loguniform: [0, 1]}}\n", "loguniform needs low > 0"),
    "int_on_float": ("method: {name: dcl, tau: {int: [1, 3]}}\n", "int distribution on a non-integer knob"),
    "out_of_range": ("method: {name: dcl}\ntrain: {steps: 0}\n", "train.steps: expected a value >= 1"),
    "wrong_type": ("method: {name: dcl}\ntrain: {steps: many}\n", "train.steps: expected an integer"),
    "bad_choice": ("method: {name: dcl}\nsearch: {mode: sideways}\n", "search.mode: expected one of"),
    "dist_in_search": ("method: {name: dcl}\nsearch: {num_samples: {int: [1, 4]}}\n", "search.num_samples: expected an integer"),
    "bad_section": ("method: {name: dcl}\ntrain: 5\n", "train: expected a mapping of settings"),
    "bad_layers": ("method: {name: dcl, g_layers: [0, -1]}\n", "expected indices >= 0"),
    "reference_on_embedded": ("method: {name: dcl}\ndata: {target: sketches, reference: ref}\n",
                              "data.reference: the embedded sketches have their own held-out set"),
    "unknown_metric": ("method: {name: dcl}\neval: {metrics: [fid, lpips]}\n", "eval.metrics: unknown metric 'lpips'"),
    "metric_twice": ("method: {name: dcl}\neval: {metrics: [fid, fid]}\n", "eval.metrics: expected each metric once"),
    "moved_knob": ("method: {name: dcl}\ntrain: {metrics: [fid]}\n", "'train.metrics' moved to 'eval.metrics'"),
    "moved_searched_knob": ("method: {name: dcl}\ntrain: {lpips_net: {choice: [vgg, alex]}}\n",
                            "'train.lpips_net' moved to 'eval.lpips_net'"),
    "eval_for_labelgen": ("method: {name: oasis}\neval: {metrics: [fid]}\n",
                          "eval: the labelgen family's experiments have no eval section"),
    "bad_use_gpu": ("method: {name: dcl}\nscaling: {use_gpu: maybe}\n", "scaling.use_gpu: expected one of"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_yaml_is_one_line_error_exit_2(tmp_path, capsys, case):
    text, expected = BAD[case]
    path = write(tmp_path, text)
    assert main(["tune", str(path), "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"raygan: error: {path}:") and expected in err, err
    assert not (tmp_path / "out").exists()


def test_missing_file_and_empty_space(tmp_path, capsys):
    assert main(["tune", str(tmp_path / "nope.yaml")]) == 2
    assert "no such file" in capsys.readouterr().err
    path = write(tmp_path, "method: {name: tgan}\n")
    assert main(["tune", str(path), "--output", str(tmp_path / "out")]) == 2
    assert "search space is empty" in capsys.readouterr().err


def test_help_does_not_import_torch_or_ray():
    import subprocess
    import sys

    code = "import sys\nfrom raygan.cli import _parser\ntry:\n    _parser().parse_args(['--help'])\nexcept SystemExit:\n    pass\n" \
           "print(sorted(m for m in ('torch', 'ray', 'optuna') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().endswith("[]"), out


def test_missing_checkpoint_path_is_caught_before_ray_starts(tmp_path, capsys):
    path = write(tmp_path, "method: {name: dcl, tau: {uniform: [0.05, 0.1]}}\nmodel: {checkpoint: nope/g.pt}\n")
    assert main(["tune", str(path), "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    # relative paths are taken from where raygan was started (trials run in their own folders)
    missing = Path.cwd() / "nope" / "g.pt"
    assert err == f"raygan: error: {missing}: no such checkpoint file (expected a StyleGAN2 .pt in rosinality layout)"
    assert not (tmp_path / "out").exists()


def test_default_objective_is_the_familys(tmp_path):
    from raygan.search_space import load_experiment

    (tmp_path / "sp.yaml").write_text("method: {name: semipaired}\ntrain: {lr_g: {loguniform: [1.0e-4, 1.0e-3]}}\n")
    exp = load_experiment(tmp_path / "sp.yaml")
    assert (exp.search.metric, exp.search.mode) == ("miou_segnet", "max")
    (tmp_path / "dcl.yaml").write_text("method: {name: dcl}\ntrain: {lr: {loguniform: [1.0e-4, 1.0e-3]}}\n")
    exp = load_experiment(tmp_path / "dcl.yaml")
    assert (exp.search.metric, exp.search.mode) == ("fd_shapesnet", "min")


def test_use_gpu_auto_follows_the_cluster():
    from raygan.config import ScalingConfig, build

    auto = build(ScalingConfig, {"use_gpu": "auto"}, "x.yaml", "scaling")
    assert auto.on_cluster(0).use_gpu is False and auto.on_cluster(4).use_gpu is True
    fixed = build(ScalingConfig, {"use_gpu": True}, "x.yaml", "scaling")
    assert fixed.on_cluster(0).use_gpu is True  # an explicit choice is kept (and refused later without GPUs)
