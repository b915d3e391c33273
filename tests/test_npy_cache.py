"""align.npy_cache.NpyCache: what was put is got back, the file layout (callers' caches on disk stay
readable), and a write killed before its rename leaves no entry and no temp file."""

import os

import numpy as np
import pytest

from align.npy_cache import NpyCache


@pytest.mark.parametrize("fanout, where", [(0, "{d}.npy"), (2, "ab/{d}.npy")])
def test_put_then_get_under_the_digest(tmp_path, fanout, where):
    cache, digest = NpyCache(tmp_path / "c", fanout=fanout), "ab" + "0" * 38
    assert cache.get(digest) is None and digest not in cache
    value = np.arange(6, dtype=np.float32).reshape(2, 3)
    cache.put(digest, value)
    assert digest in cache and cache.path(digest) == tmp_path / "c" / where.format(d=digest)
    got = cache.get(digest)
    np.testing.assert_array_equal(got, value)
    assert got.dtype == np.float32
    assert [p.name for p in cache.path(digest).parent.iterdir()] == [f"{digest}.npy"]  # no temp left
    cache.put(digest, 2 * value)  # an entry is overwritten whole
    np.testing.assert_array_equal(cache.get(digest), 2 * value)


def test_a_write_killed_before_its_rename_leaves_no_entry(tmp_path, monkeypatch):
    cache = NpyCache(tmp_path)

    def killed(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        cache.put("deadbeef", np.zeros(3))
    monkeypatch.undo()
    assert cache.get("deadbeef") is None and list(tmp_path.iterdir()) == []
