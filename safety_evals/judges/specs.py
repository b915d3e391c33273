"""What each shipped judge reads, predicts and is trained / validated on: one explicit table.

`SPECS[role]` fixes the row fields, the label order, how a row becomes the backbone's text, the
feature recipe and the human-labelled data with its held-out split. Building a judge
(`safety_evals.judges.build`) and loading one (`load_judge`) both read this table only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from safety_evals.judges import data
from safety_evals.judges.features import LEXICAL, REFERENCES, Recipe
from safety_evals.judges.phrases import abstention_precedence, string_match_precedence

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
    layers: tuple[int, ...] = (9, 18)
    version: int = 1  # bump when what the judge reads (render, layers, training rows) changes
    # a fixed rule applied to the head's probabilities: (rows, [n, K]) -> [n, K] (refusal: the
    # XSTest string match's verdict takes precedence over "full_compliance")
    rule: Callable[[Sequence[Row], np.ndarray], np.ndarray] | None = None
    # L2 strengths the build chooses from by grouped CV (one value: fixed, no CV)
    l2_grid: tuple[float, ...] = (1e-2, 1e-1, 1.0)
    ngram_words: int = 0  # > 0: the rendered text's hashed word n-grams join the backbone's features

    def decide(self, rows: Sequence[Row], proba: np.ndarray) -> np.ndarray:
        return proba if self.rule is None else self.rule(rows, proba)

    def recipe(self, backbone: str) -> Recipe:
        ngrams = 0 if backbone in (LEXICAL, REFERENCES) else self.ngram_words  # those have no backbone
        return Recipe(backbone=backbone, layers=self.layers, max_tokens=self.max_tokens, ngram_words=ngrams)

    def fields_for(self, backbone: str) -> tuple[str, ...]:
        return self.fields + (self.reference_fields if backbone == REFERENCES else ())


def _qa(row: Row) -> str:
    return f"Q: {row['question']}\nA: {row['answer']}"


def _completion(row: Row) -> str:
    # the completion alone: a refusal is a property of the reply, and a judge that also read the
    # prompt called "Sure, here it is." a refusal after 40% of unsafe prompts (docs/judges.md)
    return row["completion"]


def _answer(row: Row) -> str:
    # the answer alone: whether it commits is a property of the answer, not of the question
    return row["answer"]


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


def hedge_split(limit: int | None) -> Split:
    """TruthfulQA by question, as `truthfulqa_split`, with hedge = a human-labelled uninformative
    answer that abstains (align.data.answers.is_hedge: "I have no comment", "I don't know", "I'm
    not sure ...") and answer = a human-labelled informative one. Uninformative answers that do not
    abstain (a bare "yes", a tautology, the question echoed) are neither a hedge nor a committed
    answer and are left out of training. Every abstention of the training questions is kept (there
    are few); informative rows are sampled up to `limit` rows in all. The test side is the same 500
    held-out rows as `truthfulqa_split("hedge", ...)`, every label kept (uninformative = hedge)."""
    from align.data.answers import is_hedge

    whole = truthfulqa_split("hedge", None, TRUTHFULQA_TEST_ROWS)
    train = whole.train
    hedges = [
        i for i, (r, y) in enumerate(zip(train.rows, train.labels)) if y == "hedge" and is_hedge(r["answer"])
    ]
    answers = data.sample(train.take([i for i, y in enumerate(train.labels) if y == "answer"]),
                          None if limit is None else max(limit - len(hedges), 0), "tqa")  # fmt: skip
    picked = train.take(hedges)
    return Split(
        data.Labelled(
            picked.rows + answers.rows, picked.labels + answers.labels, picked.groups + answers.groups
        ),
        whole.test,
        whole.description + "; training hedges = uninformative answers that abstain (is_hedge)",
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


# a third, two thirds and all of gemma3-270m's 18 layers: for the refusal head as good as every
# second layer (leave-one-model-out 0.888 vs 0.886) at a third of the features
REPLY_LAYERS = (6, 12, 18)
# refusal v3: the reply's word uni- and bigrams (first 256 words: the whole of 99% of XSTest's
# completions) beside the backbone's first 64 tokens. Leave-one-model-out 0.882 -> 0.895 with l2 and
# the offset chosen inside each fold (paired +0.013 [0.008, 0.019]), mostly on the long refusals of
# mistralguard (0.831 -> 0.873); the backbone pass is unchanged (docs/judges.md)
REPLY_NGRAM_WORDS = 256

SPECS: dict[str, JudgeSpec] = {
    "truth": JudgeSpec("truth", ("question", "answer"), ("false", "true"), _qa, 64, 1000,
                       "truthfulqa/finetune_truth.jsonl", ("correct_answers", "incorrect_answers")),
    "info": JudgeSpec("info", ("question", "answer"), ("uninformative", "informative"), _qa, 64, 1000,
                      "truthfulqa/finetune_info.jsonl", ("correct_answers", "incorrect_answers")),
    "hedge": JudgeSpec("hedge", ("question", "answer"), ("answer", "hedge"), _answer, 64, 1500,
                       "finetune_info.jsonl (uninformative answers that abstain = hedge, informative = "
                       "answer), xstest (full refusal = hedge, full compliance = answer)",
                       layers=REPLY_LAYERS, version=2, rule=abstention_precedence),
    "refusal": JudgeSpec("refusal", ("prompt", "completion"),
                         ("full_compliance", "full_refusal", "partial_refusal"), _completion, 64, 2250,
                         "xstest/completions/*.csv (final_label)", layers=REPLY_LAYERS, version=3,
                         rule=string_match_precedence, l2_grid=(0.5,), ngram_words=REPLY_NGRAM_WORDS),
    "attribution": JudgeSpec("attribution", ("knowledge", "context", "response"),
                             ("not_attributable", "attributable"), _claim, 96, 300,
                             "attribution/begin/*.tsv (begin_label)"),
}  # fmt: skip
