"""`raygan train --local`: the plain loop end to end, and its checkpoint is a valid source model."""
import textwrap

import torch

from raygan.cli import main
from raygan.models.checkpoint import load_source

CFG = """
name: local
method: {name: dcl, lambda1: {loguniform: [0.1, 10.0]}}
train: {steps: 4, batch_size: 2, eval_every: 2, eval_samples: 20, torch_threads: 1}
"""


def test_train_local_writes_checkpoint_grid_and_events(tmp_path, capsys):
    cfg = tmp_path / "local.yaml"
    cfg.write_text(textwrap.dedent(CFG))
    out = tmp_path / "out"
    assert main(["train", str(cfg), "--local", "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "searched knobs take their defaults: method.lambda1" in printed
    assert "step=2" in printed and "step=4" in printed and "fd_shapesnet=" in printed
    assert printed.index("step=0 ") < printed.index("step=2 ")  # curves start at the source (DCL Fig. 2)
    run = out / "local"
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    assert state["step"] == 4
    adapted = load_source(str(run / "checkpoint.pt"))  # rosinality layout: usable as a source again
    source = load_source("embedded")
    assert adapted.g_state.keys() == source.g_state.keys()
    assert not torch.equal(adapted.g_state["conv1.conv.weight"], source.g_state["conv1.conv.weight"])
    assert (run / "samples.png").stat().st_size > 0
    assert any(p.name.startswith("events.out.tfevents") for p in run.iterdir())
    # a second run refuses to overwrite
    assert main(["train", str(cfg), "--local", "--output", str(out)]) == 2
    assert "already holds results" in capsys.readouterr().err


def test_a_diverged_local_run_stops_with_one_line(tmp_path, capsys):
    from raygan.cli import main

    (tmp_path / "nan.yaml").write_text(
        "name: nan\nmethod: {name: tgan}\n"
        "train: {steps: 4, batch_size: 2, eval_every: 2, eval_samples: 20, r1: 1.0e+38}\n"
        f"output: {{dir: {tmp_path / 'out'}}}\n")
    assert main(["train", "--local", str(tmp_path / "nan.yaml")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("raygan: stopped: ") and "non-finite at step" in err[0]
