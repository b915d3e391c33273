"""BEGIN (Dziri et al. 2022) as training data for attribution: passage + message -> a response that
human raters labelled fully attributable to the passage.

Which BEGIN rows go where (one place says it; `check_disjoint` raises when it does not hold):

    judge training     every BEGIN dev file (cmu-dog, topicalchat, wow): safety_evals.judges.specs
    judge validation   a sample of begin_test_wow.tsv (safety_evals.judges.specs.begin_split)
    policy training    begin_test_wow.tsv, passages split to "train" by `split_begin`
    policy evaluation  begin_test_wow.tsv, passages split to "heldout" (the attribution suite's
                       `split: heldout`)

Rows are grouped by knowledge passage, not by (passage, message): 1489 passages carry the file's
3170 dialogue turns, and a policy that trained on a passage would be tested on its own reading of
it. Passages the judge trained or was validated on (`reserved`) are dropped from both policy sides:
120 of this file's dialogue turns also occur in the dev files.
"""

from __future__ import annotations

import csv
import dataclasses
from collections.abc import Iterable, Mapping
from pathlib import Path

from align.data.errors import DataError
from align.data.files import csv_rows
from align.data.formats import CompletionExample
from align.data.similarity import is_copy
from align.data.splits import SplitOptions, heldout_split
from align.errors import InvalidInput

POLICY_FILE = "wow/begin_test_wow.tsv"  # the one BEGIN file the policy may train on (module doc)
HELDOUT_FRACTION = 0.5  # of the passages left after the judge's: half train the policy, half evaluate it
FIELDS = ("knowledge", "message", "response", "begin_label")
ATTRIBUTABLE = "Fully attributable"
LABELS = (ATTRIBUTABLE, "Not fully attributable", "Generic")
GROUNDED_PROMPT = (
    "Answer the message using only information from the passage.\n\n"
    "Passage: {passage}\n\nMessage: {message}\n\nAnswer:"
)


@dataclasses.dataclass(frozen=True)
class BeginRow:
    id: str  # "<file stem>-<row index>", as the attribution suite names its examples
    knowledge: str
    message: str
    response: str
    label: str  # one of LABELS


def read_begin(path: str | Path) -> list[BeginRow]:
    """One BEGIN TSV (tab-separated, header row, never quoted)."""
    path = Path(path)
    rows = []
    for i, row in enumerate(csv_rows(path, delimiter="\t", quoting=csv.QUOTE_NONE)):
        if isinstance(row.value, DataError):
            raise row.value.located(row.source, row.number, row.row_kind)
        missing = [f for f in FIELDS if f not in row.value]
        if missing or row.value["begin_label"] not in LABELS:
            what = f"missing field {missing[0]!r}" if missing else f"begin_label {row.value['begin_label']!r}"
            raise DataError(what, source=str(path), row=row.number, row_kind="line")
        v = row.value
        rows.append(
            BeginRow(f"{path.stem}-{i}", v["knowledge"], v["message"], v["response"], v["begin_label"])
        )
    return rows


def passage_key(knowledge: str) -> str:
    """What the split groups by: the passage, whitespace collapsed."""
    return " ".join(knowledge.split())


def split_begin(rows: list, seed: int, reserved: Iterable[str] = ()) -> tuple[list, list]:
    """(train, held-out) of the file's rows (BeginRow, or anything with a `.knowledge`) by passage:
    passages in `reserved` (the judge's) are on neither side; the others are permuted by `seed` and
    the first HELDOUT_FRACTION held out."""
    reserved = {passage_key(k) for k in reserved}
    keys = sorted({passage_key(r.knowledge) for r in rows} - reserved)
    train_keys, _ = heldout_split(keys, SplitOptions(heldout_fraction=HELDOUT_FRACTION, seed=seed))
    train_keys = set(train_keys)
    usable = [r for r in rows if passage_key(r.knowledge) not in reserved]
    return [r for r in usable if passage_key(r.knowledge) in train_keys], [
        r for r in usable if passage_key(r.knowledge) not in train_keys
    ]


def check_disjoint(train: Iterable[BeginRow], others: Mapping[str, Iterable[str]]) -> None:
    """Raise InvalidInput when a policy-training passage is also in one of `others` ({what: passages})."""
    mine = {passage_key(r.knowledge) for r in train}
    for what, passages in others.items():
        shared = mine & {passage_key(k) for k in passages}
        if shared:
            raise InvalidInput(
                f"BEGIN: {len(shared)} passage(s) of the policy's training rows are also in {what}, "
                f"e.g. {sorted(shared)[0][:80]!r}; training and evaluation rows must be disjoint"
            )


def sft_examples(rows: Iterable[BeginRow]) -> list[CompletionExample]:
    """The fully attributable rows as (user turn: GROUNDED_PROMPT, assistant: the rated response),
    except copies of the passage: the attribution suite counts a copy as not attributable, and raters
    call 19% of the responses they rate fully attributable such copies."""
    return [
        CompletionExample(
            [{"role": "user", "content": GROUNDED_PROMPT.format(passage=r.knowledge, message=r.message)}],
            [{"role": "assistant", "content": r.response.strip()}],
            f"BEGIN {r.id}",
        )
        for r in rows
        if r.label == ATTRIBUTABLE and r.response.strip() and not is_copy(r.response, r.knowledge)
    ]
