"""Range checks for config dataclasses, raised from `__post_init__` as FieldError(field, problem).

`align.config_io.build` reports a FieldError at the file:line of that field's key, so a bad value in
a YAML config reads `configs/sft/x.yaml:12: train.batch_size: must be an integer >= 1, got -4`. Code
that builds the dataclasses directly gets a ValueError naming the class and field.
"""

from __future__ import annotations

import math
from typing import Any


class FieldError(ValueError):
    """One field of a config dataclass is out of range."""

    def __init__(self, field: str, problem: str):
        super().__init__(problem)
        self.field = field


def _value(obj: Any, field: str) -> Any:
    return getattr(obj, field)


def at_least(obj: Any, minimum: int, *fields: str, optional: bool = False) -> None:
    """Each field is an integer >= minimum (or None when `optional`)."""
    for f in fields:
        v = _value(obj, f)
        if v is None and optional:
            continue
        if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
            null = " or null" if optional else ""
            raise FieldError(f, f"must be an integer >= {minimum}{null}, got {v!r}")


def positive_number(obj: Any, *fields: str, optional: bool = False) -> None:
    """Each field is a finite number > 0 (or None when `optional`)."""
    for f in fields:
        v = _value(obj, f)
        if v is None and optional:
            continue
        if not _finite(v) or v <= 0:
            raise FieldError(f, f"must be a finite number > 0{' or null' if optional else ''}, got {v!r}")


def non_negative(obj: Any, *fields: str) -> None:
    """Each field is a finite number >= 0."""
    for f in fields:
        v = _value(obj, f)
        if not _finite(v) or v < 0:
            raise FieldError(f, f"must be a finite number >= 0, got {v!r}")


def fraction(obj: Any, *fields: str, closed: bool = False) -> None:
    """Each field lies in [0, 1) ([0, 1] when `closed`)."""
    for f in fields:
        v = _value(obj, f)
        if not _finite(v) or v < 0 or v > 1 or (v == 1 and not closed):
            raise FieldError(f, f"must lie in [0, 1{']' if closed else ')'}, got {v!r}")


def one_of(obj: Any, field: str, choices: tuple) -> None:
    v = _value(obj, field)
    if v not in choices:
        raise FieldError(field, f"expected one of {choices}, got {v!r}")


def _finite(v: Any) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)
