"""search.repeats: each configuration trained on k seeds, every report over the seeds; and the
confirmation stage (search.confirm_top) that reruns the best configurations on fresh seeds.
One `raygan tune` run checks both (each run through Ray costs tens of seconds)."""
import csv
import json
import math
import statistics

import pytest
import torch

from raygan.cli import main
from raygan.report.page import write_report
from test_tune_e2e import tune

REPEATED = """
name: repeated
method:
  name: dcl
  lambda1: {loguniform: [0.5, 5.0]}
train:
  steps: 4
  batch_size: 2
  eval_every: 2
  eval_samples: 20
search:
  num_samples: 2
  max_concurrent: 1
  searcher: random
  repeats: 2
  confirm_top: 2
  confirm_seeds: 2
  confirm_rounds: 1
scaling:
  cpus_per_worker: 0.5
"""


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_replicated_trials_report_their_seeds_and_the_confirmation_pools_fresh_ones(local_ray, tmp_path, capsys,
                                                                                   monkeypatch):
    space, out, printed = tune(tmp_path, monkeypatch, capsys, "repeated", REPEATED)
    exp_dir = out / "repeated"
    searched = sorted(exp_dir.glob("_trial_*"))
    assert len(searched) == 2
    for folder in searched:
        history = [json.loads(line) for line in (folder / "result.json").read_text().splitlines()]
        assert [h["step"] for h in history] == [0, 2, 4]
        for h in history:  # the reported value is the two seeds' mean, with its standard error
            seeds = [h["seed0/fd_shapesnet"], h["seed1/fd_shapesnet"]]
            assert seeds[0] != seeds[1]  # two seeds, two runs
            assert h["fd_shapesnet"] == pytest.approx(statistics.fmean(seeds))
            assert h["fd_shapesnet/sem"] == pytest.approx(statistics.stdev(seeds) / math.sqrt(2))
        best = min((h for h in history if h["step"] > 0), key=lambda h: h["fd_shapesnet"])
        assert history[-1]["best/fd_shapesnet"] == pytest.approx(best["fd_shapesnet"])
        for i in (0, 1):  # every seed's state at the configuration's best step, and its own logs
            state = torch.load(folder / f"seed_{i}" / "best" / "state.pt", weights_only=True)
            assert state["step"] == best["step"]
            assert list((folder / f"seed_{i}").glob("events.out.tfevents*"))
        assert (folder / "best" / "samples.png").is_file()

    # the confirmation round: both configurations once more, on 2 fresh seeds each
    assert len(list(exp_dir.glob("confirm_1/_trial_*"))) == 2
    rows = list(csv.DictReader(open(exp_dir / "results.csv")))
    for r in rows:  # each confirmed configuration pools the search's 2 seeds and the round's 2
        assert r["confirmed_seeds"] == "4"
        seeds = [float(r[f"seed{i}/fd_shapesnet"]) for i in range(4)]
        assert float(r["fd_shapesnet"]) == pytest.approx(statistics.fmean(seeds))
        assert not set(seeds[:2]) & set(seeds[2:])  # fresh seeds (train.seed + 1000 on), not the search's again
    assert rows[0]["vs_rank1"] == "rank 1" and rows[1]["vs_rank1"].startswith(("tied", "worse"))
    # the table shows each objective's spread; the closing line says what is within noise
    assert " ± " in printed and "4 seeds each, after the confirmation stage" in printed
    assert "seeds' states" in (exp_dir / "best_config.yaml").read_text()

    # `raygan eval` of a replicated trial scores each seed's kept state and their mean ± sd
    capsys.readouterr()
    assert main(["eval", str(searched[0]), "--metrics", "realism", "--samples", "8"]) == 0
    table = capsys.readouterr().out
    (written,) = searched[0].glob("eval_*.json")
    report = json.loads(written.read_text())
    assert [c["checkpoint"] for c in report["checkpoints"]] == [
        str((searched[0] / f"seed_{i}" / "best" / "state.pt").resolve()) for i in (0, 1)]
    assert report["checkpoints"][0]["checkpoint_sha256"] != report["checkpoints"][1]["checkpoint_sha256"]
    per_seed = [r["value"] for r in report["scores"] if "seed" in r]
    (mean,) = [r for r in report["scores"] if "seeds" in r]
    assert len(per_seed) == 2 and mean["seeds"] == per_seed
    assert mean["value"] == pytest.approx(statistics.fmean(per_seed))
    assert mean["seed_sd"] == pytest.approx(statistics.stdev(per_seed))
    assert "realism (seed 1)" in table and "realism (2 seeds)" in table and " sd" in table

    # the report ranks in the confirmed order and draws each configuration's seeds
    page = write_report(exp_dir).read_text()
    order = [r["trial"] for r in rows]
    assert page.index(f'href="#trial-{order[0]}"') < page.index(f'href="#trial-{order[1]}"')
    assert "confirmation stage's order" in page and (exp_dir / "report" / "seeds.png").is_file()
