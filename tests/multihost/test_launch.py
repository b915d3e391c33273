"""The launch recipes of docs/multihost.md, dry-run: the command each script would run and the JAX
settings each process would get; align.distributed's reading of the environment."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import pytest

from align import distributed
from align.distributed import ProcessSettings, expand_hostlist, settings_from_env, slurm_settings

ROOT = Path(__file__).resolve().parents[2]
LAUNCH = ROOT / "scripts" / "launch"


def dry_run(script: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    environ.update(DRY_RUN="1", PYTHONPATH=str(ROOT), **env)
    return subprocess.run(
        ["bash", str(LAUNCH / script), *args], capture_output=True, text=True, env=environ, timeout=60
    )


@pytest.mark.parametrize(
    "hostlist,hosts",
    [
        ("node1", ["node1"]),
        ("gpu[01-03,07]", ["gpu01", "gpu02", "gpu03", "gpu07"]),
        ("a[8-10],b5", ["a8", "a9", "a10", "b5"]),
        ("n[098-100]", ["n098", "n099", "n100"]),
    ],
)
def test_slurm_host_lists_expand_as_scontrol_does(hostlist, hosts):
    assert expand_hostlist(hostlist) == hosts


def test_slurm_tasks_map_to_one_jax_process_each():
    env = {"SLURM_NTASKS": "4", "SLURM_PROCID": "3", "SLURM_JOB_NODELIST": "gpu[12-15]"}
    assert slurm_settings(env) == ProcessSettings("gpu12:8476", 4, 3)
    # the step's node list wins over the job's (an srun on part of the allocation); the port is settable
    env |= {"SLURM_STEP_NODELIST": "gpu[14-15]", distributed.PORT: "1234"}
    assert slurm_settings(env) == ProcessSettings("gpu14:1234", 4, 3)
    with pytest.raises(RuntimeError, match="SLURM_PROCID"):
        slurm_settings({"SLURM_NTASKS": "2", "SLURM_JOB_NODELIST": "x"})


def test_the_environment_picks_how_processes_find_each_other():
    assert settings_from_env({}) is None and not distributed.requested({})
    explicit = {"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "1"}
    assert settings_from_env(explicit) == ProcessSettings("h:1", 2, 1)
    slurm = {"SLURM_NTASKS": "2", "SLURM_PROCID": "0", "SLURM_JOB_NODELIST": "g[1-2]"}
    assert settings_from_env({**slurm, "ALIGN_DISTRIBUTED": "slurm"}) == ProcessSettings("g1:8476", 2, 0)
    assert settings_from_env({**explicit, **slurm, "ALIGN_DISTRIBUTED": "slurm"}).coordinator_address == "h:1"
    assert settings_from_env({"ALIGN_DISTRIBUTED": "1"}) == ProcessSettings()  # JAX detects the cluster


def test_initialize_is_a_no_op_on_one_process(monkeypatch):
    import jax

    for name in ("JAX_COORDINATOR_ADDRESS", "ALIGN_DISTRIBUTED"):
        monkeypatch.delenv(name, raising=False)
    assert distributed.initialize() is False
    assert jax.process_count() == 1 and distributed.is_primary()
    distributed.barrier("one-process")  # returns at once


def test_tpu_vm_recipe_runs_the_command_on_every_worker():
    out = dry_run("tpu_vm.sh", "my-tpu", "us-central2-b", "sft", "--config", "c d.yaml", "train.seed=1")
    assert out.returncode == 0, out.stderr
    argv = shlex.split(out.stdout)
    assert argv[:10] == [
        "gcloud", "compute", "tpus", "tpu-vm", "ssh", "my-tpu", "--zone", "us-central2-b", "--worker=all",
        "--command",
    ]  # fmt: skip
    assert shlex.split(argv[10]) == [
        "cd", "~/align", "&&", "ALIGN_DISTRIBUTED=1", ".venv/bin/align", "sft", "--config", "c d.yaml",
        "train.seed=1",
    ]  # fmt: skip


def test_xpk_recipe_creates_one_workload_over_the_slices():
    out = dry_run(
        "xpk.sh", "cl", "v5litepod-16", "2", "img:1", "sft", "--config", "c.yaml", ALIGN_WORKLOAD="w"
    )
    assert out.returncode == 0, out.stderr
    argv = shlex.split(out.stdout)
    assert argv[:3] == ["xpk", "workload", "create"]
    flags = dict(zip(argv[3::2], argv[4::2]))
    assert flags == {
        "--cluster": "cl",
        "--workload": "w",
        "--tpu-type": "v5litepod-16",
        "--num-slices": "2",
        "--docker-image": "img:1",
        "--command": "ALIGN_DISTRIBUTED=1 align sft --config c.yaml",
    }


def test_slurm_recipe_gives_each_task_its_process_id_and_one_coordinator():
    out = dry_run(
        "slurm.sbatch", "sft", "--config", "c.yaml", SLURM_NNODES="2", SLURM_JOB_NODELIST="gpu[08-09]",
        ALIGN_DIR=str(ROOT),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    srun, *tasks = out.stdout.strip().splitlines()
    assert shlex.split(srun) == [
        "srun", "--nodes=2", "--ntasks-per-node=1", "--kill-on-bad-exit=1", "env", "ALIGN_DISTRIBUTED=slurm",
        f"{ROOT}/.venv/bin/align", "sft", "--config", "c.yaml",
    ]  # fmt: skip
    assert tasks == [
        f"task {i}: JAX_COORDINATOR_ADDRESS=gpu08:8476 JAX_NUM_PROCESSES=2 JAX_PROCESS_ID={i}" for i in (0, 1)
    ]


@pytest.mark.parametrize("script", ["tpu_vm.sh", "xpk.sh", "slurm.sbatch"])
def test_a_recipe_without_its_arguments_says_how_to_call_it(script):
    out = dry_run(script)
    assert out.returncode == 2 and out.stderr.startswith("usage:")


def test_one_file_reads_the_shared_launches():
    """conftest's `single`/`multi` launches are session fixtures of each pytest-xdist worker: a second
    test file reading them could land on the other worker (`--dist loadfile`) and launch every stage
    again, beside the first, on CI's 2 cores."""
    import ast

    readers = set()
    for path in sorted(Path(__file__).parent.glob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                if {a.arg for a in node.args.args} & {"single", "multi"}:
                    readers.add(path.name)
    assert readers == {"test_multihost.py"}


def test_a_hung_launch_is_killed_with_every_thread_stack(tmp_path):
    """The harness's timeout path: each process SIGUSR1-ed (the worker prints its stacks), then killed."""
    from tests.multihost.harness import MultihostFailure, check, launch

    script = tmp_path / "hang.py"
    script.write_text(
        "import faulthandler, signal, time\n"
        "faulthandler.register(signal.SIGUSR1, all_threads=True)\n"
        "def wait_in_a_collective():\n    time.sleep(600)\n"
        "print('started', flush=True)\nwait_in_a_collective()\n"
    )
    results = launch([str(script)], processes=2, timeout=3)
    assert [r.returncode for r in results] == [None, None]
    with pytest.raises(MultihostFailure) as failure:
        check(results, "the hung run")
    assert failure.value.args[0].count("in wait_in_a_collective") == 2  # one stack per process
