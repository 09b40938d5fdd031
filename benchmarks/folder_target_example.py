"""The README's folder-target example (benchmarks/RESULTS.md #28): the embedded source adapted by
RSSA to a folder of 10 painted ink drawings (raygan.data.painted), 60 more as the reference set.
Writes OUT/target, OUT/reference and OUT/ink_rssa.yaml, then prints the command that trains it
(about 12 minutes on 2 CPU cores) and the one that draws its grid.
Usage: python benchmarks/folder_target_example.py OUT
"""
from __future__ import annotations

import sys
import textwrap
from pathlib import Path

from _common import machine_line

from raygan.data.painted import write_scenes


def main(out: Path) -> None:
    print(machine_line(), flush=True)
    target = write_scenes(out / "target", 10, 100, "ink")
    reference = write_scenes(out / "reference", 60, 101, "ink")
    experiment = out / "ink_rssa.yaml"
    experiment.write_text(textwrap.dedent(f"""\
        name: ink_rssa_2000
        method: {{name: rssa}}
        data:
          target: {target.resolve()}
          shots: 10
          reference: {reference.resolve()}
        model: {{checkpoint: embedded}}
        train: {{steps: 2000, eval_every: 200, eval_samples: 500}}
        output: {{dir: {(out / 'out').resolve()}}}
        """))
    print(f"raygan train {experiment} --local")
    print(f"raygan generate {(out / 'out' / 'ink_rssa_2000' / 'checkpoint.pt').resolve()} --n 10 --source embedded")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__.strip().splitlines()[-1])
    main(Path(sys.argv[1]))
