"""Process facts for JAX's multi-controller runtime: one Python process per host, one global mesh.

    from align import distributed
    distributed.initialize()          # before anything touches a device; a no-op on one process
    if distributed.is_primary(): write_run_files()
    distributed.barrier("run-files")  # the others wait until they exist

Every process runs the same program on its own devices, and `jax.devices()` spans all of them, so the
mesh and the sharding rules need nothing new. What does: run files are written by process 0 only
(others wait at a barrier), each process feeds only the rows of a batch its devices hold
(`process_rows`, `global_array`), and arrays spread over several hosts are gathered before they reach
numpy (`host_array`). Orbax checkpoints are the exception: every process saves and restores them.

Where the peers come from (`settings_from_env`, first match wins):
    JAX_COORDINATOR_ADDRESS=host:port, JAX_NUM_PROCESSES, JAX_PROCESS_ID   explicit, any cluster
    ALIGN_DISTRIBUTED=slurm     derived from SLURM_* of an `srun` task (`slurm_settings`)
    ALIGN_DISTRIBUTED=1         jax.distributed.initialize() discovers them (Cloud TPU, GKE, SLURM)
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping

import jax
import numpy as np

COORDINATOR, NUM_PROCESSES, PROCESS_ID = "JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"
MODE = "ALIGN_DISTRIBUTED"  # 1: let JAX detect the cluster; slurm: derive from SLURM_*
PORT = "ALIGN_COORDINATOR_PORT"
DEFAULT_PORT = 8476  # the port JAX's own cluster detection uses for the coordinator


@dataclasses.dataclass(frozen=True)
class ProcessSettings:
    """jax.distributed.initialize's arguments; all None: let JAX detect the cluster."""

    coordinator_address: str | None = None
    num_processes: int | None = None
    process_id: int | None = None


def requested(env: Mapping[str, str] = os.environ) -> bool:
    """Whether the environment asks for a multi-process run."""
    return bool(env.get(COORDINATOR) or env.get(MODE) in ("1", "slurm"))


def expand_hostlist(hostlist: str) -> list[str]:
    """SLURM's compressed host list -> host names: "gpu[01-03,07],cpu5" -> gpu01 gpu02 gpu03 gpu07 cpu5."""
    hosts = []
    for prefix, ranges, plain in re.findall(r"([^,\[]+)\[([^\]]+)\]|([^,\[\]]+)", hostlist):
        if plain:
            hosts.append(plain)
            continue
        for part in ranges.split(","):
            lo, _, hi = part.partition("-")
            # zero padding is kept: node[08-10] -> node08 node09 node10
            hosts += [f"{prefix}{i:0{len(lo)}d}" for i in range(int(lo), int(hi or lo) + 1)]
    return hosts


def slurm_settings(env: Mapping[str, str]) -> ProcessSettings:
    """The coordinator on the first host of the step (port ALIGN_COORDINATOR_PORT or 8476), one process
    per task: SLURM_NTASKS processes, this one SLURM_PROCID."""
    missing = [k for k in ("SLURM_NTASKS", "SLURM_PROCID") if k not in env]
    nodes = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST")
    if missing or not nodes:
        raise RuntimeError(
            f"{MODE}=slurm outside an srun task: {', '.join(missing) or 'SLURM_JOB_NODELIST'} is not set"
        )
    host = expand_hostlist(nodes)[0]
    return ProcessSettings(
        coordinator_address=f"{host}:{env.get(PORT, DEFAULT_PORT)}",
        num_processes=int(env["SLURM_NTASKS"]),
        process_id=int(env["SLURM_PROCID"]),
    )


def settings_from_env(env: Mapping[str, str] = os.environ) -> ProcessSettings | None:
    """What `initialize` passes to jax.distributed.initialize; None: a single-process run."""
    if env.get(COORDINATOR):
        return ProcessSettings(env[COORDINATOR], int(env[NUM_PROCESSES]), int(env[PROCESS_ID]))
    if env.get(MODE) == "slurm":
        return slurm_settings(env)
    if env.get(MODE) == "1":
        return ProcessSettings()
    return None


def initialize(settings: ProcessSettings | None = None) -> bool:
    """Join the multi-process runtime (`settings`, else `settings_from_env()`); a no-op when neither asks
    for one. Must run before anything touches a device. Returns whether it joined (or had joined: a
    second call, e.g. a second command in one process, is a no-op)."""
    if jax.distributed.is_initialized():
        return True
    settings = settings_from_env() if settings is None else settings
    if settings is None:
        return False
    jax.distributed.initialize(**dataclasses.asdict(settings))
    return True


def process_index() -> int:
    return jax.process_index()


def process_count() -> int:
    return jax.process_count()


def is_primary() -> bool:
    """Whether this process writes the run's files (process 0; always true on one process)."""
    return jax.process_index() == 0


def one_program_at_a_time() -> bool:
    """Whether a loop of dependent programs should wait for each before dispatching the next: on
    several CPU processes. XLA:CPU runs cross-process collectives over gloo, and with several programs
    in flight a process can block in one collective while its peer blocks in another (a PPO update
    loop hung so in tests/multihost: 2 processes x 2 devices on a loaded 2-core machine). Accelerators
    order collectives by launch and keep asynchronous dispatch."""
    return jax.process_count() > 1 and jax.default_backend() == "cpu"


def barrier(name: str) -> None:
    """Every process waits here until all have arrived (a no-op on one process). `name` must be the
    same on every process and each barrier's name distinct in sequence, so a mismatch fails loudly."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def host_array(x) -> np.ndarray:
    """`x` as one numpy array on every process, gathered from other hosts when they hold parts of it.

    np.asarray cannot read a jax.Array whose shards live on other hosts (FSDP over several hosts), so
    those go through process_allgather, a collective: every process must call this for the same arrays
    in the same order. A replicated array (a jitted mean, a metric) is read from this process's copy."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable and not x.is_fully_replicated:
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)


def process_rows(sharding: jax.sharding.Sharding, rows: int) -> slice:
    """The rows of a [rows, ...] array sharded on its first dimension by `sharding` that this process's
    devices hold: the slice of each global batch it reads, tokenizes and collates (all rows on one
    process). Refuses a layout where they are not one contiguous block."""
    spans = sorted(
        {
            (0 if s.start is None else s.start, rows if s.stop is None else s.stop)
            for (s, *_) in sharding.addressable_devices_indices_map((rows,)).values()
        }
    )
    lo, hi = spans[0][0], max(stop for _, stop in spans)
    covered = lo
    for start, stop in spans:
        if start > covered:
            raise ValueError(f"process {jax.process_index()} holds rows {spans}: not one contiguous block")
        covered = max(covered, stop)
    return slice(lo, hi)


def global_array(local: np.ndarray, sharding: jax.sharding.Sharding, rows: int) -> jax.Array:
    """The [rows, ...] global array whose process_rows(sharding, rows) block is `local` on this process."""
    return jax.make_array_from_process_local_data(sharding, local, (rows, *np.shape(local)[1:]))
