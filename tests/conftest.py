"""Fixtures shared by test files."""
import os
import shutil
import tempfile
from pathlib import Path

import pytest
import torch
from ray_processes import kill_leftovers

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
# Ray kills a worker process that has idled 1 s beyond the CPU count's worth of idle workers, and
# starts a fresh one (importing torch and raygan again, ~5 s of CPU) for the next task: a
# replicated trial's seeds, Ray Data's read tasks. Kept idle in the suite's instances instead
# (test_replicates.py alone: 80 -> 61 s of CPU, 9 -> 4 worker processes).
os.environ.setdefault("RAY_idle_worker_killing_time_threshold_ms", "600000")


@pytest.fixture(scope="module")
def local_ray():
    """The suite's one local Ray instance (2 CPUs; the dashboard, which `raygan tune` asks for),
    started by the first module that needs it and never shut down by its users, so that the
    next module reuses it (its start and its warm worker processes). A module that must own its
    instance in this process (the multi-node cluster) shuts it down first; the next module that
    takes this fixture starts it again. Killed drivers and `ray start` run in subprocesses on
    their own temp folder (OWN_RAY_MODULES below)."""
    ray = pytest.importorskip("ray")
    if not ray.is_initialized():
        # address "local": always a new instance. Without it ray.init joins the machine's latest
        # recorded instance when one is still up (a multi-node test's cluster shutting down, seen
        # under load): this session's driver then dies with that instance's GCS.
        ray.init(address="local", num_cpus=2, include_dashboard=True, dashboard_host="127.0.0.1",
                 configure_logging=False)
    return ray


@pytest.fixture
def ray_tmp():
    """A Ray temp folder of the test's own (RAY_TMPDIR for the Ray processes it starts: their
    sessions, sockets and the address `ray start` records), so that they touch no other instance
    on the machine; whatever Ray left running under it is killed afterwards."""
    d = Path(tempfile.mkdtemp(prefix="rg", dir="/tmp"))  # short: Ray's socket paths live under it
    try:
        yield d
    finally:
        kill_leftovers(d)
        shutil.rmtree(d, ignore_errors=True)


# The suite runs on two pytest-xdist workers (pyproject.toml: `-n 2`). Every module whose tests
# start Ray in this process or on /tmp/ray (the shared instance above, a cluster, `raygan tune`
# in-process) is in one scope, "ray", run by one worker in file order (the module that shuts the
# shared instance down first), so that those instances never run side by side and the shared one
# is reused module to module. The modules in OWN_RAY_MODULES start Ray only in processes of their
# own, each on its own temp folder (the ray_tmp fixture), so they touch no other instance: they
# are a second scope, "own_ray", which the other worker runs beside the Ray group (their Ray
# mostly waits: a driver to be killed, a dashboard to answer); the modules without Ray fill the
# rest, each module as a unit (its module-scoped fixtures are built once). A scheduler rather
# than xdist_group markers: xdist 3.8 renames node ids for groups in a way pytest 9.2 ignores,
# which ran Ray modules on both workers.
RAY_MODULES = frozenset({
    "test_fault_tolerance", "test_folder_target_e2e", "test_gpu_path", "test_multinode", "test_pbt",
    "test_real_layouts", "test_realism_plateau", "test_replicates", "test_report_e2e", "test_streams",
    "test_tune_e2e",
})
OWN_RAY_MODULES = frozenset({
    "test_dashboard", "test_gpu_check", "test_pretrain_e2e", "test_ray_instance", "test_resume",
})
# The Ray module that starts (and then shuts down) a cluster of its own in this process: first,
# so that the shared instance starts once, after it.
OWN_INSTANCE_FIRST = ("test_multinode",)


def _module_of(nodeid: str) -> str:
    return nodeid.split("::")[0].rpartition("/")[2].removesuffix(".py")


def pytest_collection_modifyitems(items):
    items.sort(key=lambda item: _module_of(item.nodeid) not in OWN_INSTANCE_FIRST)  # stable: file order otherwise


def pytest_xdist_make_scheduler(config, log):
    from xdist.scheduler import LoadScopeScheduling

    class RayModulesTogether(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = _module_of(nodeid)
            return "ray" if module in RAY_MODULES else "own_ray" if module in OWN_RAY_MODULES else module

    return RayModulesTogether(config, log)


@pytest.fixture(autouse=True)
def _ray_only_in_ray_modules(request, monkeypatch):
    """A test outside RAY_MODULES that starts Ray in this process fails at once, naming the fix,
    instead of running a second instance beside the Ray group's (OWN_RAY_MODULES start theirs
    only in subprocesses)."""
    if _module_of(request.node.nodeid) in RAY_MODULES:
        return
    ray = pytest.importorskip("ray")

    def refuse(*args, **kwargs):
        raise RuntimeError(f"{request.node.nodeid} starts Ray: add its module to RAY_MODULES in tests/conftest.py")

    monkeypatch.setattr(ray, "init", refuse)
