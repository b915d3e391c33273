"""Sources that are not local files: missing local paths never reach the hub; hub errors say what failed.

`datasets` is replaced by a fake module, so nothing here touches the network.
"""

import sys
import types

import pytest

from align.data.loading import load_records
from align.errors import MissingInput


@pytest.fixture
def fake_datasets(monkeypatch):
    calls = []

    def load_dataset(name, split=None, data_files=None):
        calls.append((name, split, data_files))
        if name == "offline/missing":
            raise ConnectionError("Couldn't reach 'offline/missing' on the Hub (LocalEntryNotFoundError)")
        return [{"text": f"{name}:{split}"}]

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    return calls


@pytest.mark.parametrize("relative", ["my_data_dir/train", "my_data_dir/sub/train", "./nope", "a/b/c"])
def test_a_missing_local_path_is_not_sent_to_the_hub(tmp_path, monkeypatch, fake_datasets, relative):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my_data_dir").mkdir()  # the parent exists: a local path with a typo, not a hub id
    with pytest.raises(MissingInput, match=f"{relative}.* does not exist"):
        load_records(relative)
    assert fake_datasets == []


def test_hub_errors_name_the_dataset_and_what_to_do(fake_datasets):
    with pytest.raises(MissingInput, match=r"'offline/missing'.*ConnectionError.*local"):
        load_records("offline/missing")
    assert [r.text for r in load_records("org/name", split="test")] == ["org/name:test"]


def test_data_files_are_given_to_the_requested_split(fake_datasets):
    load_records("json", split="test", data_files="rows/*.jsonl")
    assert fake_datasets[-1] == ("json", "test", {"test": "rows/*.jsonl"})
