"""Human-labelled training and validation rows for each judge, with the split the judge never crosses.

Each loader returns `Labelled(rows, labels, groups)`: `groups` is what the held-out split is made
by (TruthfulQA: the question; XSTest: the model that wrote the completion; BEGIN: the file, dev or
test). A judge is validated only on groups it never saw in training.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping, Sequence

from align.data.errors import DataError
from align.data.files import csv_records
from align.data.grounding import read_begin
from align.data_dir import data_path
from align.errors import InvalidInput

XSTEST_MODELS = ("gpt4", "llama2new", "llama2orig", "mistralguard", "mistralinstruct")
XSTEST_LABELS = {"1_full_compliance": "full_compliance", "2_full_refusal": "full_refusal",
                 "3_partial_refusal": "partial_refusal"}  # fmt: skip
BEGIN_DEV = ("cmu-dog/begin_dev_cmu.tsv", "topicalchat/begin_dev_tc.tsv", "wow/begin_dev_wow.tsv")
BEGIN_TEST = ("wow/begin_test_wow.tsv",)


@dataclasses.dataclass(frozen=True)
class Labelled:
    rows: list[dict[str, str]]
    labels: list[str]
    groups: list[str]

    def take(self, index: Sequence[int]) -> Labelled:
        return Labelled(
            [self.rows[i] for i in index], [self.labels[i] for i in index], [self.groups[i] for i in index]
        )


def stable_fraction(key: str) -> float:
    """A number in [0, 1) fixed by `key` alone: splits and samples that never depend on row order."""
    return int(hashlib.sha256(key.encode()).hexdigest()[:12], 16) / 16**12


def truthfulqa(role: str) -> Labelled:
    """finetune_truth.jsonl (role "truth") or finetune_info.jsonl ("info"); group = the question."""
    name = {"truth": "finetune_truth.jsonl", "info": "finetune_info.jsonl"}[role]
    path = data_path(f"truthfulqa/{name}")
    negative, positive = {"truth": ("false", "true"), "info": ("uninformative", "informative")}[role]
    rows, labels = [], []
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            rec = json.loads(line)
            q, sep, rest = rec["prompt"].partition("\nA: ")
            answer = rest.rsplit("\n", 1)[0]
            if not q.startswith("Q: ") or not sep or rec["completion"] not in (" yes", " no"):
                raise InvalidInput(f"{path}:{line_no}: prompt/completion not in the 'Q: ...\\nA: ...' form")
            rows.append({"question": q[3:], "answer": answer})
            labels.append(positive if rec["completion"] == " yes" else negative)
    return Labelled(rows, labels, [r["question"] for r in rows])


def with_references(data: Labelled) -> Labelled:
    """TruthfulQA rows with their question's reference answers from TruthfulQA.csv ("; "-joined, as
    the file keeps them) under correct_answers / incorrect_answers. Rows whose question is not in the
    final TruthfulQA.csv (29 of the 817 questions the label files cover were reworded) are dropped."""
    path = data_path("truthfulqa/TruthfulQA.csv")
    fields = ("Question", "Correct Answers", "Incorrect Answers")
    refs = {r["Question"].strip(): r for _, r in csv_records(path, fields=fields)}
    keep = [i for i, q in enumerate(data.groups) if q in refs]
    rows = [
        {**data.rows[i], "correct_answers": refs[data.groups[i]]["Correct Answers"],
         "incorrect_answers": refs[data.groups[i]]["Incorrect Answers"]}
        for i in keep
    ]  # fmt: skip
    return Labelled(rows, [data.labels[i] for i in keep], [data.groups[i] for i in keep])


def xstest() -> Labelled:
    """The 2,250 human-labelled XSTest completions; group = the model that wrote them."""
    rows, labels, groups = [], [], []
    for model in XSTEST_MODELS:
        path = data_path(f"xstest/completions/xstest_v2_completions_{model}.csv")
        for where, rec in csv_records(path, fields=("id", "prompt", "completion", "final_label")):
            if rec["final_label"] not in XSTEST_LABELS:
                raise DataError(f"{where}: field 'final_label' is {rec['final_label']!r}, expected one of "
                                f"{sorted(XSTEST_LABELS)}")  # fmt: skip
            rows.append({"id": rec["id"], "prompt": rec["prompt"], "completion": rec["completion"]})
            labels.append(XSTEST_LABELS[rec["final_label"]])
            groups.append(model)
    return Labelled(rows, labels, groups)


def xstest_automated(model: str, method: str) -> dict[str, str]:
    """{row id: label} of the XSTest paper's automated classifier (method: "streval" | "gpteval")
    on one model's 450 rows. GPT-4 sometimes answered with prose instead of a label (it refused to
    grade): such a row is "unparsed", a disagreement with any human label, as in the paper's counts."""
    column = {"streval": "strmatch_label", "gpteval": "gpt4_label"}[method]
    path = data_path(f"xstest/automated_labels/xstest_v2_completions_{model}_{method}.csv")
    rows = csv_records(path, fields=("id", column))
    return {r["id"]: XSTEST_LABELS.get(r[column].strip(), "unparsed") for _, r in rows}


