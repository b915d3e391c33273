"""Unreadable and undecodable data files: one DataError (an InputError: exit 2, one line) naming the
file and the line, never a decoding or gzip traceback; a non-UTF-8 line is a skippable row error."""

import gzip
import json

import pytest

from align.data.errors import DataError
from align.data.loading import load_records
from align.errors import InputError

LINES = [json.dumps({"text": f"doc {i}"}).encode() for i in range(4)]


def test_a_non_utf8_line_names_its_line_and_is_skipped_with_skip_invalid(tmp_path):
    path = tmp_path / "d.jsonl"
    bad = b'{"text": "caf\xe9"}'  # Latin-1, not UTF-8
    path.write_bytes(b"\n".join([LINES[0], bad, LINES[2]]) + b"\n")
    with pytest.raises(DataError) as e:
        load_records(path)
    assert str(e.value) == f"{path}, line 2: not UTF-8: byte 0xe9 at byte 14 of the line"
    assert isinstance(e.value, InputError) and "\n" not in str(e.value)
    records = load_records(path, skip_invalid=True)
    assert [r.text for r in records] == ["doc 0", "doc 2"]
    assert records.report.skipped == 1 and "line 2: not UTF-8" in records.report.reasons[0]


@pytest.mark.parametrize("suffix", [".csv", ".json"])
def test_a_non_utf8_byte_in_a_whole_file_format_names_the_line(tmp_path, suffix):
    path = tmp_path / f"d{suffix}"
    body = b"text\nok\nbad \xff\n" if suffix == ".csv" else b'[\n{"text": "a"},\n{"text": "\xff"}\n]\n'
    path.write_bytes(body)
    for skip in (False, True):
        with pytest.raises(DataError, match=rf"d\{suffix}, line 3: not UTF-8: byte 0xff"):
            load_records(path, skip_invalid=skip)


def test_a_cut_off_gzip_file_is_one_error(tmp_path):
    path = tmp_path / "d.jsonl.gz"
    whole = gzip.compress(b"\n".join(LINES * 500) + b"\n")
    path.write_bytes(whole[: len(whole) // 2])
    for skip in (False, True):
        with pytest.raises(DataError) as e:
            load_records(path, skip_invalid=skip)
        msg = str(e.value)
        assert msg.startswith(f"{path}, line ") and ": not a gzip file or cut off: " in msg
        assert "\n" not in msg


def test_a_file_named_gz_that_is_not_gzip_is_one_error(tmp_path):
    path = tmp_path / "d.jsonl.gz"
    path.write_bytes(b"\n".join(LINES) + b"\n")
    with pytest.raises(DataError, match=rf"{path}, line 1: not a gzip file or cut off: Not a gzipped file"):
        load_records(path, skip_invalid=True)


def test_a_gzip_csv_with_a_bad_byte(tmp_path):
    path = tmp_path / "d.csv.gz"
    path.write_bytes(gzip.compress(b"\xef\xbb\xbftext\nfine\n\x80oops\n"))  # a BOM, then a bad byte
    with pytest.raises(DataError, match=r"d\.csv\.gz, line 3: not UTF-8: byte 0x80 at byte 1"):
        load_records(path)


def test_a_bom_is_still_dropped(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + b"\n".join(LINES) + b"\n")
    assert [r.text for r in load_records(path)] == [f"doc {i}" for i in range(4)]


def test_a_file_that_is_not_parquet_is_one_error(tmp_path):
    pytest.importorskip("pyarrow")
    path = tmp_path / "d.parquet"
    path.write_bytes(b"not parquet at all")
    with pytest.raises(DataError, match=rf"{path}, row 1: cannot read parquet: "):
        load_records(path)
