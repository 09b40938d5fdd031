"""`raygan report RUN_DIR`: the page, its pictures (decoded by headless Chromium),
its per-trial configs, its importance, and what it refuses."""
import html
import json
import re
import shutil
import subprocess
import textwrap

import numpy as np
import pytest
from PIL import Image

from raygan.cli import main
from raygan.report.page import importances
from raygan.search_space import load_experiment

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
PROBE = ("<script>addEventListener('load', () => document.body.setAttribute('data-images', JSON.stringify("
         "[...document.images].map(i => [i.alt, i.complete, i.naturalWidth, i.naturalHeight]))))</script>")

SPACE = """
name: fake
method:
  name: dcl
  lambda1: {loguniform: [0.1, 10.0]}
  tau: {uniform: [0.03, 0.3]}
train: {steps: 4, eval_every: 2}
search: {metric: [diversity, realism], mode: [max, max], num_samples: 6}
"""


def fake_run(tmp_path, space=SPACE, n=6, failed=()):
    """A results folder as `raygan tune` leaves it: per-trial params.json,
    result.json (one report per evaluation), samples.png; error.txt for failures."""
    run = tmp_path / "fake"
    run.mkdir()
    (run / "experiment.yaml").write_text(textwrap.dedent(space))
    rng = np.random.default_rng(0)
    for i in range(n):
        tid = f"t{i:07d}"
        d = run / f"_trial_{tid}_{i + 1}_method_lambda1=x_2026-01-01"
        d.mkdir()
        params = {"method.lambda1": float(np.exp(rng.uniform(np.log(0.1), np.log(10)))),
                  "method.tau": float(rng.uniform(0.03, 0.3))}
        (d / "params.json").write_text(json.dumps(params))
        reports = [{"step": s, "trial_id": tid, "realism": float(rng.uniform()) * s / 4,
                    "diversity": float(rng.uniform(0, 4)), "fd_shapesnet": float(rng.uniform(100, 400)),
                    "config": params} for s in (2, 4)]
        (d / "result.json").write_text("".join(json.dumps(r) + "\n" for r in reports))
        Image.fromarray(rng.integers(0, 255, (24, 48, 3), dtype=np.uint8)).save(d / "samples.png")
        if i in failed:
            (d / "error.txt").write_text("Failure # 1\nRuntimeError: the trial broke\n")
    return run


def decoded_images(page, tmp_path):
    """[(alt, complete, naturalWidth, naturalHeight)] of every <img> once headless Chromium has loaded the page."""
    probe = tmp_path / "probe.html"
    probe.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    dom = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'chr'}",
         "--virtual-time-budget=5000", "--dump-dom", probe.as_uri()],
        capture_output=True, text=True, timeout=60).stdout
    found = re.search(r'data-images="([^"]*)"', dom)
    assert found, "the page did not finish loading in Chromium"
    return json.loads(html.unescape(found.group(1)))


def check_page(page, tmp_path, expect_images: int):
    text = page.read_text()
    # self-contained: every picture inline, nothing fetched
    srcs = re.findall(r'<img [^>]*src="([^"]*)"', text)
    assert len(srcs) == expect_images and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert "<link" not in text and "<script" not in text and "http://" not in text and "https://" not in text
    if not shutil.which(CHROMIUM):  # after every other check
        pytest.skip("Debian chromium is not installed (apt-get install chromium): the page was not rendered")
    images = decoded_images(page, tmp_path)
    assert len(images) == expect_images
    assert all(complete and w > 0 and h > 0 for _, complete, w, h in images), images


def test_report_of_a_pareto_search(tmp_path, capsys):
    run = fake_run(tmp_path)
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert main(["report", str(run)]) == 0
    page = run / "report" / "index.html"
    assert f"raygan: report: {page}" in capsys.readouterr().out
    pngs = sorted(p.name for p in (run / "report").glob("*.png"))
    assert pngs[:4] == ["curves.png", "importance.png", "knobs.png", "pareto.png"] and len(pngs) == 8
    for p in (run / "report").glob("*.png"):
        Image.open(p).verify()
    assert all(p.read_bytes() == b for p, b in before.items())  # nothing of the run was touched

    # the ranked table is in Pareto order; each trial's config reruns exactly that trial
    exp = load_experiment(run / "experiment.yaml")
    trials = {}
    for d in run.glob("_trial_*"):
        last = json.loads((d / "result.json").read_text().splitlines()[-1])
        trials[last["trial_id"]] = (json.loads((d / "params.json").read_text()), last)
    from raygan.orchestrate.results import pareto_ranks

    ids = list(trials)
    ranks = pareto_ranks([[trials[t][1]["diversity"], trials[t][1]["realism"]] for t in ids], ["max", "max"])
    expected = sorted(ids, key=lambda t: (ranks[ids.index(t)], -trials[t][1]["diversity"]))
    text = page.read_text()
    table = text[text.index("<table>"):text.index("</table>")]
    assert re.findall(r'href="#trial-(t\d+)"', table) == expected
    assert "Pareto front of diversity (max) and realism (max)" in text
    assert "up to 2 points per trial" in text  # the curves have every evaluation
    for tid, (params, _) in trials.items():
        cfg = run / "report" / "configs" / f"fake_{tid}.yaml"
        assert f"raygan train {cfg}" in text
        rerun = load_experiment(cfg)
        assert not rerun.space and rerun.name == f"fake_{tid}"
        assert rerun.trial_config["method"]["lambda1"] == pytest.approx(params["method.lambda1"])
        assert rerun.trial_config["method"]["tau"] == pytest.approx(params["method.tau"])
        assert rerun.trial_config["train"] == exp.trial_config["train"]
    check_page(page, tmp_path, expect_images=8)  # pareto, curves, importance, knobs + the best 4 trials' samples


