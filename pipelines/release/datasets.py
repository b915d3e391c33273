"""Data named the way a published model card names it: dataset, subset and split, never a path.

Configs and results documents name data files as paths (`${ALIGN_DATA_DIR}/hh_rlhf/helpful-base/
test.jsonl.gz`, or an absolute path on the machine that trained the model). A card is published, so
`describe("${ALIGN_DATA_DIR}/hh_rlhf/helpful-base/test.jsonl.gz")` gives "Anthropic hh-rlhf,
helpful-base, test" and the hub id `Anthropic/hh-rlhf` for the card's `datasets:` and `model-index`.

`KNOWN` is one table keyed by the path relative to the data directory (the provenance of each file is
in that directory's README.md). A dataset that is not on the Hugging Face hub (SelfAware, BEGIN, BBQ,
XSTest: their data lives on GitHub) has no hub id; its `type` in the model-index is a slug. A source
the table does not know is named by its file name only, so no machine path reaches the card.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import PurePosixPath

from align.data_dir import PLACEHOLDER, portable_path


@dataclasses.dataclass(frozen=True)
class DatasetRef:
    """One dataset as a card names it; `hub_id` None: not on the Hugging Face hub."""

    name: str  # e.g. "Anthropic hh-rlhf"
    hub_id: str | None = None
    config: str | None = None  # the hub config / subset, e.g. "helpful-base"
    split: str | None = None
    slug: str | None = None  # the model-index `type` when there is no hub id

    @property
    def type(self) -> str:
        """The model-index `dataset.type`: the hub id, else the slug."""
        return self.hub_id or self.slug or self.name

    def __str__(self) -> str:
        return ", ".join(x for x in (self.name, self.config, self.split) if x)


def _hh(subset: str) -> DatasetRef:
    return DatasetRef("Anthropic hh-rlhf", "Anthropic/hh-rlhf", subset, "test")


_TQA, _BEGIN = "truthfulqa/truthful_qa", "BEGIN (google/BEGIN-dataset)"

# path under ALIGN_DATA_DIR -> dataset; a directory key covers the files under it
KNOWN: dict[str, DatasetRef] = {
    **{f"hh_rlhf/{s}/test.jsonl.gz": _hh(s) for s in ("helpful-base", "harmless-base", "helpful-online")},
    "hh_rlhf/helpful-rejection-sampled/test.jsonl.gz": _hh("helpful-rejection-sampled"),
    "crows_pairs/crows_pairs_anonymized.csv": DatasetRef("CrowS-Pairs", "nyu-mll/crows_pairs", None, "test"),
    "stereoset/stereoset_dev_flat.jsonl": DatasetRef(
        "StereoSet", "McGill-NLP/stereoset", "intersentence + intrasentence", "validation"
    ),
    "truthfulqa": DatasetRef(
        "TruthfulQA (2025 revision)", _TQA, "generation + multiple_choice", "validation"
    ),
    "truthfulqa/v1": DatasetRef("TruthfulQA", _TQA, "generation + multiple_choice", "validation"),
    "truthfulqa/v1/mc_task.json": DatasetRef("TruthfulQA", _TQA, "multiple_choice", "validation"),
    "truthfulqa/mc_task.json": DatasetRef(
        "TruthfulQA (2025 revision)", _TQA, "multiple_choice", "validation"
    ),
    "truthfulqa/finetune_truth.jsonl": DatasetRef(
        "TruthfulQA GPT-judge data", None, "truth", slug="truthfulqa"
    ),
    "truthfulqa/finetune_info.jsonl": DatasetRef(
        "TruthfulQA GPT-judge data", None, "info", slug="truthfulqa"
    ),
    "selfaware/SelfAware.json": DatasetRef("SelfAware", None, slug="selfaware"),  # no official split
    "attribution/begin": DatasetRef(_BEGIN, None, "cmu-dog + topicalchat + wow", "dev + wow test", "begin"),
    "attribution/begin/wow/begin_test_wow.tsv": DatasetRef(_BEGIN, None, "wow", "test", slug="begin"),
    "attribution/begin/wow/begin_dev_wow.tsv": DatasetRef(_BEGIN, None, "wow", "dev", slug="begin"),
    "attribution/begin/cmu-dog/begin_dev_cmu.tsv": DatasetRef(_BEGIN, None, "cmu-dog", "dev", slug="begin"),
    "attribution/begin/topicalchat/begin_dev_tc.tsv": DatasetRef(
        _BEGIN, None, "topicalchat", "dev", slug="begin"
    ),
    "bbq": DatasetRef("BBQ", None, "6 of 11 categories", "test", slug="bbq"),
    "xstest/xstest_prompts.csv": DatasetRef("XSTest", None, "prompts", "test", slug="xstest"),
    "ifeval/input_data.jsonl": DatasetRef("IFEval", "google/IFEval", None, "train"),
}


def _relative(source: str) -> str | None:
    """`source` relative to the data directory, or None when it lies elsewhere."""
    text = portable_path(os.path.expanduser(source)) or ""
    if not text.startswith(PLACEHOLDER):
        return None
    return str(PurePosixPath(text[len(PLACEHOLDER) :].lstrip("/")))


FILE_SUFFIXES = (".json", ".jsonl", ".csv", ".tsv", ".gz", ".parquet", ".txt", ".arrow")


def _is_hub_id(source: str) -> bool:
    """`owner/name` that is not a relative file path (a hub id has no data-file suffix)."""
    parts = source.split("/")
    return (
        len(parts) == 2
        and all(parts)
        and not source.startswith((".", "~", "$"))
        and not source.endswith(FILE_SUFFIXES)
        and not os.path.exists(source)
    )


def describe(source: str) -> DatasetRef:
    """The dataset behind a data path or hub name; never carries a directory of this machine."""
    source = source.strip()
    rel = _relative(source)
    if rel is not None:
        for key in sorted(KNOWN, key=len, reverse=True):  # the most specific entry first
            if rel == key or rel.startswith(key + "/"):
                return KNOWN[key]
        return DatasetRef(f"{rel} (from the data directory)")
    if _is_hub_id(source):
        return DatasetRef(source, hub_id=source)
    name = PurePosixPath(source.replace(os.sep, "/")).name or source
    return DatasetRef(f"{name} (local file)")


def describe_all(sources: str) -> list[DatasetRef]:
    """Each of comma-separated sources (a config's mixture), duplicates dropped, order kept."""
    refs = [describe(s) for s in str(sources).split(",") if s.strip()]
    return list(dict.fromkeys(refs))


def hub_ids(refs) -> list[str]:
    """The hub ids among `refs`, for the card's `datasets:`."""
    return list(dict.fromkeys(r.hub_id for r in refs if r.hub_id))
