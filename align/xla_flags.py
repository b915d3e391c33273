"""Process-wide XLA:CPU settings, applied when `align` is imported (before JAX builds its CPU client).

XLA reads the XLA_FLAGS environment variable once, when the first backend is created; per-program
`compiler_options` do not reach the CPU scheduler. So the defaults below are appended to XLA_FLAGS at
import time, unless XLA_FLAGS already names the flag (a user's choice always wins). Importing `align`
after JAX has run a computation leaves them without effect; nothing else changes then.

    --xla_cpu_enable_concurrency_optimized_scheduler=false
        XLA:CPU's default scheduler orders independent ops for thread-level concurrency and so keeps
        their buffers alive together. On gemma3-270m's SFT step switching it off cut both XLA's
        temporaries and the step time, and it makes remat work at all: under the default scheduler
        recomputed blocks were placed beside the forward pass and memory did not shrink
        (benchmarks/train_step.py; figures in benchmarks/RESULTS.md, train step). Only the CPU compiler
        reads it.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

CPU_DEFAULTS = {"--xla_cpu_enable_concurrency_optimized_scheduler": "false"}


def with_cpu_defaults(flags: str) -> str:
    """`flags` (an XLA_FLAGS value) plus every default it does not already set."""
    present = {part.split("=", 1)[0] for part in flags.split()}
    extra = [f"{name}={value}" for name, value in CPU_DEFAULTS.items() if name not in present]
    return " ".join([flags.strip(), *extra]).strip()


def apply_cpu_defaults(environ: MutableMapping[str, str] = os.environ) -> None:
    environ["XLA_FLAGS"] = with_cpu_defaults(environ.get("XLA_FLAGS", ""))
