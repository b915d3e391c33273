"""Data errors that name where they happened, and the report of what a load skipped."""

from __future__ import annotations

from dataclasses import dataclass, field

from align.errors import InvalidInput

MAX_REASONS = 5  # how many skip reasons a report keeps verbatim


class DataError(InvalidInput):
    """A malformed record: names the source file, the row (or line) and the field when known.

    `row` is 1-based; `row_kind` is "line" for JSONL (the physical line number) and "row" for
    JSON arrays, parquet files, hub datasets and in-memory lists.
    """

    def __init__(
        self,
        reason: str,
        *,
        field: str | None = None,
        source: str | None = None,
        row: int | None = None,
        row_kind: str = "row",
    ):
        self.reason, self.field, self.source, self.row, self.row_kind = reason, field, source, row, row_kind
        super().__init__(self._message())

    def _message(self) -> str:
        if self.source is None and self.row is None and not self.field:
            return self.reason  # a reason that names its own place (e.g. "file.csv:row 3: ...")
        where = [self.source or "<data>"]
        if self.row is not None:
            where.append(f"{self.row_kind} {self.row}")
        if self.field:
            where.append(f"field '{self.field}'")
        return f"{', '.join(where)}: {self.reason}"

    def located(self, source: str, row: int | None, row_kind: str) -> DataError:
        """The same error with its location filled in (errors raised while parsing know only the field)."""
        return DataError(self.reason, field=self.field, source=source, row=row, row_kind=row_kind)

    def under(self, prefix: str) -> DataError:
        """The same error with its field path prefixed, e.g. `[2].role` under `chosen`."""
        sub = self.field or ""
        name = prefix + sub if not sub or sub.startswith("[") else f"{prefix}.{sub}"
        return DataError(self.reason, field=name, source=self.source, row=self.row, row_kind=self.row_kind)


@dataclass
class LoadReport:
    """What a load read, kept and skipped; `reasons` holds the first few skip messages verbatim."""

    source: str
    read: int = 0
    loaded: int = 0
    skipped: int = 0
    skipped_by_field: dict[str, int] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)

    def skip(self, error: DataError) -> None:
        self.skipped += 1
        key = error.field or "<row>"
        self.skipped_by_field[key] = self.skipped_by_field.get(key, 0) + 1
        if len(self.reasons) < MAX_REASONS:
            self.reasons.append(str(error))

    def summary(self) -> str:
        text = f"{self.source}: read {self.read}, loaded {self.loaded}, skipped {self.skipped}"
        if self.skipped:
            text += " (" + ", ".join(f"{k}: {v}" for k, v in sorted(self.skipped_by_field.items())) + ")"
        return text
