"""Atomic file writes, shared by training run directories, pipelines and safety-eval results.

Stdlib only, at the bottom of the import graph, so every package may use it (including safety_evals,
which must not import align.training).
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path


def write_text_atomic(path: str | os.PathLike, text: str, *, encoding: str = "utf-8") -> None:
    """write_bytes_atomic of `text` encoded."""
    write_bytes_atomic(path, text.encode(encoding))


def write_bytes_atomic(path: str | os.PathLike, data: bytes, *, fsync: bool = True) -> None:
    """Write `data` to `path` so that a reader, or a run resumed after a crash, sees the old file or the
    new one, never a torn one: a temp file in the same directory (os.replace is atomic only within one
    file system) under a random name (processes writing the same path never share one), fsync, then
    os.replace. fsync=False skips the fsync (~9 ms a file on this project's CI disk) where a file lost
    to a power cut is only recomputed: the rename still keeps a killed process from leaving a torn one.

    The file ends with the mode a plain open() would give it: the existing file's, else 0o666 minus the
    umask. (tempfile.mkstemp's 0o600 hid results from release jobs reading as another user.)
    """
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
    # 0o666 with O_CREAT lets the kernel apply the umask, as open() does; reading the umask would mean
    # setting it (os.umask), which races with other threads. O_EXCL: never write through a foreign file.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as fh:
            try:
                os.fchmod(fh.fileno(), stat.S_IMODE(os.stat(target).st_mode))
            except FileNotFoundError:
                pass
            fh.write(data)
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
