"""Fixtures for align.data tests: the offline tiny tokenizer and the shared HH-RLHF test files."""

import pytest

from align.data.testing import tiny_tokenizer
from align.data.tokenizer import Tokenizer
from tests.paths import DATA

HH_DIR = DATA / "hh_rlhf"


@pytest.fixture(scope="session")
def hf_tiny():
    return tiny_tokenizer()


@pytest.fixture(scope="session")
def tok(hf_tiny):
    return Tokenizer(hf_tiny)


@pytest.fixture(scope="session")
def hh_dir():
    if not (HH_DIR / "harmless-base" / "test.jsonl.gz").exists():
        pytest.skip(f"{HH_DIR} (shared benchmark data) is not on this machine")
    return HH_DIR
