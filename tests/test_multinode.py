"""A multi-node Ray cluster on this machine (a head without CPUs and two worker nodes):
a DCL run and a semi-paired run, each with one Train worker per node (gloo), keep the
ranks' parameters identical, and each rank streams its own part of the unpaired data."""
import json
import os
import textwrap

import pytest

from raygan.cli import main

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def cluster():
    from ray.cluster_utils import Cluster

    from raygan.orchestrate.diagnostics import TRACE_ENV

    env = {"RAY_ADDRESS": None, TRACE_ENV: "1", "RAY_TRAIN_V2_ENABLED": "1",
           # the end of a run is noticed sooner; a worker group slow to start on a busy machine is no failure
           "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.2", "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S": "300"}
    saved = {k: os.environ.get(k) for k in env}
    for k, v in env.items():  # before the nodes start: their workers inherit it
        os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    ray.shutdown()  # the suite's shared instance (tests/conftest.py): this module runs on its own cluster
    mib = 1024 * 1024
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "object_store_memory": 100 * mib})
    # 2 CPUs a node: beside a 0.5-CPU Train worker, Ray Data's file listing needs a whole CPU
    nodes = [c.add_node(num_cpus=2, object_store_memory=100 * mib) for _ in range(2)]
    ray.init(address=c.address, configure_logging=False)
    c.wait_for_nodes()
    yield {"head": c.head_node.node_id, "workers": {n.node_id for n in nodes}}
    ray.shutdown()
    c.shutdown()
    for k, v in saved.items():
        os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


def _traces(log_dir):
    return [[json.loads(line) for line in open(log_dir / "worker_trace" / f"rank{r}.jsonl")] for r in (0, 1)]


def _fit(tmp_path, name, text):
    from raygan.train.loop import prepare
    from raygan.orchestrate.train import fit_trial
    from raygan.search_space import load_experiment

    path = tmp_path / f"{name}.yaml"
    path.write_text(textwrap.dedent(text))
    exp = load_experiment(path)
    prepare(exp.trial_config, [exp.trial_config["method"]["name"]], exp.path)
    log = tmp_path / name
    result = fit_trial(exp.trial_config, exp.scaling, name=name, storage=str(tmp_path / "train"), log_dir=str(log))
    return result, _traces(log)


def _check_ranks(traces, cluster, steps):
    """One worker per worker node; identical parameters at every synchronisation."""
    starts = [t[0] for t in traces]
    assert [s["rank"] for s in starts] == [0, 1] and all(s["world"] == 2 for s in starts)
    assert {s["node"] for s in starts} == cluster["workers"]  # two different nodes, not the head
    syncs = [[e for e in t if e["event"] == "sync"] for t in traces]
    assert len(syncs[0]) == len(syncs[1]) == 2 * steps  # a D and a G synchronisation per step
    for a, b in zip(*syncs):
        assert a["params"] == b["params"]  # gradients averaged, so parameters never drift apart
        assert a["grads"] == b["grads"]  # after the all-reduce
    # ... although each rank computed different gradients from its own batch
    assert all(a["local_grads"] != b["local_grads"] for a, b in zip(*syncs))
    # and the parameters did change: D's at each D synchronisation (even entries) differ step to step
    assert len({s["params"] for s in syncs[0][0::2]}) == steps


DCL = """
name: dcl2
method: {name: dcl}
train: {steps: 3, batch_size: 2, eval_every: 3, eval_samples: 20, torch_threads: 1}
scaling: {num_workers: 2, cpus_per_worker: 0.5, placement: strict_spread}
"""


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_dcl_on_two_nodes_keeps_ranks_in_sync(cluster, tmp_path):
    result, traces = _fit(tmp_path, "dcl2", DCL)
    assert result.metrics["step"] == 3 and result.metrics["fd_shapesnet"] > 0
    _check_ranks(traces, cluster, steps=3)


SEMIPAIRED = """
name: sp2
method: {name: semipaired}
data: {dataset: packed, root: PACKED, shuffle_buffer: 16}
model: {g_base: 8, d_base: 8, z_dim: 8}
train: {steps: 3, batch_size: 6, eval_every: 3, eval_samples: 20, torch_threads: 1}
scaling: {num_workers: 2, cpus_per_worker: 0.5, placement: strict_spread}
"""
# 80 scenes at r = 0.1: 72 unpaired, 36 images and 36 label maps, 18 a rank: the 3 x 6 rows
# each rank draws are exactly one epoch of its own shard, so the two ranks' rows must be
# disjoint, equally many, and together every row of the set (Train's streaming_split with
# equal=True, raygan.data.streams.data_config: nothing dropped, nothing shared)


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_semipaired_on_two_nodes_streams_a_different_shard_to_each_rank(cluster, tmp_path):
    packed = tmp_path / "packed"
    assert main(["data", "pack", "scenes", str(packed), "--n", "80", "--ratio", "0.1"]) == 0
    result, traces = _fit(tmp_path, "sp2", SEMIPAIRED.replace("PACKED", str(packed)))
    assert result.metrics["step"] == 3 and 0 <= result.metrics["miou_segnet"] <= 1
    _check_ranks(traces, cluster, steps=3)
    import pyarrow.parquet as pq

    for dataset in ("unpaired_images", "unpaired_labels"):  # both streams at once, as a step draws them
        rows = [[i for e in t if e["event"] == "rows" and e["dataset"] == dataset for i in e["index"]]
                for t in traces]
        assert len(rows[0]) == len(rows[1]) == 3 * 6  # a batch of 6 per step
        assert len(set(rows[0])) == len(set(rows[1])) == 3 * 6  # no row twice within the epoch
        assert not set(rows[0]) & set(rows[1]), dataset  # disjoint shards
        every = {i for part in (packed / dataset).glob("part-*.parquet")
                 for i in pq.read_table(part, columns=["index"])["index"].to_pylist()}
        assert len(every) == 36 and set(rows[0]) | set(rows[1]) == every, dataset  # the whole set, split
