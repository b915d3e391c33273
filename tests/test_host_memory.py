"""With ALIGN_KEEP_HOST_MEMORY=1, `align.setup()` keeps freed host memory in the process: a worker
thread's big buffer, freed and allocated again, costs no new page faults (glibc's default, kept
without the variable or without the call, unmaps it and faults it in again). `import align` alone
changes nothing."""

import json
import os
import subprocess
import sys

import pytest

from align.host_memory import ENV, keep_host_memory

# A 64 MB malloc'd buffer written, freed and allocated again in a thread started after `import
# align` (and SETUP), as XLA's workers are (plain malloc + memset: numpy would madvise huge pages); prints the
# page faults of each round.
CHILD = """
import ctypes, json, resource, threading
import align
SETUP
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
faults = []
def churn():
    for _ in range(4):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        buf = libc.malloc(64 << 20)
        ctypes.memset(buf, 1, 64 << 20)
        libc.free(buf)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
worker = threading.Thread(target=churn)
worker.start(); worker.join()
print(json.dumps(faults))
"""
PAGES = (64 << 20) // 4096  # 16384 faults for a 64 MB buffer touched page by page


def _faults(keep: str, setup: bool = True) -> list[int]:
    code = CHILD.replace("SETUP", "align.setup()" if setup else "")
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, ENV: keep},
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc settings")
def test_freed_buffers_are_reused_without_page_faults():
    kept = _faults("1")
    default = _faults("")
    import_only = _faults("1", setup=False)
    assert all(f > PAGES // 2 for f in default), default  # glibc's default: every round faults again
    assert all(f > PAGES // 2 for f in import_only), import_only  # importing align changes nothing
    assert kept[0] > PAGES // 2 and all(f < PAGES // 20 for f in kept[1:]), kept  # only the first round


def test_off_unless_asked_for():
    assert keep_host_memory({}) is False and keep_host_memory({ENV: "0"}) is False
