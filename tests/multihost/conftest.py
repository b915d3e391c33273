"""The launches every multi-process test (test_multihost.py) reads: every stage of tests.multihost.cases
(SFT, eval, PPO, GRPO, distill, DPO, RM) in one command list, made once per test session: a single-process
reference and a 2-process run with a SIGKILL and a restart."""

from __future__ import annotations

import os

import pytest

from tests.multihost.cases import worker_argv
from tests.multihost.harness import check, launch
from tests.paths import DATA

# every stage of one launch, on a loaded 2-core machine (lower it to find a hang sooner)
TIMEOUT = float(os.environ.get("ALIGN_TEST_LAUNCH_TIMEOUT", 900))


@pytest.fixture(scope="session")
def launch_env(tmp_path_factory):
    """One compilation cache for every launch (a restarted run does not compile again), and the
    shared data directory the RL configs read their prompts from."""
    return {
        "JAX_COMPILATION_CACHE_DIR": str(tmp_path_factory.mktemp("jax-cache")),
        "ALIGN_DATA_DIR": str(DATA),
    }


@pytest.fixture(scope="session")
def single(tmp_path_factory, launch_env):
    """The reference: one process, 4 devices, the same mesh; returns its run directory."""
    root = tmp_path_factory.mktemp("single")
    check(launch(worker_argv(root), processes=1, devices=4, env=launch_env, timeout=TIMEOUT), "one process")
    return root / "run"


@pytest.fixture(scope="session")
def multi(tmp_path_factory, launch_env):
    """2 processes: process 1 SIGKILLed right after its SFT step-4 checkpoint (the harness kills process
    0 too), then both restarted; the restarted run finishes SFT and runs every later stage. Returns
    (root, the first launch's results, whether it stopped before SFT's summary)."""
    root = tmp_path_factory.mktemp("multi")
    argv = worker_argv(root)
    kill = {**launch_env, "ALIGN_TEST_KILL_AT_CHECKPOINT": "4", "ALIGN_TEST_KILL_PROCESS": "1"}
    first = launch(argv, processes=2, devices=2, env=kill, timeout=TIMEOUT)
    stopped_early = not (root / "run" / "summary.json").exists()
    check(launch(argv, processes=2, devices=2, env=launch_env, timeout=TIMEOUT), "the restarted 2 processes")
    return root, first, stopped_early
