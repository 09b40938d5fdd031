"""Few-shot adaptation to the user's own images, end to end through Ray: a micro search on a
folder target ranked by the realism of its classifier C, stopped at its realism plateau, and
`raygan eval` of the best trial agreeing with the trial (the checks before Ray:
test_folder_target.py)."""
import csv
import json

import numpy as np
import pytest

from raygan.cli import main

from test_folder_target import assets, experiment, weights_env  # noqa: F401  (fixtures)


# ---- end to end --------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.timeout(600)
def test_micro_search_on_a_folder_ranked_by_realism_stopped_at_its_plateau_and_eval_agrees(
        local_ray, tmp_path, assets, capsys, weights_env):
    # On the suite's instance, started before weights_env: the trials find the stand-in weights
    # only because raygan hands them the driver's RAYGAN_* and TORCH_HOME (orchestrate/train.py
    # driver_env), as on an instance a user started with `ray start` in another shell.
    path = experiment(tmp_path, assets, **{
        "  shots: 6\n": f"  shots: 6\n  source_images: {assets['source_images']}\n",
        "steps: 2,": "steps: 6,",
        "eval: {metrics: [fid, intra_lpips]}": "eval: {metrics: [fid, diversity, realism, fd_domainnet], "
                                              "saturation_window: 1, saturation_tolerance: 1.0, saturation_realism: 0.0}",
        "metric: fid, mode: min": "metric: realism, mode: max, stopper: realism_plateau"})
    out = tmp_path / "results"
    assert main(["tune", str(path), "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "raygan: metrics: fid, diversity, realism, fd_domainnet, diversity_at_saturation, saturated_at_step " \
           "(eval.metrics)" in printed
    assert "raygan: C: held-out p(target)" in printed and f"not target: 24 images of {assets['source_images']}" in printed
    exp_dir = out / "folder"
    rows = list(csv.DictReader(open(exp_dir / "results.csv")))
    assert len(rows) == 2 and all(r["status"] == "ok" for r in rows)
    for r in rows:
        assert np.isfinite(float(r["fid"])) and float(r["fid"]) >= 0 and float(r["diversity"]) >= 0
        assert 0 <= float(r["realism"]) <= 1 and float(r["fd_domainnet"]) >= 0
        assert "fd_shapesnet" not in r  # the embedded metrics are not computed here
        (folder,) = exp_dir.glob(f"_trial_{r['trial']}_*")
        history = [json.loads(line) for line in (folder / "result.json").read_text().splitlines()]
        assert [h["step"] for h in history] == [0, 2]  # stopped at its realism plateau, 4 of 6 steps unspent
        assert history[-1]["saturated_at_step"] == 2
    assert [float(r["realism"]) for r in rows] == sorted((float(r["realism"]) for r in rows), reverse=True)
    best = rows[0]
    trial = next(p for p in exp_dir.iterdir() if p.is_dir() and best["trial"] in p.name)
    prov = json.loads((trial / "metrics_provenance.json").read_text())
    assert {"fid", "diversity", "realism", "fd_domainnet"} <= set(prov)
    assert "UNVERIFIED" in prov["fid"]["network"] and str(assets["reference"]) in prov["fid"]["reference"]
    assert len(prov["fid"]["weights_sha256"]) == 64 and "vgg" in prov["diversity"]["network"]
    assert "domainnet" in prov["realism"]["network"] and str(assets["source_images"]) in prov["realism"]["reference"]
    # `raygan eval` of the best trial's (last) checkpoint computes the same numbers on the same samples
    scores = tmp_path / "scores.json"
    assert main(["eval", str(trial), "--metrics", "fid,intra_lpips,realism,fd_domainnet", "--samples", "20",
                 "--reference", str(assets["reference"]), "--shots", str(assets["shots"]),
                 "--source-images", str(assets["source_images"]), "--out", str(scores)]) == 0
    got = {r["metric"]: r["value"] for r in json.loads(scores.read_text())["scores"]}
    for metric, reported in {"fid": "fid", "intra_lpips": "diversity", "realism": "realism",
                             "fd_domainnet": "fd_domainnet"}.items():
        assert got[metric] == pytest.approx(float(best[reported]), rel=1e-6), metric
