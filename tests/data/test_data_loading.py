"""load_records on tiny tmp files of every type, on hub-style sources, and on the real HH-RLHF test files."""

import gzip
import json

import pytest

from align.data.errors import DataError
from align.data.formats import PreferenceExample, PromptExample
from align.data.loading import load_records

U = {"role": "user", "content": "Q"}
A = {"role": "assistant", "content": "A"}
GOOD = {"messages": [U, A]}


def write_jsonl(path, rows, opener=open):
    with opener(path, "wt") as f:
        for r in rows:
            f.write(r if isinstance(r, str) else json.dumps(r))
            f.write("\n")
    return path


def test_jsonl_error_names_file_line_and_field(tmp_path):
    bad = {"messages": [U, {"role": "assistant", "content": 7}]}
    path = write_jsonl(tmp_path / "d.jsonl", [GOOD, "", GOOD, bad, GOOD])  # line 2 blank: lines keep counting
    with pytest.raises(DataError) as err:
        load_records(path)
    msg = str(err.value)
    assert str(path) in msg and "line 4" in msg and "messages[1].content" in msg
    assert (err.value.source, err.value.row, err.value.field) == (str(path), 4, "messages[1].content")


def test_skip_invalid_counts_and_keeps_reasons(tmp_path):
    rows = [GOOD, "{not json", {"messages": [U, U]}, GOOD, {"foo": 1}, GOOD]
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    recs = load_records(path, skip_invalid=True)
    assert len(recs) == 3 and recs.kind == "chat"
    rep = recs.report
    assert (rep.read, rep.loaded, rep.skipped) == (6, 3, 3)
    assert rep.skipped_by_field == {"<row>": 2, "messages[1].role": 1}
    assert "line 2" in rep.reasons[0] and "invalid JSON" in rep.reasons[0]
    assert "line 3" in rep.reasons[1] and "line 5" in rep.reasons[2]
    assert [r.origin for r in recs] == [f"{path}, line {n}" for n in (1, 4, 6)]
    assert "skipped 3" in rep.summary()


def test_skipped_rows_are_logged_with_their_reasons(tmp_path, caplog):
    path = write_jsonl(tmp_path / "d.jsonl", [GOOD, '{"messages": [{"role": "user", "content": ', GOOD])
    with caplog.at_level("WARNING", logger="align.data"):
        load_records(path, skip_invalid=True)
    (record,) = caplog.records
    # the cut-off line's column is its own (43), not column 1 of the newline after it
    assert "skipped 1" in record.message
    assert "line 2: invalid JSON: Expecting value at column 43" in record.message
    caplog.clear()
    with caplog.at_level("WARNING", logger="align.data"):
        load_records(write_jsonl(tmp_path / "ok.jsonl", [GOOD]), skip_invalid=True)
    assert not caplog.records


def test_mixed_formats_are_an_error_unless_prompts_are_asked_for(tmp_path):
    pref = {"prompt": "p", "chosen": "c", "rejected": "r"}
    path = write_jsonl(tmp_path / "d.jsonl", [GOOD, pref])
    with pytest.raises(DataError, match="a preference row in a chat dataset") as err:
        load_records(path)
    assert err.value.row == 2
    recs = load_records(path, kind="prompt")
    assert recs.kind == "prompt" and [r.prompt for r in recs] == [[U], "p"]
    assert all(isinstance(r, PromptExample) for r in recs)


def test_prompt_loads_keep_the_prompt_of_a_pair_without_preference(tmp_path):
    same_hh = "\n\nHuman: hi\n\nAssistant: yo"
    rows = [
        {"chosen": same_hh, "rejected": same_hh},
        {"prompt": "p", "chosen": "c", "rejected": "c"},
        {"chosen": same_hh + "\n\nAssistant: again", "rejected": same_hh + "\n\nAssistant: again"},
    ]
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    recs = load_records(path, kind="prompt", skip_invalid=True)
    assert [r.prompt for r in recs] == [[{"role": "user", "content": "hi"}], "p"]
    assert recs.report.skipped == 1 and "line 3" in recs.report.reasons[0]  # not a valid dialogue either
    with pytest.raises(DataError, match="line 1.*identical"):  # a preference load still refuses the pair
        load_records(path, kind="preference")


