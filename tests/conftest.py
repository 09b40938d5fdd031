"""Fixtures shared by test files."""
import os

import pytest
import torch

from raygan.cache import TEST_NETWORKS

# One torch thread in the test process, whichever tests are selected (test_miou.py and
# test_scenes.py also set it when imported, i.e. for the whole suite): besides Ray's worker
# processes on 2 cores, a second thread only spins (a test-size SegNet: 3 s of CPU on one
# thread, 46 s on two beside other work).
torch.set_num_threads(1)

# Tests run Ray Train as raygan does (V2, raygan/orchestrate/tune.py set_ray_env); ray.train reads
# it when first imported, which may be while the test modules are collected.
os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
# Read by Ray's processes when a local instance starts: Train notices a run's start and end
# sooner. Set for the whole session: every instance the suite starts (the shared one, a
# `raygan tune`'s, a subprocess's) inherits it.
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.25")
# Test-size ShapesNet and SegNet (raygan.cache.test_networks): a test that needs them only to
# run a code path does not pay their real training (~50 s each from a cold cache). Set before
# any Ray instance or subprocess starts: they inherit it. `RAYGAN_TEST_NETWORKS=0 pytest`
# runs the whole suite on the real networks.
os.environ.setdefault(TEST_NETWORKS, "1")


@pytest.fixture(scope="module")
def local_ray():
    """The suite's one local Ray instance (2 CPUs; the dashboard, which `raygan tune` asks for),
    started by the first module that needs it and never shut down by its users, so that the
    next module reuses it (its start and its warm worker processes). Tests that must own an
    instance (killed drivers, multi-node, their own environment in the workers) shut it down
    first; the next module that takes this fixture starts it again."""
    ray = pytest.importorskip("ray")
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=True, dashboard_host="127.0.0.1", configure_logging=False)
    return ray
