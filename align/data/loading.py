"""Read rows from local files, directories, in-memory lists or hub datasets into typed examples.

Local files (align.data.files): .jsonl, .json (an array, one object, or JSON lines), .csv with a
header row (each optionally .gz), .parquet. A directory loads the files of the requested split
(align.data.splits: `train.jsonl`, `train-00000-of-00002.parquet`, `train/part.jsonl`; then a
file named after one split starting with it, `train_v2.jsonl`) in sorted order. A missing path that
can only be local is an error; any other name goes to `datasets.load_dataset` (the hub).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from align.data.errors import DataError, LoadReport
from align.data.files import SUFFIXES, Row, file_rows
from align.data.formats import (
    KINDS,
    Example,
    as_prompt,
    detect_format,
    kind_of,
    normalize_row,
    prompt_of_pair,
)
from align.data.splits import split_files
from align.data_dir import missing_data_path
from align.errors import MissingInput

log = logging.getLogger("align.data")
_LOGGED_REASONS = 3  # skip reasons a load's warning quotes (Records.report keeps a few more)


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
        log.warning(
            "%s; first skipped:%s",
            report.summary(),
            "".join(f"\n  {r}" for r in report.reasons[:_LOGGED_REASONS]),
        )
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


def _open(source, split: str, data_files) -> tuple[str, Iterable[Row]]:
    """(display name, rows) for any supported source."""
    if isinstance(source, (list, tuple)) or _is_dataset(source):
        name = f"<{type(source).__name__}>"
        return name, (Row(name, "row", i, r) for i, r in enumerate(source, 1))
    path = Path(source).expanduser()
    if path.is_dir():
        files = split_files(path, split, data_files)
        return str(path), (row for f in files for row in file_rows(f))
    if path.is_file():
        return str(path), file_rows(path)
    if looks_local(str(source)):
        raise missing_data_path(source)
    return _hub_rows(str(source), split, data_files)


def _is_dataset(source: Any) -> bool:
    return type(source).__name__ in ("Dataset", "IterableDataset") and hasattr(source, "features")


def looks_local(name: str) -> bool:
    """A name that can only be a local path. Hub ids are `name` or `org/name`, so a path with one
    separator counts as local only when its parent folder exists (`my_data/train` next to `my_data/`)."""
    if name.endswith(SUFFIXES) or name.startswith((".", "/", "~")) or "\\" in name or name.count("/") > 1:
        return True
    parent = Path(name).parent
    return parent != Path(".") and parent.is_dir()


def _hub_rows(name: str, split: str, data_files) -> tuple[str, Iterable[Row]]:
    import datasets  # slow to import; only hub sources need it

    # A bare data_files list is read as the "train" split: name the split it is for.
    files = None if data_files is None else {split: data_files}
    try:
        dataset = datasets.load_dataset(name, split=split, data_files=files)
    except Exception as e:  # offline, a typo, a gated dataset, an unknown split: say what was asked for
        raise MissingInput(
            f"could not load dataset {name!r} (split {split!r}) with datasets.load_dataset "
            f"({type(e).__name__}: {e}). A local file or directory must exist; without internet, "
            "download the dataset elsewhere and pass its local directory"
        ) from e
    display = f"{name}[{split}]"
    return display, (Row(display, "row", i, r) for i, r in enumerate(dataset, 1))
