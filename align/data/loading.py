"""Read rows from local files, directories, in-memory lists or hub datasets into typed examples.

Local files: .jsonl, .jsonl.gz, .json (a JSON array, or JSON lines), .json.gz, .parquet. A
directory loads the files of the requested split (a name or parent folder starting with the
split, e.g. `test.jsonl.gz`, `train-00000-of-00002.parquet`, `test/part.jsonl`) in sorted order.
Anything else is a hub dataset name for `datasets.load_dataset`.
"""

from __future__ import annotations

import fnmatch
import gzip
import json
import logging
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from align.data.errors import DataError, LoadReport
from align.data.formats import (
    KINDS,
    Example,
    as_prompt,
    detect_format,
    kind_of,
    normalize_row,
    prompt_of_pair,
)
from align.errors import MissingInput

SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".json.gz", ".parquet")
_SPLIT_NAMES = ("train", "test", "validation", "valid", "dev", "eval")

log = logging.getLogger("align.data")
_LOGGED_REASONS = 3  # skip reasons a load's warning quotes (Records.report keeps a few more)


@dataclass(frozen=True)
class _Row:
    """A raw row and where it came from; `value` is the parsed row or the DataError parsing raised."""

    source: str
    row_kind: str  # "line" (JSONL: the physical line number) or "row" (1-based index)
    number: int
    value: Any


@dataclass
class Records:
    """Loaded examples, all of one `kind` (a key of formats.KINDS), with the load report."""

    examples: list[Example]
    kind: str | None
    report: LoadReport = field(repr=False)

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i):
        return self.examples[i]

    def __iter__(self) -> Iterator[Example]:
        return iter(self.examples)


def load_records(
    source: str | os.PathLike | Sequence[Mapping[str, Any]],
    split: str = "train",
    *,
    data_files: str | Sequence[str] | None = None,
    limit: int | None = None,
    kind: str | None = None,
    skip_invalid: bool = False,
) -> Records:
    """Load and normalise the rows of `source` (see the module docstring).

    kind: expected format; None takes the first valid row's and requires every row to match.
        "prompt" also accepts completion, preference and chat rows and keeps their prompts, also
        of preference rows whose pair is unusable (chosen == rejected; formats.prompt_of_pair).
    skip_invalid: skip malformed rows, count them in `Records.report` and log a warning with
        the first few reasons, instead of raising.
    limit: stop after this many valid examples.
    """
    if kind is not None and kind not in KINDS:
        raise ValueError(f"kind={kind!r}: expected one of {sorted(KINDS)} or None")
    name, rows = _open(source, split, data_files)
    report = LoadReport(source=name)
    examples: list[Example] = []
    for row in rows:
        if limit is not None and len(examples) >= limit:
            break
        report.read += 1
        try:
            if isinstance(row.value, DataError):
                raise row.value
            example = _expect(_normalize(row.value, f"{row.source}, {row.row_kind} {row.number}", kind), kind)
            kind = kind or kind_of(example)
        except DataError as e:
            located = e.located(row.source, row.number, row.row_kind)
            if not skip_invalid:
                raise located from None
            report.skip(located)
            continue
        examples.append(example)
    report.loaded = len(examples)
    if report.skipped:  # skipped rows are never silent: say how many and why (the first few)
        log.warning("%s; first skipped:%s", report.summary(),
                    "".join(f"\n  {r}" for r in report.reasons[:_LOGGED_REASONS]))
    return Records(examples, kind, report)


def _normalize(value: Any, origin: str, kind: str | None) -> Example:
    """normalize_row, except that a prompt-only load keeps the prompt of a preference row whose pair
    is unusable (chosen == rejected, ...): RL needs the prompt, not the pair."""
    try:
        return normalize_row(value, origin)
    except DataError as pair_error:
        if kind != "prompt" or not isinstance(value, Mapping) or detect_format(value) != "preference":
            raise
        try:
            return prompt_of_pair(value, origin)
        except DataError:
            raise pair_error from None  # the pair's own error says more than the fallback's


def _expect(example: Example, kind: str | None) -> Example:
    if kind is None or kind_of(example) == kind:
        return example
    if kind == "prompt":
        return as_prompt(example)
    raise DataError(f"a {kind_of(example)} row in a {kind} dataset (every row must have the same format)")


