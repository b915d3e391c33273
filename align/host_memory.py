"""Opt-in (ALIGN_KEEP_HOST_MEMORY=1): keep freed host memory inside the process (glibc malloc).

XLA:CPU allocates a step's temporaries, and its kernels their scratch, with malloc, and frees them
when the step or kernel ends. glibc serves large allocations (above its mmap threshold, at most 32
MB; anything too big for a worker thread's 64 MB arena heap) with a fresh mmap and returns them with
munmap on free, so every train step faults in and zeroes brand-new pages (on gemma3-270m's SFT step,
strace and getrusage show gigabytes mapped, millions of minor faults and a fifth of the step in the
kernel). With one arena, no mmap and no trimming the heap is reused: no page faults after the first
step, and the step faster on random weights at the same peak RSS.

Not the default, because of its price in peak memory: freed memory stays mapped to the process and
all threads share one arena, so big blocks fragment; with the real gemma3-270m loaded first, the
second step found no hole for its temporaries, peak RSS rose by about half and the step was no
faster. `benchmarks/train_step.py --sides jax,jax+mem,trl,trl+mem` measures both sides of that trade
(torch pays the same faults: GLIBC_TUNABLES below gives TRL the same settings); figures in
benchmarks/RESULTS.md, train step, "Page faults".

`align.setup()` applies it when the environment sets ALIGN_KEEP_HOST_MEMORY=1; it takes effect for
threads that have not allocated yet, so call `align.setup()` before JAX runs anything. A no-op off
Linux or with another C library.
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Mapping

ENV = "ALIGN_KEEP_HOST_MEMORY"
# mallopt parameters (glibc malloc.h) and their values: one arena, never mmap, never trim the heap.
M_TRIM_THRESHOLD, M_MMAP_MAX, M_ARENA_MAX = -1, -4, -8
SETTINGS = ((M_ARENA_MAX, 1), (M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, -1))  # -1 disables trimming
# The same settings as glibc tunables, read at start-up by a process that does not import align (the
# TRL side of benchmarks/train_step.py); a 2**46-byte threshold stands for "never trim".
GLIBC_TUNABLES = "glibc.malloc.arena_max=1:glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=70368744177664"


def keep_host_memory(environ: Mapping[str, str] = os.environ) -> bool:
    """Apply SETTINGS through glibc's mallopt when environ[ENV] is "1"; True when all took effect."""
    if environ.get(ENV, "0").strip() != "1" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # only glibc has it  # noqa: B018
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return all(mallopt(param, value) == 1 for param, value in SETTINGS)
