"""A folder of .npy files named by hex digests: the on-disk feature caches of the reward-model probe
(reward_models.features.FeatureCache) and of the judges (safety_evals.judges.features.FeatureStore).

    cache = NpyCache("runs/features", fanout=2)
    cache.put(digest, array)
    cache.get(digest)  # the array, or None when it was never stored

The caller names each entry by a digest of everything its array depends on (weights or recipe, and
the input); the cache only stores. Writes go through align.fileio.write_bytes_atomic, so a killed run
or two processes writing the same entry leave no file or a whole one.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from align.fileio import write_bytes_atomic


class NpyCache:
    """root/<digest>.npy, or root/<digest[:fanout]>/<digest>.npy (no folder holds every entry)."""

    def __init__(self, root: str | os.PathLike, *, fanout: int = 0):
        self.root, self.fanout = Path(root), fanout

    def path(self, digest: str) -> Path:
        return self.root / digest[: self.fanout] / f"{digest}.npy"  # fanout 0: root / "" is root

    def __contains__(self, digest: str) -> bool:
        return self.path(digest).exists()

    def get(self, digest: str) -> np.ndarray | None:
        try:
            return np.load(self.path(digest))
        except FileNotFoundError:
            return None

    def put(self, digest: str, value: np.ndarray) -> None:
        path = self.path(digest)
        path.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        np.save(buffer, value)
        # no fsync: an entry lost to a power cut is recomputed, and one fsync per entry (~9 ms) would
        # add 10-25% to the judges' feature extraction on a CPU
        write_bytes_atomic(path, buffer.getvalue(), fsync=False)