def _open(source, split: str, data_files) -> tuple[str, Iterable[_Row]]:
    """(display name, rows) for any supported source."""
    if isinstance(source, (list, tuple)) or _is_dataset(source):
        name = f"<{type(source).__name__}>"
        return name, (_Row(name, "row", i, r) for i, r in enumerate(source, 1))
    path = Path(source).expanduser()
    if path.is_dir():
        files = _split_files(path, split, data_files)
        return str(path), (row for f in files for row in _file_rows(f))
    if path.is_file():
        return str(path), _file_rows(path)
    if str(source).endswith(SUFFIXES) or str(source).startswith((".", "/", "~")):
        raise MissingInput(f"data file {path} does not exist")
    return _hub_rows(str(source), split, data_files)


def _is_dataset(source: Any) -> bool:
    return type(source).__name__ in ("Dataset", "IterableDataset") and hasattr(source, "features")


def _file_rows(path: Path) -> Iterator[_Row]:
    name = str(path)
    if name.endswith(".parquet"):
        yield from (_Row(name, "row", i, r) for i, r in _parquet_rows(path))
    elif name.endswith((".jsonl", ".jsonl.gz")):
        yield from _json_lines(path)
    elif name.endswith((".json", ".json.gz")):
        with _open_text(path) as f:
            text = f.read()
        try:
            rows = json.loads(text)
        except json.JSONDecodeError:
            yield from _json_lines(path)  # JSON lines saved as .json
            return
        if not isinstance(rows, list):
            raise DataError(f"a .json file must hold a list of rows, got {type(rows).__name__}", source=name)
        yield from (_Row(name, "row", i, r) for i, r in enumerate(rows, 1))
    else:
        raise ValueError(f"{name}: unsupported file type; expected one of {SUFFIXES}")


def _open_text(path: Path):
    return (
        gzip.open(path, "rt", encoding="utf-8") if path.name.endswith(".gz") else open(path, encoding="utf-8")
    )


def _json_lines(path: Path) -> Iterator[_Row]:
    """Rows with their physical 1-based line numbers; blank lines are skipped but counted."""
    with _open_text(path) as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                value = json.loads(line.rstrip("\r\n"))  # so a cut-off line reports its own column
            except json.JSONDecodeError as e:
                value = DataError(f"invalid JSON: {e.msg} at column {e.colno}")
            yield _Row(str(path), "line", number, value)


def _parquet_rows(path: Path) -> Iterator[tuple[int, dict]]:
    import pyarrow.parquet as pq  # a dependency of `datasets`; imported lazily since most data is JSONL

    number = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=1024):
        for row in batch.to_pylist():
            number += 1
            yield number, row


def _split_files(directory: Path, split: str, data_files) -> list[Path]:
    """The data files of `split` under `directory` (or those matching the `data_files` globs)."""
    files = sorted(p for p in directory.rglob("*") if p.is_file() and p.name.endswith(SUFFIXES))
    if data_files is not None:
        patterns = [data_files] if isinstance(data_files, str) else list(data_files)
        chosen = [
            p for p in files if any(fnmatch.fnmatch(str(p.relative_to(directory)), pat) for pat in patterns)
        ]
    else:
        chosen = [p for p in files if _split_of(p.relative_to(directory)) == split]
        if not chosen and not any(_split_of(p.relative_to(directory)) for p in files):
            chosen = files  # no file is named after a split: the directory is one split
    if not chosen:
        found = sorted({_split_of(p.relative_to(directory)) for p in files} - {None})
        raise MissingInput(f"{directory}: no data files for split {split!r} (splits found: {found})")
    return chosen


def _split_of(relative: Path) -> str | None:
    for part in relative.parts:
        stem = part.split(".")[0]
        for name in _SPLIT_NAMES:
            if stem == name or stem.startswith((name + "-", name + "_")):
                return name
    return None


def _hub_rows(name: str, split: str, data_files) -> tuple[str, Iterable[_Row]]:
    import datasets  # slow to import; only hub sources need it

    dataset = datasets.load_dataset(name, split=split, data_files=data_files)
    display = f"{name}[{split}]"
    return display, (_Row(display, "row", i, r) for i, r in enumerate(dataset, 1))
