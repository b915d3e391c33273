"""Process-wide XLA:CPU defaults, applied by `align.setup()` (never at import).

XLA reads the XLA_FLAGS environment variable once, when JAX creates its first backend; per-program
`compiler_options` do not reach the CPU scheduler. So `apply_cpu_defaults` appends the defaults below to
XLA_FLAGS, unless XLA_FLAGS already names the flag (a user's choice always wins), and it must run
before JAX creates a backend: `align.setup()` is called first thing by the `align` command line.

    --xla_cpu_enable_concurrency_optimized_scheduler=false
        XLA:CPU's default scheduler orders independent ops for thread-level concurrency and so keeps
        their buffers alive together. On gemma3-270m's SFT step switching it off cut both XLA's
        temporaries and the step time (benchmarks/train_step.py; figures in benchmarks/RESULTS.md,
        train step), and it makes remat work at all: under the default scheduler recomputed blocks are
        placed beside the forward pass and memory does not shrink (tests/test_xla_flags.py pins that).
        Only the CPU compiler reads it.
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
    """Append CPU_DEFAULTS to environ["XLA_FLAGS"] (idempotent; a flag already named is kept)."""
    environ["XLA_FLAGS"] = with_cpu_defaults(environ.get("XLA_FLAGS", ""))
