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
        # address "local": always a new instance. Without it ray.init joins the machine's latest
        # recorded instance when one is still up (a multi-node test's cluster shutting down, seen
        # under load): this session's driver then dies with that instance's GCS.
        ray.init(address="local", num_cpus=2, include_dashboard=True, dashboard_host="127.0.0.1",
                 configure_logging=False)
    return ray


# The suite runs on two pytest-xdist workers (pyproject.toml: `-n 2`). Every module whose tests
# start Ray (in this process, in a subprocess, or as a cluster) is in one scope, run by one worker
# in file order, so that two Ray instances never run side by side (they would share /tmp/ray and
# each other's CPUs) and the shared instance above is reused module to module. The other worker
# runs the modules without Ray meanwhile, each module as a unit (its module-scoped fixtures are
# built once). A scheduler rather than xdist_group markers: xdist 3.8 renames node ids for
# groups in a way pytest 9.2 ignores, which ran Ray modules on both workers.
RAY_MODULES = frozenset({
    "test_dashboard", "test_fault_tolerance", "test_folder_target_e2e", "test_gpu_check", "test_gpu_path",
    "test_multinode", "test_pbt", "test_ray_instance", "test_real_layouts", "test_realism_plateau",
    "test_replicates", "test_report_e2e", "test_resume", "test_streams", "test_study_db", "test_tune_e2e",
})


def _module_of(nodeid: str) -> str:
    return nodeid.split("::")[0].rpartition("/")[2].removesuffix(".py")


def pytest_xdist_make_scheduler(config, log):
    from xdist.scheduler import LoadScopeScheduling

    class RayModulesTogether(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = _module_of(nodeid)
            return "ray" if module in RAY_MODULES else module

    return RayModulesTogether(config, log)


@pytest.fixture(autouse=True)
def _ray_only_in_ray_modules(request, monkeypatch):
    """A test outside RAY_MODULES that starts Ray fails at once, naming the fix, instead of
    running a second Ray instance beside the Ray group's."""
    if _module_of(request.node.nodeid) in RAY_MODULES:
        return
    ray = pytest.importorskip("ray")

    def refuse(*args, **kwargs):
        raise RuntimeError(f"{request.node.nodeid} starts Ray: add its module to RAY_MODULES in tests/conftest.py")

    monkeypatch.setattr(ray, "init", refuse)
