"""Splits of a dataset: which files of a local directory make up a named split (`split_files`), and
the deterministic train / held-out cut of its examples (`SplitOptions`, `heldout_split`).

A file belongs to split `s` when, in this order of preference:
  1. exactly: a folder on its path is named `s`, or its name is `s` (`s.jsonl`) or a shard of `s`
     (`s-00000-of-00002.parquet`, as `datasets` writes them);
  2. by a generic name: nothing is named `s` exactly, `s` is a common split name (train, test, ...) and
     the file is named after exactly one split starting with it (`train_v2.jsonl` for `train`).
Several such splits (`train_prefs`, `train_sft` for `train`) are ambiguous: an error lists them. A
directory with no file named after any split is one split.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from pathlib import Path

import numpy as np

from align import checks
from align.data.files import SUFFIXES
from align.errors import InvalidInput, MissingInput

_SPLIT_NAMES = ("train", "test", "validation", "valid", "dev", "eval")


def split_files(directory: Path, split: str, data_files=None) -> list[Path]:
    """The data files of `split` under `directory` (or those matching the `data_files` globs), sorted."""
    files = sorted(p for p in directory.rglob("*") if p.is_file() and p.name.endswith(SUFFIXES))
    if data_files is not None:
        patterns = [data_files] if isinstance(data_files, str) else list(data_files)
        chosen = [
            p for p in files if any(fnmatch.fnmatch(str(p.relative_to(directory)), pat) for pat in patterns)
        ]
        if not chosen:
            raise MissingInput(f"{directory}: no data files match {patterns}")
        return chosen
    names = {p: _names(p.relative_to(directory)) for p in files}
    exact = [p for p in files if split in names[p]]
    if exact:
        return exact
    labels = {p: next((n for n in names[p] if _generic(n)), None) for p in files}
    found = sorted(set(labels.values()) - {None})
    if not found:
        return files  # no file is named after a split: the directory is one split
    candidates = sorted({labels[p] for p in files if labels[p] and _generic(labels[p]) == split})
    if len(candidates) > 1:
        raise InvalidInput(
            f"{directory}: split {split!r} is ambiguous: it could be any of {', '.join(candidates)}; "
            "pass one of them as the split, or data_files globs to combine them"
        )
    if not candidates:
        raise MissingInput(f"{directory}: no data files for split {split!r} (splits found: {found})")
    return [p for p in files if labels[p] == candidates[0]]


def _names(relative: Path) -> list[str]:
    """The split names a file could carry: its folders, then its own name without suffixes and shard."""
    stem = relative.name.split(".")[0]
    return [*relative.parts[:-1], stem.split("-")[0]]


def _generic(name: str) -> str | None:
    """The common split name that `name` is or starts with (followed by - or _), else None."""
    for split in _SPLIT_NAMES:
        if name == split or name.startswith((split + "-", split + "_")):
            return split
    return None


@dataclasses.dataclass(frozen=True)
class SplitOptions:
    """A deterministic train / held-out cut of a dataset's examples."""

    heldout_fraction: float = 0.0
    seed: int = 0
    heldout_max: int | None = None  # evaluate on at most this many of the held-out examples (cost);
    #                                 the rest of the held-out part is still kept out of training
    train_max: int | None = None  # train on at most the first N training examples (file order)

    def __post_init__(self):
        checks.fraction(self, "heldout_fraction")
        checks.at_least(self, 0, "seed")
        checks.at_least(self, 0, "heldout_max", optional=True)
        checks.at_least(self, 1, "train_max", optional=True)


def heldout_split(items: list, options: SplitOptions) -> tuple[list, list]:
    """(train, held-out): a permutation by `seed`; its first round(n * fraction) examples are held out.

    A function of (n, fraction, seed) only, so the same file always gives the same cut (the SFT and RM
    configs share it, so RM held-out pairs were never SFT training data). heldout_max and train_max
    only shorten the returned lists.
    """
    n = len(items)
    k = round(n * options.heldout_fraction)
    perm = np.random.default_rng(options.seed).permutation(n)
    held = set(perm[:k].tolist())
    shown = sorted(perm[:k].tolist())
    if options.heldout_max is not None:
        shown = sorted(perm[: min(k, options.heldout_max)].tolist())
    train = [x for i, x in enumerate(items) if i not in held]
    return train[: options.train_max] if options.train_max is not None else train, [items[i] for i in shown]
