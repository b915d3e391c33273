"""Launch N Python processes on localhost joined by jax.distributed, each with its own CPU devices.

    results = launch(["-m", "tests.multihost.worker", ...], processes=2, devices=2, timeout=90)

Every process gets JAX_COORDINATOR_ADDRESS=localhost:<free port>, JAX_NUM_PROCESSES, JAX_PROCESS_ID
(what align.distributed.initialize reads), XLA_FLAGS=--xla_force_host_platform_device_count=<devices>
(with tests/xla.py's compile flags) and CPU collectives over gloo (XLA:CPU's cross-process
implementation). processes=1 runs the same program alone, without a coordinator: the single-process
reference on `devices` devices.

When a process exits with an error (a SIGKILL included) the others are killed, as a job scheduler
does when a host is lost, instead of leaving them blocked in a collective. A run past `timeout` kills
every process, after SIGUSR1 (a worker that registered faulthandler for it prints every thread's
stack: where a hung run waits); `check` then raises MultihostFailure with each process's exit code
and output tail.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from tests.xla import FAST_COMPILE

ROOT = Path(__file__).resolve().parents[2]
TAIL = 3000  # characters of each process's output shown on failure
HUNG_TAIL = 12000  # a timed-out process: its thread stacks too


class MultihostFailure(AssertionError):
    """A multi-process run failed or timed out; the message holds every process's output tail."""


@dataclasses.dataclass
class ProcessResult:
    index: int
    returncode: int | None  # None: killed at the timeout
    output: str  # stdout and stderr together

    def describe(self) -> str:
        tail = TAIL if self.returncode is not None else HUNG_TAIL
        return f"--- process {self.index}: exit code {self.returncode} ---\n{self.output[-tail:]}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def process_env(index: int, processes: int, devices: int, port: int, extra: Mapping[str, str]) -> dict:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("JAX_", "XLA_", "ALIGN_DISTRIBUTED", "PYTEST_"))
    }
    env.update(
        PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        JAX_PLATFORMS="cpu",
        XLA_FLAGS=f"--xla_force_host_platform_device_count={devices} {FAST_COMPILE}",
        JAX_CPU_COLLECTIVES_IMPLEMENTATION="gloo",
        JAX_DEFAULT_MATMUL_PRECISION="highest",  # as tests/conftest.py: exact float32 matmuls
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        # every program is cached (when JAX_COMPILATION_CACHE_DIR is given): tiny ones compile fast
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
        JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="-1",
    )
    if processes > 1:
        env.update(
            JAX_COORDINATOR_ADDRESS=f"localhost:{port}",
            JAX_NUM_PROCESSES=str(processes),
            JAX_PROCESS_ID=str(index),
            # the rank on this host, as torchrun sets it: lm-eval's IFEval checkers (the eval's ifeval
            # suite) download NLTK's punkt_tab on import when it is missing, on local rank 0 only
            LOCAL_RANK=str(index),
        )
    env.update(extra)
    return env


def _kill_all(procs: Sequence[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
    for p in procs:
        p.wait()


def _dump_stacks(procs: Sequence[subprocess.Popen], wait: float = 3.0) -> None:
    """SIGUSR1 to every running process (tests.multihost.worker prints its threads' stacks on it)."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGUSR1)
    time.sleep(wait)


def launch(
    args: Sequence[str],
    *,
    processes: int = 2,
    devices: int = 2,
    timeout: float = 240.0,
    env: Mapping[str, str] | None = None,
) -> list[ProcessResult]:
    """Run `python *args` as `processes` processes (see the module docstring); one result per process."""
    port = free_port()
    procs, logs = [], []
    for i in range(processes):
        log = tempfile.TemporaryFile(mode="w+")  # a file, not a pipe: a chatty process never blocks
        logs.append(log)
        procs.append(
            subprocess.Popen(
                [sys.executable, *args],
                cwd=ROOT,
                env=process_env(i, processes, devices, port, env or {}),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
    deadline, running = time.monotonic() + timeout, list(procs)
    try:
        while any(p.poll() is None for p in procs):
            if any(p.poll() not in (None, 0) for p in procs):
                break  # one failed or was killed: the others would wait for it in a collective
            if time.monotonic() > deadline:
                break
            time.sleep(0.1)
    finally:
        running = [p.poll() is None for p in procs]
        if any(running) and time.monotonic() > deadline:
            _dump_stacks(procs)
        _kill_all(procs)
    results = []
    for i, (p, log, timed_out) in enumerate(zip(procs, logs, running)):
        log.seek(0)
        output = log.read() + ("\n[killed by the harness]" if timed_out else "")
        results.append(ProcessResult(i, None if timed_out else p.returncode, output))
        log.close()
    return results


def check(results: Sequence[ProcessResult], what: str) -> None:
    """MultihostFailure unless every process exited 0."""
    if any(r.returncode != 0 for r in results):
        raise MultihostFailure(f"{what} failed:\n" + "\n".join(r.describe() for r in results))
