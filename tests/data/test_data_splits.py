"""Which files of a local dataset directory make up a split: exact names first, then split-name prefixes."""

import json

import pytest

from align.data.loading import load_records
from align.errors import InvalidInput


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"text": text}) + "\n")


@pytest.fixture
def ultrafeedback_like(tmp_path):
    """HuggingFaceH4/ultrafeedback_binarized's layout: several splits per train/test prefix."""
    for split in ("train_prefs", "train_sft", "train_gen", "test_prefs", "test_sft", "test_gen"):
        _write(tmp_path / "data" / f"{split}-00000-of-00001.jsonl", split)
    return tmp_path


def test_an_exact_split_name_picks_only_its_files(ultrafeedback_like):
    assert [r.text for r in load_records(ultrafeedback_like, split="train_prefs")] == ["train_prefs"]
    assert [r.text for r in load_records(ultrafeedback_like, split="test_gen")] == ["test_gen"]


def test_a_prefix_shared_by_several_splits_is_ambiguous(ultrafeedback_like):
    with pytest.raises(InvalidInput, match="ambiguous") as err:
        load_records(ultrafeedback_like, split="train")
    assert "train_gen, train_prefs, train_sft" in str(err.value)


def test_exact_names_win_over_prefixes(tmp_path):
    _write(tmp_path / "train.jsonl", "train")
    _write(tmp_path / "train-00001-of-00002.jsonl", "shard")  # HF's shard names belong to the split
    _write(tmp_path / "train_extra.jsonl", "extra")
    _write(tmp_path / "test" / "part.jsonl", "test folder")
    assert [r.text for r in load_records(tmp_path, split="train")] == ["shard", "train"]
    assert [r.text for r in load_records(tmp_path, split="train_extra")] == ["extra"]
    assert [r.text for r in load_records(tmp_path, split="test")] == ["test folder"]


def test_a_lone_prefixed_split_still_loads_by_its_generic_name(tmp_path):
    _write(tmp_path / "train_v2.jsonl", "t")
    _write(tmp_path / "test_v2.jsonl", "e")
    assert [r.text for r in load_records(tmp_path, split="train")] == ["t"]
    with pytest.raises(FileNotFoundError, match=r"split 'validation'.*\['test_v2', 'train_v2'\]"):
        load_records(tmp_path, split="validation")
