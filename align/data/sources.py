"""One reader per training-data format: what a data source's `format:` names.

    records    any TRL-format file or directory (align.data.loading.load_records)
    selfaware  SelfAware.json: the train (or held-out) part of the split by question, with answer /
               hedge targets (align.data.selfaware)
    begin      a BEGIN directory: the policy's part of begin_test_wow.tsv, fully attributable responses
               as targets (align.data.grounding)

`read_source` returns the examples, a report for the stage summary and, for the two benchmark
formats, the split record a run directory keeps (seed, content hash, the ids on each side).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable, Mapping
from pathlib import Path

from align.data import grounding, selfaware
from align.data.formats import Example, as_prompt
from align.data.loading import load_records
from align.data_dir import missing_data_path, portable_path
from align.errors import InvalidInput

FORMATS = ("records", "selfaware", "begin")
BENCHMARK_SPLITS = ("train", "heldout")  # the parts of a benchmark format's split


@dataclasses.dataclass
class SourceData:
    examples: list[Example]
    report: dict
    record: dict | None = None  # the split, for the run directory (benchmark formats only)


def check_format(format: str, split: str, where: str) -> None:
    """InvalidInput naming `where` for an unknown format, or a benchmark split other than train/heldout."""
    if format not in FORMATS:
        raise InvalidInput(f"{where}.format: {format!r} is not one of {', '.join(FORMATS)}")
    if format != "records" and split not in BENCHMARK_SPLITS:
        raise InvalidInput(f"{where}.split: {split!r}; a {format} source has parts {BENCHMARK_SPLITS}")


def read_source(
    path: str,
    format: str = "records",
    *,
    split: str = "train",
    limit: int | None = None,
    seed: int = 0,
    prompts_only: bool = False,
    skip_invalid: bool = True,
    judge_passages: Mapping[str, Iterable[str]] | None = None,
) -> SourceData:
    """The examples of one source (prompts only, as PromptExample, when `prompts_only`).

    seed: the benchmark split's seed (the eval's `split_seed`). judge_passages ({what: passages}):
    BEGIN passages the attribution judge trained or was validated on; they are kept out of both
    policy sides, and the training rows are checked against them and the held-out rows (raises)."""
    check_format(format, split, "data")
    judge_passages = {what: set(p) for what, p in (judge_passages or {}).items()}
    if format == "records":
        kind = "prompt" if prompts_only else None
        records = load_records(path, split, limit=limit, kind=kind, skip_invalid=skip_invalid)
        report = {
            "path": portable_path(path),
            "rows_loaded": len(records),
            "rows_skipped": records.report.skipped,
        }
        return SourceData(list(records), report)
    if not Path(path).exists():
        raise missing_data_path(path)
    reader = _selfaware if format == "selfaware" else _begin
    data = reader(path, split, seed, judge_passages)
    data.examples = _stable_order(data.examples)[:limit]
    if prompts_only:
        data.examples = [as_prompt(e) for e in data.examples]
    data.report.update(path=path, format=format, split=split, seed=seed, used=len(data.examples))
    return data


def _stable_order(examples: list[Example]) -> list[Example]:
    """A fixed shuffle (by a hash of each example's origin), so that a `limit` takes a sample with both
    kinds of question instead of the file's first ones (SelfAware lists every answerable one first)."""
    return sorted(examples, key=lambda e: hashlib.sha256(e.origin.encode()).hexdigest())


def _selfaware(path: str, split: str, seed: int, judge_passages) -> SourceData:
    del judge_passages
    items, sha = selfaware.read_selfaware(path)
    train, held = selfaware.split_selfaware(items, seed)
    part = train if split == "train" else held
    report = {
        "questions": len(part),
        "answerable": sum(q.answerable for q in part),
        "unanswerable": sum(not q.answerable for q in part),
    }
    record = selfaware.split_record(items, sha, seed, path)
    return SourceData(selfaware.sft_examples(part), report, record)


def _begin(path: str, split: str, seed: int, judge_passages) -> SourceData:
    file = Path(path) / grounding.POLICY_FILE if Path(path).is_dir() else Path(path)
    rows = grounding.read_begin(file)
    reserved = {k for passages in judge_passages.values() for k in passages}
    train, held = grounding.split_begin(rows, seed, reserved)
    grounding.check_disjoint(
        train, {**judge_passages, "the held-out (evaluation) rows": [r.knowledge for r in held]}
    )
    part = train if split == "train" else held
    examples = grounding.sft_examples(part)
    report = {"rows": len(part), "attributable_targets": len(examples), "reserved_passages": len(reserved)}
    record = {
        "dataset": f"BEGIN (google/BEGIN-dataset, {grounding.POLICY_FILE})",
        "source": str(file),
        "sha256": hashlib.sha256(file.read_bytes()).hexdigest(),
        "seed": seed,
        "heldout_fraction": grounding.HELDOUT_FRACTION,
        "split_by": "knowledge passage; the attribution judge's passages on neither side",
        "judge_passages": {what: len(set(p)) for what, p in judge_passages.items()},
        "train_ids": [r.id for r in train],
        "heldout_ids": [r.id for r in held],
    }
    return SourceData(examples, report, record)
