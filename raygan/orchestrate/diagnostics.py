"""What Train workers can record or do for tests and debugging, switched on by
environment variables that the driver sets before Ray starts (trial processes inherit
them). Off by default; the training math never depends on them."""
from __future__ import annotations

import json
import os
from pathlib import Path

from raygan.cache import fingerprint

TRACE_ENV = "RAYGAN_WORKER_TRACE"  # "1": every rank logs what it did to <log dir>/worker_trace/rank<r>.jsonl
KILL_ENV = "RAYGAN_KILL_WORKER_AT_STEP"  # N: rank 0's process SIGKILLs itself once, when step N is to be reported


class WorkerTrace:
    """One rank's record as JSON lines: where it ran and which step it resumed from,
    fingerprints of the parameters and gradients at every gradient synchronisation,
    the ids of the unpaired rows it consumed, the steps it reported."""

    def __init__(self, folder: str, rank: int, **start):
        Path(folder).mkdir(parents=True, exist_ok=True)
        self.file = open(Path(folder) / f"rank{rank}.jsonl", "a", buffering=1)
        self.log(event="start", rank=rank, pid=os.getpid(), **start)

    def log(self, **event) -> None:
        self.file.write(json.dumps(event) + "\n")

    def sync(self, grad_sync):
        def traced(params):
            params = list(params)
            local = fingerprint((p.grad for p in params), 16)
            grad_sync(params)
            self.log(event="sync", params=fingerprint(params, 16), local_grads=local,
                     grads=fingerprint((p.grad for p in params), 16))
        return traced

    def shards(self, get_shard):
        trace = self

        class TracedShard:
            def __init__(self, name):
                self.name, self.shard = name, get_shard(name)

            def iter_batches(self, **kwargs):
                for batch in self.shard.iter_batches(**kwargs):
                    trace.log(event="rows", dataset=self.name, index=[int(i) for i in batch["index"]])
                    yield batch
        return TracedShard
