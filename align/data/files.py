"""Raw rows of one local data file: JSON lines, a JSON document, CSV or parquet (optionally gzipped text).

Every row carries where it came from, so the loader's errors name the file and the line (or row).
Text files are read as UTF-8 with an optional byte-order mark (as Excel and some editors write them),
one line at a time, so a line that is not UTF-8 is a row error at its own line (skipped and counted
with skip_invalid) instead of a decoding traceback somewhere in the file. An unreadable file (not
gzip, cut off, an I/O error) is one DataError naming the file and the line being read.
"""

from __future__ import annotations

import csv
import gzip
import json
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from align.data.errors import DataError
from align.errors import InvalidInput

SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".json.gz", ".csv", ".csv.gz", ".parquet")


@dataclass(frozen=True)
class Row:
    """A raw row and where it came from; `value` is the parsed row or the DataError parsing raised."""

    source: str
    row_kind: str  # "line" (text files: the physical 1-based line number) or "row" (1-based index)
    number: int
    value: Any


def file_rows(path: Path) -> Iterator[Row]:
    """The rows of one data file; DataError (raised, not yielded) when the whole file is unreadable."""
    name = str(path)
    if name.endswith(".parquet"):
        yield from (Row(name, "row", i, r) for i, r in _parquet_rows(path))
    elif name.endswith((".jsonl", ".jsonl.gz")):
        yield from json_lines(path)
    elif name.endswith((".json", ".json.gz")):
        yield from _json_document(path)
    elif name.endswith((".csv", ".csv.gz")):
        yield from csv_rows(path)
    else:
        raise InvalidInput(f"{name}: unsupported file type; expected one of {SUFFIXES}")


_READ_ERRORS = (OSError, EOFError, zlib.error)  # gzip.BadGzipFile is an OSError; a cut-off .gz an EOFError


def _byte_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """(1-based line number, raw line with its ending); read errors become one DataError."""
    number = 0
    try:
        with gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb") as f:
            for number, raw in enumerate(f, 1):
                yield number, raw[3:] if number == 1 and raw.startswith(b"\xef\xbb\xbf") else raw
    except _READ_ERRORS as e:
        what = "not a gzip file or cut off" if path.name.endswith(".gz") else "cannot read"
        raise DataError(f"{what}: {e}", source=str(path), row=number + 1, row_kind="line") from None


def _decode(raw: bytes) -> str | DataError:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return DataError(f"not UTF-8: byte 0x{raw[e.start]:02x} at byte {e.start + 1} of the line")


def _text_lines(path: Path) -> Iterator[str]:
    """Decoded lines for parsers that need the whole text (CSV, JSON documents); a line that is not
    UTF-8 ends the file with a DataError at that line."""
    for number, raw in _byte_lines(path):
        text = _decode(raw)
        if isinstance(text, DataError):
            raise text.located(str(path), number, "line")
        yield text


def json_lines(path: Path) -> Iterator[Row]:
    """Rows of a JSON-lines file (any name) with their physical 1-based line numbers; blank lines are
    skipped but counted."""
    for number, raw in _byte_lines(path):
        line = _decode(raw)
        if isinstance(line, DataError):
            yield Row(str(path), "line", number, line)
            continue
        if not line.strip():
            continue
        try:
            value = json.loads(line.rstrip("\r\n"))  # so a cut-off line reports its own column
        except json.JSONDecodeError as e:
            value = DataError(f"invalid JSON: {e.msg} at column {e.colno}")
        except RecursionError:
            value = DataError("invalid JSON: nested too deeply")
        yield Row(str(path), "line", number, value)


def _json_document(path: Path) -> Iterator[Row]:
    """A .json file: an array of rows, a single row object, or JSON lines saved as .json."""
    text = "".join(_text_lines(path))
    try:
        rows = json.loads(text)
    except RecursionError:
        raise DataError("invalid JSON: nested too deeply", source=str(path)) from None
    except json.JSONDecodeError as e:
        if _looks_like_json_lines(text):
            yield from json_lines(path)
            return
        # One document (an array, or an object spread over lines): only json's own position is right.
        raise DataError(
            f"invalid JSON: {e.msg} at column {e.colno}", source=str(path), row=e.lineno, row_kind="line"
        ) from None
    if isinstance(rows, dict):  # a single object: JSON lines with one row
        first = next(i for i, line in enumerate(text.splitlines(), 1) if line.strip())
        yield Row(str(path), "line", first, rows)
    elif isinstance(rows, list):
        yield from (Row(str(path), "row", i, r) for i, r in enumerate(rows, 1))
    else:
        raise DataError(f"a .json file must hold a list of rows, got {type(rows).__name__}", source=str(path))


