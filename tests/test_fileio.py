"""align.fileio.write_text_atomic: the mode a plain open() gives, and the old file after a failed write."""

import os
import stat

import pytest

from align.fileio import write_text_atomic


@pytest.fixture
def umask():
    """Set the process umask for one test (and restore it)."""
    saved = os.umask(0o022)
    yield os.umask
    os.umask(saved)


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("mask, want", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_a_new_file_gets_the_mode_open_would_give_it(tmp_path, umask, mask, want):
    umask(mask)
    path = tmp_path / "a.txt"
    write_text_atomic(path, "x")
    with open(tmp_path / "plain.txt", "w") as f:
        f.write("x")
    assert _mode(path) == _mode(tmp_path / "plain.txt") == want
    assert path.read_text() == "x"


def test_an_existing_file_keeps_its_mode(tmp_path, umask):
    path = tmp_path / "a.txt"
    path.write_text("old")
    path.chmod(0o640)
    write_text_atomic(path, "new")
    assert _mode(path) == 0o640 and path.read_text() == "new"


def test_a_write_that_fails_before_the_rename_keeps_the_old_file_and_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "config.yaml"
    path.write_text("old: 1\n")

    def crash(fd):  # the process dies after writing the temp file, before it is renamed into place
        raise OSError("killed")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError, match="killed"):
        write_text_atomic(path, "new: 2\n")
    assert path.read_text() == "old: 1\n"
    assert [p.name for p in tmp_path.iterdir()] == ["config.yaml"]