def test_file_types_and_limit(tmp_path):
    rows = [{"text": f"doc {i}"} for i in range(5)]
    write_jsonl(tmp_path / "a.jsonl.gz", rows, gzip.open)
    (tmp_path / "b.json").write_text(json.dumps(rows))
    (tmp_path / "c.json").write_text("\n".join(json.dumps(r) for r in rows))  # JSON lines in a .json file
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "d.parquet")
    for name in ("a.jsonl.gz", "b.json", "c.json", "d.parquet"):
        recs = load_records(tmp_path / name)
        assert [r.text for r in recs] == [f"doc {i}" for i in range(5)], name
    assert [r.text for r in load_records(tmp_path / "d.parquet", limit=2)] == ["doc 0", "doc 1"]
    bad = [{"text": "ok"}, {"text": 5}]
    pq.write_table(pa.Table.from_pylist([{"text": "ok"}, {"text": None}]), tmp_path / "e.parquet")
    with pytest.raises(DataError, match=r"e\.parquet, row 2, field 'text'"):
        load_records(tmp_path / "e.parquet")
    (tmp_path / "f.json").write_text(json.dumps(bad))
    with pytest.raises(DataError, match=r"f\.json, row 2, field 'text'"):
        load_records(tmp_path / "f.json")
    with pytest.raises(FileNotFoundError):
        load_records(tmp_path / "missing.jsonl")


def test_directory_picks_the_split(tmp_path):
    (tmp_path / "x").mkdir()
    write_jsonl(tmp_path / "x" / "train.jsonl", [{"text": "t"}])
    write_jsonl(tmp_path / "x" / "test.jsonl", [{"text": "e1"}, {"text": 3}])
    (tmp_path / "y").mkdir()
    write_jsonl(tmp_path / "y" / "test-00001.jsonl", [{"text": "e2"}])
    assert [r.text for r in load_records(tmp_path, split="train")] == ["t"]
    recs = load_records(tmp_path, split="test", skip_invalid=True)
    assert [r.text for r in recs] == ["e1", "e2"]
    assert str(tmp_path / "x" / "test.jsonl") + ", line 2" in recs.report.reasons[0]  # the file, not the dir
    with pytest.raises(FileNotFoundError, match=r"split 'validation'.*\['test', 'train'\]"):
        load_records(tmp_path, split="validation")
    assert [r.text for r in load_records(tmp_path, data_files="y/*.jsonl")] == ["e2"]


def test_in_memory_and_hub_style_sources(tmp_path):
    recs = load_records([GOOD, {"messages": "oops"}], skip_invalid=True)
    assert len(recs) == 1 and "<list>, row 2, field 'messages'" in recs.report.reasons[0]
    import datasets

    recs = load_records(datasets.Dataset.from_list([{"text": "a"}, {"text": "b"}]))
    assert [r.text for r in recs] == ["a", "b"] and recs[1].origin == "<Dataset>, row 2"
    path = write_jsonl(tmp_path / "h.jsonl", [{"prompt": "p", "completion": "c"}] * 3)
    # A builder name goes through datasets.load_dataset (here the offline "json" builder).
    recs = load_records("json", split="train", data_files=str(path))
    assert recs.kind == "completion" and len(recs) == 3 and recs.report.source == "json[train]"


def test_hh_rlhf_real_rows(hh_dir):
    path = hh_dir / "harmless-base" / "test.jsonl.gz"
    first = json.loads(gzip.open(path, "rt").readline())
    recs = load_records(path, limit=1)
    ex = recs[0]
    assert isinstance(ex, PreferenceExample) and ex.origin == f"{path}, line 1"
    assert [m["role"] for m in ex.prompt] == ["user", "assistant", "user", "assistant", "user"]
    assert ex.prompt[0]["content"] == "what are some pranks with a pen i can do?"
    assert ex.chosen == [{"role": "assistant", "content": first["chosen"].rsplit("Assistant:", 1)[1].strip()}]
    assert ex.rejected[0]["content"].startswith("There are lots of funny things you can do with pens")
    # Line 668 repeats an assistant turn, which Gemma's format cannot hold: the error says where.
    with pytest.raises(DataError) as err:
        load_records(path)
    assert (err.value.row, err.value.field) == (668, "chosen[4].role")
    assert f"{path}, line 668, field 'chosen[4].role'" in str(err.value)


def test_hh_rlhf_all_test_files_counted(hh_dir):
    """Every row is either loaded or skipped with a reason; the identical pairs are among the skipped."""
    recs = load_records(hh_dir, split="test", skip_invalid=True)
    rep = recs.report
    assert rep.read == 2312 + 2354 + 1137 + 2749  # the README's row counts
    assert rep.loaded + rep.skipped == rep.read and rep.loaded == len(recs)
    identical = 0
    for sub in ("harmless-base", "helpful-base", "helpful-online", "helpful-rejection-sampled"):
        for line in gzip.open(hh_dir / sub / "test.jsonl.gz", "rt"):
            row = json.loads(line)
            identical += row["chosen"] == row["rejected"]
    assert rep.skipped_by_field["rejected"] == identical == 36
    assert 0 < rep.skipped < 100