def test_importance_follows_each_objectives_direction(tmp_path):
    """High values of f need lambda1 > 0.7; low values need tau small. Maximising
    f, lambda1 matters; minimising it, tau does."""
    space = tmp_path / "e.yaml"
    rng = np.random.default_rng(1)
    rows = []
    for _ in range(24):
        a, b = rng.uniform(), rng.uniform()
        f = 10.0 * (a > 0.7) - 10.0 * (b < 0.3) + 0.01 * rng.normal()
        rows.append({"status": "ok", "realism": f, "fd_shapesnet": f,
                     "_params": {"method.lambda1": a, "method.tau": 0.03 + 0.27 * b}})
    for modes, top in ((("max", "max"), "method.lambda1"), (("min", "min"), "method.tau")):
        space.write_text("method: {name: dcl, lambda1: {uniform: [0.0, 1.0]}, tau: {uniform: [0.03, 0.3]}}\n"
                         f"search: {{metric: [realism, fd_shapesnet], mode: [{modes[0]}, {modes[1]}]}}\n")
        imp, note = importances(rows, load_experiment(space))
        assert set(imp) == {"realism", "fd_shapesnet"} and "24 finished trials" in note
        for values in imp.values():
            assert max(values, key=values.get) == top and sum(values.values()) == pytest.approx(1.0)


SINGLE = SPACE.replace("search: {metric: [diversity, realism], mode: [max, max], num_samples: 6}",
                       "search: {metric: fd_shapesnet, mode: min, num_samples: 2}")


def test_single_objective_run_with_a_failed_trial(tmp_path):
    run = fake_run(tmp_path, SINGLE, n=2, failed=(1,))
    assert main(["report", str(run)]) == 0
    page = run / "report" / "index.html"
    text = page.read_text()
    assert "this run has 1 finished trial(s)" in text and not (run / "report" / "importance.png").exists()
    assert "error: RuntimeError: the trial broke" in text
    assert "realism vs diversity" in text  # the trade-off plot is there without two objectives
    check_page(page, tmp_path, expect_images=4)  # pareto, curves, knobs, one sample grid


def test_report_refuses_what_is_not_a_run(tmp_path, capsys):
    def error(*args):
        assert main(["report", *map(str, args)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("raygan: error: ") and err.count("\n") == 1
        return err

    assert "no such folder" in error(tmp_path / "nowhere")
    assert "not a raygan tune results folder" in error(tmp_path)
    run = fake_run(tmp_path)
    (run / "experiment.yaml").rename(tmp_path / "kept.yaml")
    assert "name its experiment file with --space" in error(run)
    other = tmp_path / "other.yaml"
    other.write_text("method: {name: dcl, lambda2: {uniform: [0.1, 1.0]}}\n")
    assert "searched method.lambda1, method.tau, which this file does not" in error(run, "--space", other)
    assert main(["report", str(run), "--space", str(tmp_path / "kept.yaml")]) == 0
    capsys.readouterr()

    foreign = tmp_path / "foreign"
    shutil.copytree(run, foreign)
    shutil.rmtree(foreign / "report")
    (foreign / "report").mkdir()
    (foreign / "report" / "notes.txt").write_text("mine")
    assert "was not written by raygan report" in error(foreign, "--space", tmp_path / "kept.yaml")
    assert [p.name for p in (foreign / "report").iterdir()] == ["notes.txt"]


def test_a_second_report_replaces_only_its_own_files(tmp_path):
    run = fake_run(tmp_path)
    assert main(["report", str(run)]) == 0
    report = run / "report"
    manifest = report / ".raygan-report"
    written = set(manifest.read_text().split())
    assert "index.html" in written and "pareto.png" in written
    (report / "samples_gone.png").write_bytes(b"from an earlier report")  # an earlier report's file
    manifest.write_text(manifest.read_text() + "samples_gone.png\n")
    (report / "notes.txt").write_text("the user's")
    assert main(["report", str(run)]) == 0
    assert not (report / "samples_gone.png").exists()
    assert (report / "notes.txt").read_text() == "the user's"
    assert set(manifest.read_text().split()) == written
