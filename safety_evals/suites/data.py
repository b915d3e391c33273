"""Reading benchmark data from a local path or the HF hub, with a content hash for the results.

Local JSONL and CSV/TSV files go through align's reader (`align.data.files`: `read_jsonl`, `read_csv`,
`csv_records`; UTF-8 with an optional byte-order mark, gzip by suffix), and malformed data raises
align's `DataError` naming file and line. The judges' training data goes through the same reader.

A local source is hashed byte for byte (files in sorted order, the same rule as model weights);
a hub source is hashed over its rows serialised as canonical JSON, because the hub cache layout
is not stable. Errors name the file, the line/row and the field.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from align.data.errors import DataError
from align.data.files import csv_records, read_csv, read_jsonl
from align.data.loading import looks_local
from align.data_dir import missing_data_path
from safety_evals.results import files_sha256

__all__ = [
    "DataError",
    "csv_records",
    "is_local",
    "load_hub",
    "local_sha256",
    "read_csv",
    "read_jsonl",
    "require",
    "rows_sha256",
    "take",
]


def is_local(source: str | os.PathLike) -> bool:
    return os.path.exists(source)


def local_sha256(paths: Iterable[str | os.PathLike]) -> str:
    """sha256 over the concatenated bytes of `paths` in sorted order (one file: its own sha256)."""
    files = sorted(str(p) for p in paths)
    if len(files) == 1:
        return files_sha256(files[0])
    h = hashlib.sha256()
    for f in files:
        with open(f, "rb") as fh:
            while chunk := fh.read(1 << 20):
                h.update(chunk)
    return h.hexdigest()


def rows_sha256(rows: Sequence[Mapping[str, Any]]) -> str:
    """sha256 of the rows as canonical JSON (sorted keys, one row per line)."""
    h = hashlib.sha256()
    for row in rows:
        h.update(json.dumps(row, sort_keys=True, ensure_ascii=False, default=str).encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()


def load_hub(
    name: str, config: str | None, split: str, *, label_names: Sequence[str] = ()
) -> list[dict[str, Any]]:
    """Rows of a hub dataset through `datasets.load_dataset` (needs network or a warm cache).

    `label_names`: columns whose ClassLabel integers are returned as the dataset's label names
    (`features[col].int2str`); a column without ClassLabel features is left as stored.
    A `name` that can only be a local path (a missing default source, a typo) is a MissingInput that
    names it, not a hub lookup."""
    if looks_local(name):
        raise missing_data_path(name)
    import datasets  # imported lazily: the local path never needs it

    ds = datasets.load_dataset(name, config, split=split)
    decode = {c: ds.features[c].int2str for c in label_names if hasattr(ds.features.get(c), "int2str")}
    rows = [dict(r) for r in ds]
    for row in rows:
        for c, int2str in decode.items():
            if isinstance(row.get(c), int):
                row[c] = int2str(row[c])
    return rows


def require(row: Mapping[str, Any], fields: Sequence[str], where: str, *, text: Sequence[str] = ()) -> None:
    """Raise DataError naming `where` (e.g. 'file.csv:12') and the first missing/empty field.

    Missing: absent or None. The `text` fields must also be strings with a non-space character (a
    blank CSV cell reads as ""). Opt-in, because some sets have legitimately blank columns (BEGIN)."""
    for f in fields:
        if f not in row or row[f] is None:
            raise DataError(f"{where}: missing field {f!r}")
        if f in text and not isinstance(row[f], str):
            raise DataError(f"{where}: field {f!r} is {type(row[f]).__name__}, expected text")
        if f in text and not row[f].strip():
            raise DataError(f"{where}: empty field {f!r}")


def take(rows: Sequence[Any], limit: int | None) -> list[Any]:
    """The first `limit` rows (all when limit is None)."""
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    return list(rows if limit is None else rows[:limit])
