"""Fixtures shared by test files."""
import os

import pytest

from raygan.cache import TEST_NETWORKS

# Tests run Ray Train as raygan does (V2, raygan/orchestrate/tune.py set_ray_env); ray.train reads
# it when first imported, which may be while the test modules are collected.
os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
# Read by Ray's processes when a local instance starts: Train notices a run's start and end sooner.
HEALTH_CHECK = "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"
# Test-size ShapesNet and SegNet (raygan.cache.test_networks): a test that needs them only to
# run a code path does not pay their real training (~50 s each from a cold cache). Set before
# any Ray instance or subprocess starts: they inherit it. `RAYGAN_TEST_NETWORKS=0 pytest`
# runs the whole suite on the real networks.
os.environ.setdefault(TEST_NETWORKS, "1")


@pytest.fixture
def real_networks(monkeypatch):
    """The real ShapesNet and SegNet in this process, for a test that checks their metrics' values."""
    monkeypatch.setenv(TEST_NETWORKS, "0")


@pytest.fixture(scope="module")
def local_ray():
    """A local 2-CPU Ray instance for the test module (or the one this process already runs)."""
    ray = pytest.importorskip("ray")
    saved = os.environ.get(HEALTH_CHECK)
    os.environ.setdefault(HEALTH_CHECK, "0.25")
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, configure_logging=False)
    yield ray
    if started:
        ray.shutdown()
    if saved is None:
        os.environ.pop(HEALTH_CHECK, None)
