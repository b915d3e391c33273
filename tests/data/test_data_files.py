"""Reading single data files: .json documents vs JSON lines, a UTF-8 BOM, CSV."""

import json
import re

import pytest

from align.data.errors import DataError
from align.data.loading import load_records

ROWS = [{"text": f"doc {i}"} for i in range(3)]


def test_a_broken_json_array_reports_jsons_own_line_and_column(tmp_path):
    path = tmp_path / "d.json"
    text = json.dumps(ROWS, indent=2)
    path.write_text(text.replace('"doc 1"', '"doc 1",,', 1))  # a syntax error on line 6
    for skip in (False, True):  # skipping rows cannot help: the whole document is unreadable
        with pytest.raises(DataError, match=r"d\.json, line 6: invalid JSON: Expecting property .* 21"):
            load_records(path, skip_invalid=skip)


def test_a_broken_pretty_printed_object_is_not_read_as_json_lines(tmp_path):
    path = tmp_path / "d.json"
    path.write_text('{\n  "text": "a",\n  "oops"\n}\n')
    with pytest.raises(DataError, match=r"d\.json, line 4: invalid JSON: Expecting ':' delimiter at column"):
        load_records(path, skip_invalid=True)


def test_json_lines_in_a_json_file_keep_their_line_numbers(tmp_path):
    path = tmp_path / "d.json"
    path.write_text('{"text": "a"}\n{"text": \n{"text": "c"}\n')
    recs = load_records(path, skip_invalid=True)
    assert [r.text for r in recs] == ["a", "c"] and "line 2: invalid JSON" in recs.report.reasons[0]
    path.write_text('{"text": "only"}\n')  # one row: a JSON object, i.e. JSON lines with one line
    assert [r.text for r in load_records(path)] == ["only"]


@pytest.mark.parametrize("name", ["d.json", "d.jsonl", "d.csv"])
def test_a_utf8_byte_order_mark_is_accepted(tmp_path, name):
    path = tmp_path / name
    if name == "d.csv":
        text = "text\ndoc 0\n"
    elif name == "d.json":
        text = json.dumps(ROWS[:1])
    else:
        text = json.dumps(ROWS[0]) + "\n"
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())
    assert [r.text for r in load_records(path)] == ["doc 0"]


def test_csv_rows_with_a_header(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text('prompt,completion\n"2+2=", 4\n"multi\nline",x\n\nbad,row,extra\nlast,y\n')
    recs = load_records(path, skip_invalid=True)
    assert [(r.prompt, r.completion) for r in recs] == [("2+2=", " 4"), ("multi\nline", "x"), ("last", "y")]
    assert [r.origin for r in recs] == [f"{path}, line {n}" for n in (2, 3, 7)]
    assert recs.report.reasons == [f"{path}, line 6: 3 fields where the header has 2"]
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "train.csv").write_text("text\nfrom a directory\n")
    assert [r.text for r in load_records(tmp_path / "dir")] == ["from a directory"]


def test_csv_records_name_the_line_a_record_starts_on_and_a_missing_field(tmp_path):
    from align.data.files import csv_records, read_csv

    path = tmp_path / "d.csv"
    path.write_text('id,text\n1,"two\nlines"\n\n2,after\n')
    # the second record starts on line 5: a row index (i + 2 = 3) would miss the quoted line break
    assert csv_records(path, fields=("id",)) == [
        ("d.csv:line 2", {"id": "1", "text": "two\nlines"}),
        ("d.csv:line 5", {"id": "2", "text": "after"}),
    ]
    assert read_csv(path) == [row for _, row in csv_records(path)]
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}, line 2, field 'label': missing field$"):
        csv_records(path, fields=("id", "label"))
    path.write_text("id,text\n1,a\n2,b,c\n")
    with pytest.raises(DataError, match=r"d\.csv, line 3: 3 fields where the header has 2"):
        read_csv(path)