def _looks_like_json_lines(text: str) -> bool:
    """JSON lines put one value on each line, so one of the first two lines parses on its own (a file
    with one cut-off line also counts); a pretty-printed document's first lines never do."""
    if text.lstrip().startswith("["):
        return False
    lines = [line for line in text.splitlines() if line.strip()][:2]
    return len(lines) < 2 or any(_parses(line) for line in lines)


def _parses(line: str) -> bool:
    try:
        json.loads(line)
    except json.JSONDecodeError:
        return False
    return True


def csv_rows(path: Path, *, delimiter: str = ",", quoting: int = csv.QUOTE_MINIMAL) -> Iterator[Row]:
    """Header-keyed string rows of a CSV (any name; `delimiter="\\t"` for TSV, `quoting=csv.QUOTE_NONE`
    for files that never quote), numbered by the line each record starts on; blank lines are skipped."""
    # lines keep their endings, as a file opened with newline="" gives them: csv handles line ends
    # inside quoted fields
    reader = csv.reader(_text_lines(path), delimiter=delimiter, quoting=quoting)
    header = next(reader, None)
    start = reader.line_num + 1
    try:
        for record in reader:  # a blank line is an empty record
            if record:
                value = (
                    dict(zip(header, record, strict=True))
                    if len(record) == len(header)
                    else DataError(f"{len(record)} fields where the header has {len(header)}")
                )
                yield Row(str(path), "line", start, value)
            start = reader.line_num + 1
    except csv.Error as e:  # e.g. a quote never closed: the rest of the file cannot be split into rows
        raise DataError(f"invalid CSV: {e}", source=str(path), row=start, row_kind="line") from None


def read_csv(
    path: str | Path, *, delimiter: str = ",", quoting: int = csv.QUOTE_MINIMAL
) -> list[dict[str, str]]:
    """Rows of a CSV/TSV with a header. `quoting=csv.QUOTE_NONE` for files that never quote; a record
    with more or fewer fields than the header is a DataError naming the file and line."""
    return [row for _, row in csv_records(path, delimiter=delimiter, quoting=quoting)]


def csv_records(
    path: str | Path,
    *,
    delimiter: str = ",",
    quoting: int = csv.QUOTE_MINIMAL,
    fields: Sequence[str] = (),
) -> list[tuple[str, dict[str, str]]]:
    """`read_csv` with each row's place, "name.csv:line N": the line the record starts on, which a
    row index misses once a quoted field spans lines. A record without one of `fields` is a
    DataError naming the file, the line and the field."""
    out = []
    for row in csv_rows(Path(path), delimiter=delimiter, quoting=quoting):
        value = _object(row)
        for f in fields:
            if f not in value:
                raise DataError("missing field", field=f, source=row.source, row=row.number, row_kind="line")
        out.append((f"{Path(row.source).name}:line {row.number}", value))
    return out


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a (possibly gzipped) JSONL file, each a JSON object; blank lines are skipped."""
    return [_object(row) for row in json_lines(Path(path))]


def _object(row: Row) -> dict[str, Any]:
    """The row's mapping, or its DataError raised with the file and line filled in."""
    if isinstance(row.value, DataError):
        raise row.value.located(row.source, row.number, row.row_kind)
    if not isinstance(row.value, dict):
        got = type(row.value).__name__
        raise DataError(
            f"expected a JSON object, got {got}", source=row.source, row=row.number, row_kind=row.row_kind
        )
    return row.value


def _parquet_rows(path: Path) -> Iterator[tuple[int, dict]]:
    import pyarrow.parquet as pq  # a dependency of `datasets`; imported lazily since most data is JSONL

    number = 0
    try:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=1024):
            for row in batch.to_pylist():
                number += 1
                yield number, row
    except (OSError, ValueError) as e:  # pyarrow's ArrowIOError / ArrowInvalid: not a parquet file
        first = (str(e).splitlines() or [type(e).__name__])[0]
        raise DataError(f"cannot read parquet: {first}", source=str(path), row=number + 1) from None
