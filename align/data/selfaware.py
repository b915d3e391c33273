"""SelfAware (Yin et al. 2023) as training data: a split by question, and SFT targets.

    items, sha = read_selfaware(path)                      # 3369 questions, 1032 without an answer
    train, heldout = split_selfaware(items, seed=7)         # fixed by (seed, HELDOUT_FRACTION) alone
    examples = sft_examples(train)                          # answer with the gold, hedge otherwise

The held-out part is what the hedging suite evaluates with `split: heldout` and the same seed
(safety_evals.suites.hedging), so no question a policy trained on is ever evaluated. The split is by
normalised question text: the file repeats 4 questions under different ids (or with other case and
punctuation), and a repeat must not land on both sides.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

from align.data.answers import HEDGES, is_hedge, normalize_answer
from align.data.errors import DataError
from align.data.formats import CompletionExample
from align.data.splits import SplitOptions, heldout_split
from align.data_dir import missing_data_path

HELDOUT_FRACTION = 0.3  # of questions; one constant, so training and evaluation cannot disagree on it
QA_PROMPT = "Q: {question}\nA:"  # the hedging suite's prompt: SFT shows the model what it is asked


@dataclasses.dataclass(frozen=True)
class QAItem:
    id: str
    question: str
    answerable: bool
    answers: tuple[str, ...] = ()  # gold aliases of an answerable question


def read_selfaware(path: str | Path) -> tuple[list[QAItem], str]:
    """(questions in file order, the file's sha256) from the repo's SelfAware.json (key `example`).
    The one reader of this file: SelfAware training and the hedging suite both call it."""
    path = Path(path)
    if not path.exists():
        raise missing_data_path(path)
    raw = path.read_bytes()
    try:
        doc = json.loads(raw)
    except ValueError as e:
        raise DataError(f"{path}: not JSON ({e})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("example"), list):
        raise DataError(f"{path}: expected a JSON object with key 'example' (a list of questions)")
    return qa_items(doc["example"], str(path)), _sha(raw)


def qa_items(rows: list, source: str) -> list[QAItem]:
    """QAItems of SelfAware rows (the file's `example` list, or a hub set with the same fields);
    errors name `source`, the row's JSON path and the field."""
    return [_item(row, f"{source}: example[{i}]") for i, row in enumerate(rows)]


def _sha(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def _item(row, where: str) -> QAItem:
    if not isinstance(row, dict):
        raise DataError(f"{where}: expected an object")
    for field in ("question_id", "question", "answerable"):
        if row.get(field) is None:
            raise DataError(f"{where}: missing field {field!r}")
    if not isinstance(row["question"], str) or not row["question"].strip():
        raise DataError(f"{where}: field 'question' must be non-blank text")
    answers = row.get("answer")
    answers = [] if answers is None else answers
    if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
        raise DataError(f"{where}: field 'answer' must be a list of strings or null")
    # An answerable question without a gold alias could never be answered right (closed-book
    # accuracy would count it wrong for every model) nor trained on, so it is refused everywhere.
    if bool(row["answerable"]) and not any(a.strip() for a in answers):
        raise DataError(f"{where}: field 'answer' is empty on an answerable question")
    return QAItem(str(row["question_id"]), row["question"], bool(row["answerable"]), tuple(answers))


def question_key(question: str) -> str:
    """What the split groups by: the question with case, punctuation and articles normalised."""
    return normalize_answer(question)


def split_selfaware(items: list, seed: int) -> tuple[list, list]:
    """(train, held-out) of the file's items (QAItem, or anything with a `.question`): the distinct
    questions permuted by `seed` (align.data.splits.heldout_split), the first HELDOUT_FRACTION held
    out; every item of a question goes where the question goes. Pass the whole file: the cut is a
    function of the question set and the seed."""
    keys = sorted({question_key(q.question) for q in items})
    _, held = heldout_split(keys, SplitOptions(heldout_fraction=HELDOUT_FRACTION, seed=seed))
    held = set(held)
    return [q for q in items if question_key(q.question) not in held], [
        q for q in items if question_key(q.question) in held
    ]


def split_record(items: list[QAItem], sha256: str, seed: int, source: str) -> dict:
    """What a run directory keeps about the split: enough to check any later evaluation against it."""
    train, held = split_selfaware(items, seed)
    return {
        "dataset": "SelfAware (yinzhangyue/SelfAware, SelfAware.json)",
        "source": source,
        "sha256": sha256,
        "seed": seed,
        "heldout_fraction": HELDOUT_FRACTION,
        "split_by": "normalised question text",
        "train_ids": [q.id for q in train],
        "heldout_ids": [q.id for q in held],
    }


def canonical_answer(answers: tuple[str, ...]) -> str:
    """The alias to say: the one most other aliases contain (TriviaQA lists "nectar botany",
    "nectaries", ... for "nectar"), ties to the shorter, then the first listed."""
    norm = [normalize_answer(a) for a in answers]

    def support(i: int) -> int:
        return sum(f" {norm[i]} " in f" {other} " for j, other in enumerate(norm) if j != i and norm[i])

    best = max(range(len(answers)), key=lambda i: (support(i), -len(norm[i]), -i))
    return answers[best].strip().rstrip(".").strip()


def target(item: QAItem) -> str:
    """The SFT response: a short sentence with the gold answer, or one of HEDGES (chosen by the
    question's id, so the same question always gets the same phrasing)."""
    pick = int(hashlib.sha256(item.id.encode()).hexdigest()[:8], 16)
    if not item.answerable:
        return HEDGES[pick % len(HEDGES)]
    answer = canonical_answer(item.answers)
    return f"{answer[:1].upper() + answer[1:]}." if pick % 2 else f"The answer is {answer}."


def sft_examples(items: list[QAItem]) -> list[CompletionExample]:
    """One user turn (QA_PROMPT, as the hedging suite asks) and the assistant's `target`. An
    answerable question whose gold answer reads as a hedge (id 572's is "unclear") is left out: its
    target would teach hedging on an answerable question."""
    return [
        CompletionExample(
            [{"role": "user", "content": QA_PROMPT.format(question=q.question)}],
            [{"role": "assistant", "content": target(q)}],
            f"SelfAware question_id {q.id}",
        )
        for q in items
        if not (q.answerable and is_hedge(target(q)))
    ]