def begin(files: Sequence[str]) -> Labelled:
    """BEGIN rows (align's BEGIN reader: fields and labels checked); label attributable iff "Fully
    attributable" (Generic counts as not); group = file."""
    rows, labels, groups = [], [], []
    for name in files:
        for rec in read_begin(data_path(f"attribution/begin/{name}")):
            rows.append({"knowledge": rec.knowledge, "context": rec.message, "response": rec.response})
            labels.append("attributable" if rec.label == "Fully attributable" else "not_attributable")
            groups.append(name)
    return Labelled(rows, labels, groups)


def sample(data: Labelled, n: int | None, salt: str) -> Labelled:
    """Up to n rows chosen by a hash of (salt, row): the same rows whatever the file order."""
    keys = [stable_fraction(salt + json.dumps(r, sort_keys=True)) for r in data.rows]
    order = sorted(range(len(keys)), key=keys.__getitem__)
    return data.take(sorted(order[:n] if n is not None else order))


def sample_per_group(data: Labelled, n: int | None, salt: str) -> Labelled:
    """Up to n rows of each group, chosen as in `sample`; rows keep their order."""
    keep = []
    for g in sorted(set(data.groups)):
        index = [i for i, h in enumerate(data.groups) if h == g]
        keys = {i: stable_fraction(salt + json.dumps(data.rows[i], sort_keys=True)) for i in index}
        keep += sorted(index, key=keys.__getitem__)[:n]
    return data.take(sorted(keep))


def dedupe(data: Labelled) -> Labelled:
    """Drop repeated (row, label) pairs (finetune_*.jsonl repeats some)."""
    seen, keep = set(), []
    for i, (r, y) in enumerate(zip(data.rows, data.labels)):
        k = (json.dumps(r, sort_keys=True), y)
        if k not in seen:
            seen.add(k)
            keep.append(i)
    return data.take(keep)


def split_by_group(data: Labelled, test_fraction: float, salt: str = "split") -> tuple[Labelled, Labelled]:
    """(train, test) with every group wholly on one side, by a hash of the group's name."""
    test = [stable_fraction(salt + g) < test_fraction for g in data.groups]
    return data.take([i for i, t in enumerate(test) if not t]), data.take(
        [i for i, t in enumerate(test) if t]
    )


def check_fields(rows: Sequence[Mapping[str, str]], fields: Sequence[str], role: str) -> None:
    for i, r in enumerate(rows):
        missing = [k for k in fields if not isinstance(r.get(k), str)]
        if missing:
            raise InvalidInput(f"{role} judge input row {i}: missing string field(s) {missing}")
