"""Fixtures shared by test files."""
import os

import pytest

# Ray processes read these when the instance starts (before ray.init); the user's values win.
RAY_ENV = {"RAY_TRAIN_V2_ENABLED": "1",                 # raygan runs Ray Train V2 (orchestrate/tune.py)
           "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.25"}  # Train notices a run's start and end sooner


@pytest.fixture(scope="module")
def local_ray():
    """A local 2-CPU Ray instance for the test module (or the one this process already runs)."""
    ray = pytest.importorskip("ray")
    saved = {k: os.environ.get(k) for k in RAY_ENV}
    for k, v in RAY_ENV.items():
        os.environ.setdefault(k, v)
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, configure_logging=False)
    yield ray
    if started:
        ray.shutdown()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v

