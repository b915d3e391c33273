"""Reward-model pairs: one preference file or several, each cut into train / held-out on its own, pooled.

    data = load_pairs(RMDataOptions(path=..., more=(PairSource(path=...),)), tokenizer)
    data.train, data.heldout, data.heldout_lengths   # TokenizedPairs, TokenizedPairs, [n, 2] characters

Each file keeps the cut align.data.splits.heldout_split gives it alone (a function of its rows, fraction
and seed), so the main file's held-out pairs are the ones an SFT run with the same cut never trained
on, whatever other files are added. A training pair whose prompt is also the prompt of a held-out pair
(the HH files share a few opening questions) is dropped: held-out prompts are never trained on.

The held-out pairs carry their response lengths in characters of the untruncated text, for the
length-only baseline (reward_models.evaluate.length_report): the baseline sees the whole answers even
where the reward model's rows were cut to max_length.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from align import checks
from align.data.formats import PreferenceExample
from align import distributed
from align.data.lazy import chain
from align.data.preference import PreferenceDataOptions, load_preference_pairs, prompt_key
from align.data.splits import SplitOptions
from align.data_dir import portable_path
from align.training.feed import encode_by_process
from align.training.stage import StageData


@dataclasses.dataclass(frozen=True)
class PairSource:
    """One more preference file: its own train / held-out cut, pooled with the main file's."""

    path: str
    split: str = "train"
    limit: int | None = None
    heldout: SplitOptions = SplitOptions()
    train: bool = True  # false: the file only adds held-out pairs (its training part is left unused)

    def __post_init__(self):
        checks.at_least(self, 1, "limit", optional=True)


@dataclasses.dataclass(frozen=True)
class RMDataOptions(PreferenceDataOptions):
    """DPO's preference data section, with longer rows by default and more files."""

    max_length: int = 512  # T of each [B, P, T] batch
    more: tuple[PairSource, ...] = ()  # more preference files (e.g. the other HH splits)
    length_tolerance: float = 0.1  # length-matched pairs: lengths within this fraction of the longer

    def __post_init__(self):
        super().__post_init__()
        checks.fraction(self, "length_tolerance")


@dataclasses.dataclass(frozen=True)
class RMData(StageData):
    heldout_lengths: np.ndarray | None = None  # [n, 2] characters of (chosen, rejected) responses
    heldout_files: tuple[str, ...] = ()  # [n] the file each held-out pair came from (source_name)


def source_name(path: str) -> str:
    """A file's last two path parts ("helpful-base/test.jsonl.gz"): names it in reports without the
    machine's directories."""
    return "/".join(str(path).replace("\\", "/").rstrip("/").split("/")[-2:])


def _chars(messages) -> int:
    if isinstance(messages, str):
        return len(messages)
    return sum(len(m["content"] if isinstance(m, dict) else m.content) for m in messages)


def response_lengths(options: PreferenceDataOptions) -> dict[str, tuple[int, int]]:
    """{origin: (characters of the chosen response, of the rejected one)} of a file's preference rows."""
    from align.data.loading import load_records

    records = load_records(
        options.path, options.split, limit=options.limit, skip_invalid=options.skip_invalid
    )
    return {
        e.origin: (_chars(e.chosen), _chars(e.rejected)) for e in records if isinstance(e, PreferenceExample)
    }


def _sources(options: RMDataOptions) -> list[tuple[PreferenceDataOptions, bool]]:
    """(data options, whether its training part trains) of the main file and of each `more` file."""
    more = [
        (
            dataclasses.replace(
                options, path=s.path, split=s.split, limit=s.limit, heldout=s.heldout, more=()
            ),
            s.train,
        )
        for s in options.more
    ]
    return [(options, True), *more]


def _without_heldout_prompts(parts: list, held: list, lazy: bool) -> tuple:
    """(the training pairs of every part whose prompt no held-out pair has, how many were left out)."""
    if lazy:
        pooled = chain(parts)
        keys = {prompt_key(p) for p in held}
        kept = pooled.select([i for i, k in enumerate(pooled.keys) if k not in keys])
        return kept, len(pooled) - len(kept)
    train = [p for part in parts for p in part]
    prompts = {p.tokens[0, : p.prompt_length].tobytes() for p in held}
    kept = [p for p in train if p.tokens[0, : p.prompt_length].tobytes() not in prompts]
    return kept, len(train) - len(kept)


def load_pairs(options: RMDataOptions, tokenizer) -> RMData:
    """Train and held-out pairs of every source, pooled, with a report per file and in all.

    Several processes share the training pairs' tokenizing (align.training.feed.encode_by_process):
    then the training pairs are a LazySequences, and those whose prompt is held out are found by
    their prompt's key instead of their tokens; the same pairs in the same order."""
    share = encode_by_process if distributed.process_count() > 1 else None
    train, held, lengths, files, names = [], [], [], [], []
    for source, trains in _sources(options):
        t, h, report = load_preference_pairs(source, tokenizer, share)
        chars = response_lengths(source) if h else {}
        train += [t] if trains else []
        held += h
        lengths += [chars[p.origin] for p in h]
        names += [source_name(source.path)] * len(h)
        files.append({"path": portable_path(source.path), **report, "trains": trains})
    kept, dropped = _without_heldout_prompts(train, held, lazy=share is not None)
    report = files[0] if len(files) == 1 else {"files": files}
    report |= {
        "train_pairs": len(kept),
        "heldout_pairs": len(held),
        "dropped_heldout_prompt": dropped,
    }
    return RMData(kept, held, report, np.asarray(lengths, np.int64).reshape(-1, 2), tuple(names))
