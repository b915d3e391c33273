"""Opt-in (ALIGN_KEEP_HOST_MEMORY=1): keep freed host memory inside the process (glibc malloc).

XLA:CPU allocates a step's temporaries, and its kernels their scratch, with malloc, and frees them
when the step or kernel ends. glibc serves large allocations (above its mmap threshold, at most 32
MB; anything too big for a worker thread's 64 MB arena heap) with a fresh mmap and returns them with
munmap on free, so every step touches brand-new pages again. On gemma3-270m's SFT step (B 4 x T 512,
f32, 2-core CPU) that was 12.7 GB mmapped per step (the step's 5.1 GB block of temporaries, 80 x 64
MB YNNPACK/slinky scratch, 8 x 257 MB Eigen matmul packing buffers; strace), 2.6 million page faults
and 8-9 s of kernel time per 40-45 s step (getrusage). With one arena, no mmap and no trimming the
heap is reused: 0 page faults, under 0.2 s of kernel time, and the step 42.7 -> 37.2 s (mean of 6
steps each, 3 alternating processes per setting, same loss; random weights, peak RSS 8.8 GB both
ways).

Not the default, because of its price in peak memory: freed memory stays mapped to the process and
all threads share one arena, so big blocks fragment. With the real gemma3-270m loaded first
(benchmarks/train_step.py, 2026-11-27) the second step found no hole for its temporaries and the peak
RSS rose from 9.8 to 14.4 GB (malloc_trim after loading and after the first step did not help:
14.3 GB), and the benchmark's step was no faster (37.5 and 39.9 s against 38.4 s with glibc's
defaults). The same glibc settings speed TRL up far more (63.3 -> 39.1 and 60.8 -> 33.6 s per step),
so at glibc's defaults the allocator, not the framework, is most of the JAX-TRL difference.

Set ALIGN_KEEP_HOST_MEMORY=1 to apply it when `align` is imported; it takes effect for threads that
have not allocated yet, so import `align` before JAX runs anything (as for align/xla_flags.py). A
no-op off Linux or with another C library.
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
