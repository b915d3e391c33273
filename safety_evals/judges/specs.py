"""What each shipped judge reads, predicts and is trained / validated on: one explicit table.

`SPECS[role]` fixes the row fields, the label order, how a row becomes the backbone's text, the
feature recipe and the human-labelled data with its held-out split. Building a judge
(`safety_evals.judges.build`) and loading one (`load_judge`) both read this table only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

from safety_evals.judges import data
from safety_evals.judges.features import REFERENCES, Recipe

Row = Mapping[str, str]


@dataclasses.dataclass(frozen=True)
class Split:
    train: data.Labelled
    test: data.Labelled
    description: str


@dataclasses.dataclass(frozen=True)
class JudgeSpec:
    role: str
    fields: tuple[str, ...]
    labels: tuple[str, ...]
    render: Callable[[Row], str]
    max_tokens: int
    default_limit: int  # training rows when --limit is not given (feature extraction is the cost)
    source: str  # the human labels, for the card
    reference_fields: tuple[str, ...] = ()  # what the `references` recipe also reads (truth, info)

    def recipe(self, backbone: str) -> Recipe:
        return Recipe(backbone=backbone, max_tokens=self.max_tokens)

    def fields_for(self, backbone: str) -> tuple[str, ...]:
        return self.fields + (self.reference_fields if backbone == REFERENCES else ())


def _qa(row: Row) -> str:
    return f"Q: {row['question']}\nA: {row['answer']}"


def _exchange(row: Row) -> str:
    return f"Q: {row['prompt']}\nA: {row['completion']}"


def _claim(row: Row) -> str:
    # the claim first: the text is cut at max_tokens from the end, and the claim must stay whole
    return f"Claim: {row['response']}\nPassage: {row['knowledge']}"


TRUTHFULQA_TEST_FRACTION = 0.2
TRUTHFULQA_TEST_ROWS = 500


def truthfulqa_split(role: str, limit: int | None, test_rows: int | None = TRUTHFULQA_TEST_ROWS) -> Split:
    """By question: a question's answers are all train or all test. `role` picks the label file;
    the "hedge" judge reads the informativeness labels (uninformative = hedge / abstain).
    limit / test_rows: rows sampled from each side (None: all)."""
    labelled = data.dedupe(data.truthfulqa("info" if role == "hedge" else role))
    if role == "hedge":
        flip = {"informative": "answer", "uninformative": "hedge"}
        labelled = data.Labelled(labelled.rows, [flip[y] for y in labelled.labels], labelled.groups)
    train, test = data.split_by_group(labelled, TRUTHFULQA_TEST_FRACTION)
    # one salt for all three roles: they share rows, so the backbone runs once for them
    train, test = data.sample(train, limit, "tqa"), data.sample(test, test_rows, "tqa")
    return Split(
        train, test, f"TruthfulQA split by question ({TRUTHFULQA_TEST_FRACTION:.0%} of questions held out)"
    )


BEGIN_TEST_ROWS = 250


def begin_split(limit: int) -> Split:
    """By file: train on BEGIN's dev files (cmu-dog, topicalchat, wow), test on wow's test file."""
    train = data.sample(data.begin(data.BEGIN_DEV), limit, "begin")
    test = data.sample(data.begin(data.BEGIN_TEST), BEGIN_TEST_ROWS, "begin")
    return Split(train, test, "BEGIN dev files (train) / begin_test_wow.tsv (test)")


def begin_judge_passages() -> dict[str, set[str]]:
    """{what: knowledge passages} the attribution judge trains on (every dev file: its training rows
    are a sample of them) or is validated on: policy training and evaluation leave them alone
    (align.data.grounding)."""
    return {
        "the attribution judge's training files (BEGIN dev)": {
            r["knowledge"] for r in data.begin(data.BEGIN_DEV).rows
        },
        "the attribution judge's validation rows": {r["knowledge"] for r in begin_split(0).test.rows},
    }


SPECS: dict[str, JudgeSpec] = {
    "truth": JudgeSpec("truth", ("question", "answer"), ("false", "true"), _qa, 64, 1000,
                       "truthfulqa/finetune_truth.jsonl", ("correct_answers", "incorrect_answers")),
    "info": JudgeSpec("info", ("question", "answer"), ("uninformative", "informative"), _qa, 64, 1000,
                      "truthfulqa/finetune_info.jsonl", ("correct_answers", "incorrect_answers")),
    "hedge": JudgeSpec("hedge", ("question", "answer"), ("answer", "hedge"), _qa, 64, 1000,
                       "finetune_info.jsonl (uninformative = hedge), xstest (full refusal = hedge)"),
    "refusal": JudgeSpec("refusal", ("prompt", "completion"),
                         ("full_compliance", "full_refusal", "partial_refusal"), _exchange, 64, 2250,
                         "xstest/completions/*.csv (final_label)"),
    "attribution": JudgeSpec("attribution", ("knowledge", "context", "response"),
                             ("not_attributable", "attributable"), _claim, 96, 300,
                             "attribution/begin/*.tsv (begin_label)"),
}  # fmt: skip
