"""The repository passes `ruff check` (rules pinned in pyproject.toml) and `ruff format --check`."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _ruff() -> list[str]:
    exe = Path(sys.executable).with_name("ruff")  # the venv's console script
    if exe.exists():
        return [str(exe)]
    found = shutil.which("ruff")
    if found is None:
        pytest.skip("ruff is not installed (it is in the dev extra: pip install -e '.[dev]')")
    return [found]


def test_ruff_check_is_clean():
    out = subprocess.run([*_ruff(), "check", "--no-cache", "."], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_ruff_format_is_clean():
    """Every file is as `ruff format` writes it (line length 110, pyproject.toml)."""
    out = subprocess.run(
        [*_ruff(), "format", "--check", "--no-cache", "."], cwd=ROOT, capture_output=True, text=True
    )
    assert out.returncode == 0, "run `ruff format .`:\n" + out.stdout + out.stderr
