"""`python write_failure_job.py ARGS...`: `align ARGS` on a disk that fills up once the run's first
checkpoint is complete.

From then on the process may not write a file past LIMIT bytes (RLIMIT_FSIZE), so the next
checkpoint's largest array files fail inside Orbax's and TensorStore's background threads with a real
OS error (EFBIG, "File too large"), where and how a full disk (ENOSPC) fails them, without filling a
real disk.
"""

import os
import resource
import signal
import sys

os.environ.setdefault("JAX_PLATFORMS", "cpu")

from align.training import checkpoint  # noqa: E402
from pipelines.cli import main  # noqa: E402

# Above every run file but the largest array files of a tiny model's checkpoint (~0.5 MB), so those fail
# part way, while other writes are in flight: what made Orbax print "Event loop is closed" tracebacks.
LIMIT = 256 * 1024
_save = checkpoint.Checkpointer.save


def save_on_a_filling_disk(self, state, **kwargs):
    self.wait()
    if self.latest_step() is not None:  # a complete checkpoint is on disk: the disk is full from now on
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails, not the process
        resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, resource.RLIM_INFINITY))
    return _save(self, state, **kwargs)


checkpoint.Checkpointer.save = save_on_a_filling_disk

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
