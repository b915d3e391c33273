"""A checkpoint write that the storage refused (disk full, quota, permissions): recognised, and kept
to the one line Checkpointer raises.

Orbax writes a checkpoint in background threads, each running its coroutines on a fresh asyncio loop,
and TensorStore writes the arrays. When one write fails, Orbax (0.12) closes that loop while the other
writes are still in flight, and re-logs the failure with its traceback at every layer it passes. A
user then saw, for one full disk, a few hundred lines: the same error four times over, one
"Event loop is closed" traceback per array write that finished after the close (TensorStore prints
them), "Task exception was never retrieved", and "Exception ignored in ... write_fragment" at exit.
`install()` (idempotent; Checkpointer calls it) removes the cause and demotes the repeats:

* the loop Orbax's threads run on is drained before it is closed: the writes still in flight finish
  (or, past DRAIN_S, are cancelled), so nothing calls back into a closed loop and no coroutine is left
  for interpreter shutdown;
* Orbax's and asyncio's ERROR records of a storage failure go to DEBUG: the failure reaches the user
  once, as Checkpointer's CheckpointWriteFailed, and a debug log still has every traceback.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import threading
import time
from typing import Any

# Longest wait for the writes still in flight after one failed: they fail as fast as the first did
# (or finish), so this only bounds a storage that hangs.
DRAIN_S = 30.0
# TensorStore's errors are ValueErrors that quote the OS error: "... [os_error_code='28']"
_TS_OS_ERROR = re.compile(r"\[os_error_code='?(\d+)'?\]")
_LOGGERS = ("absl", "asyncio")  # Orbax logs through absl; asyncio reports abandoned task errors


def storage_error(e: BaseException | None) -> str | None:
    """The OS error, as Python prints an OSError ("[Errno 28] No space left on device"), when `e` or
    an exception it was raised from is the OS refusing a write: an OSError, or a TensorStore error
    quoting an OS error code. None otherwise (a bug)."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        code = None
        if isinstance(e, OSError) and e.errno is not None:
            code = e.errno
        elif (m := _TS_OS_ERROR.search(str(e))) is not None:
            code = int(m.group(1))
        if code is not None:
            return f"[Errno {code}] {os.strerror(code)}"
        e = e.__cause__ or e.__context__
    return None


class _DemoteStorageFailures(logging.Filter):
    """Records that carry a storage failure become DEBUG records: dropped unless their logger logs
    DEBUG (a handler without a level of its own would print them whatever their level)."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if record.levelno <= logging.DEBUG or storage_error(exc) is None:
            return True
        record.levelno, record.levelname = logging.DEBUG, logging.getLevelName(logging.DEBUG)
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


_FILTER = _DemoteStorageFailures()


def _drain(loop: asyncio.AbstractEventLoop) -> None:
    """Run `loop` until the tasks still pending on it are done (cancelled past DRAIN_S), so none is
    left to call back into the loop once it is closed."""
    pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
    if not pending:
        return
    _, late = loop.run_until_complete(asyncio.wait(pending, timeout=DRAIN_S))
    for t in late:
        t.cancel()
    # return_exceptions: marks every task's exception retrieved ("never retrieved" is not logged)
    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))


def _run_sync_draining(coro: Any) -> Any:
    """orbax asyncio_utils._run_sync_via_new_loop, draining the loop when the coroutine fails."""
    loop = asyncio.new_event_loop()
    try:
        asyncio.set_event_loop(loop)
        try:
            return loop.run_until_complete(coro)
        except BaseException:
            _drain(loop)
            raise
    finally:
        asyncio.set_event_loop(None)
        loop.close()


def wait_for_writers(timeout_s: float = DRAIN_S) -> bool:
    """Wait (at most `timeout_s`) for Orbax's background write threads; True when none is left.

    Orbax raises a save's failure as soon as one of its writes fails, while the others may still be
    writing into the step's temporary directory: it can only be removed once they are done."""
    try:  # Orbax internals: another Orbax version may not have them
        from orbax.checkpoint._src.futures import future
    except ImportError:
        return False
    kind = getattr(future, "_SignalingThread", None)
    if kind is None:
        return False
    deadline = time.monotonic() + timeout_s
    for t in threading.enumerate():
        if isinstance(t, kind) and t is not threading.current_thread():
            # Thread.join, not the subclass's: that one re-raises the thread's error
            threading.Thread.join(t, max(0.0, deadline - time.monotonic()))
    return not any(isinstance(t, kind) and t.is_alive() for t in threading.enumerate())


def install() -> None:
    """Drain Orbax's loops on failure and demote its storage-failure records (see the module doc).
    Without the Orbax function it replaces (another Orbax version), only the demotion applies."""
    try:  # Orbax internals (orbax-checkpoint is not pinned): without them only the demotion applies
        from orbax.checkpoint._src import asyncio_utils
    except ImportError:
        asyncio_utils = None
    if getattr(asyncio_utils, "_run_sync_via_new_loop", None) not in (None, _run_sync_draining):
        asyncio_utils._run_sync_via_new_loop = _run_sync_draining
    for name in _LOGGERS:
        if _FILTER not in logging.getLogger(name).filters:
            logging.getLogger(name).addFilter(_FILTER)
