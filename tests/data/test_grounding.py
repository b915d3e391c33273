"""BEGIN as training data: on the real files the policy's rows share no passage with the attribution
judge's training or validation rows nor with the rows the attribution suite scores; targets by hand."""

import pytest

from align.data import grounding
from align.data.grounding import BeginRow, check_disjoint, passage_key, split_begin
from align.data.sources import read_source
from align.errors import InvalidInput
from safety_evals.judges import data as judge_data
from safety_evals.judges.specs import SPECS, begin_judge_passages, begin_split
from safety_evals.suites import attribution
from tests.paths import DATA

SOURCE = str(DATA / "attribution" / "begin")


def keys(texts):
    return {passage_key(t) for t in texts}


@pytest.fixture(scope="module")
def real():
    rows = grounding.read_begin(DATA / "attribution" / "begin" / grounding.POLICY_FILE)
    judged = begin_judge_passages()
    train, held = split_begin(rows, 7, {k for p in judged.values() for k in p})
    return rows, judged, train, held


def test_policy_rows_never_meet_the_judges_or_the_evaluated_rows(real):
    rows, judged, train, held = real
    assert len(rows) == 3607
    trained = keys(r.knowledge for r in train)
    # the judge's rows, taken from the judge's own split (not from begin_judge_passages)
    judge = begin_split(SPECS["attribution"].default_limit)
    assert trained.isdisjoint(keys(r["knowledge"] for r in judge.train.rows))
    assert trained.isdisjoint(keys(r["knowledge"] for r in judge.test.rows))
    assert trained.isdisjoint(keys(r["knowledge"] for r in judge_data.begin(judge_data.BEGIN_DEV).rows))
    assert trained.isdisjoint(keys(r.knowledge for r in held))
    items, info = attribution.load(SOURCE, heldout_seed=7)
    assert keys(it.knowledge for it in items) <= keys(r.knowledge for r in held)
    assert len({(it.knowledge, it.message) for it in items}) == len(items) == info.n  # one per turn
    assert info.source.endswith("begin_test_wow.tsv#heldout-seed-7")
    # 120 turns of this file are also in the dev files: their passages are on neither side
    assert len(train) > 800 and len(items) > 800


def test_sft_source_uses_train_rows_only_and_records_the_split(real):
    _, judged, train, held = real
    data = read_source(SOURCE, "begin", seed=7, judge_passages=judged)
    train_ids = {r.id for r in train}
    assert {e.origin.removeprefix("BEGIN ") for e in data.examples} <= train_ids
    assert data.record["train_ids"] == [r.id for r in train]
    assert data.record["heldout_ids"] == [r.id for r in held]
    assert data.report["attributable_targets"] == len(data.examples) > 200


def test_check_disjoint_raises_on_a_shared_passage():
    row = BeginRow("t-0", "The sky  is blue.", "hi", "It is blue.", grounding.ATTRIBUTABLE)
    check_disjoint([row], {"the judge": ["The grass is green."]})
    with pytest.raises(InvalidInput, match="1 passage.*also in the judge"):
        check_disjoint([row], {"the judge": ["The sky is blue."]})


def test_split_keeps_reserved_passages_on_neither_side():
    rows = [BeginRow(f"t-{i}", f"passage {i % 6}", "m", "r", grounding.ATTRIBUTABLE) for i in range(24)]
    train, held = split_begin(rows, 0, reserved=["passage 0"])
    assert len(train) + len(held) == 20
    assert "passage 0" not in keys(r.knowledge for r in train + held)
    assert keys(r.knowledge for r in train).isdisjoint(keys(r.knowledge for r in held))


def test_targets_are_attributable_non_copies():
    passage = "animal trapping is the use of a device to remotely catch an animal"
    rows = [
        BeginRow(
            "a", passage, "do you trap?", "Trapping uses a device to catch animals.", grounding.ATTRIBUTABLE
        ),
        BeginRow("b", passage, "do you trap?", passage + ".", grounding.ATTRIBUTABLE),  # a copy
        BeginRow("c", passage, "do you trap?", "I love cats.", "Not fully attributable"),
        BeginRow("d", passage, "do you trap?", "  ", grounding.ATTRIBUTABLE),
    ]
    (ex,) = grounding.sft_examples(rows)
    assert ex.completion == [{"role": "assistant", "content": "Trapping uses a device to catch animals."}]
    assert ex.prompt[0]["content"] == attribution.GROUNDED_PROMPT.format(
        passage=passage, message="do you trap?"
    )
    assert ex.origin == "BEGIN a"
