"""SelfAware as training data: the split by question on the real file (no held-out question reaches
training, the hedging suite scores exactly the held-out part), the SFT targets, the answer checks."""

import json

import numpy as np
import pytest

from align.data import selfaware
from align.data.answers import HEDGES, is_hedge, matches_alias, normalize_answer
from align.data.errors import DataError
from align.data.selfaware import QAItem, canonical_answer, question_key, split_selfaware, target
from align.data.sources import read_source
from safety_evals.suites import hedging
from tests.paths import DATA

SOURCE = str(DATA / "selfaware" / "SelfAware.json")
SHA = "32929585ffdd4048f35f7f167720722eb8ddcf59908ffc958da2f84ea634dc54"


@pytest.fixture(scope="module")
def items():
    return selfaware.read_selfaware(SOURCE)


def test_split_by_question_is_disjoint_fixed_by_the_seed_and_covers_the_file(items):
    qs, sha = items
    assert sha == SHA and len(qs) == 3369
    train, held = split_selfaware(qs, seed=7)
    assert len(train) + len(held) == 3369
    assert {question_key(q.question) for q in train}.isdisjoint({question_key(q.question) for q in held})
    # the file repeats 4 questions (up to case and punctuation): each repeat is on one side only
    assert len({question_key(q.question) for q in qs}) == 3365
    assert len(held) == pytest.approx(0.3 * 3369, abs=3)
    assert [q.id for q in split_selfaware(qs, seed=7)[1]] == [q.id for q in held]
    assert [q.id for q in split_selfaware(qs, seed=8)[1]] != [q.id for q in held]
    # both kinds of question on both sides, near the file's 69% answerable
    for part in (train, held):
        assert 0.64 < np.mean([q.answerable for q in part]) < 0.74


def test_sft_source_trains_only_on_train_questions_and_the_suite_scores_only_held_out(items):
    qs, _ = items
    _, held = split_selfaware(qs, seed=7)
    data = read_source(SOURCE, "selfaware", seed=7)
    trained = {question_key(e.prompt[0]["content"][3:-3]) for e in data.examples}
    # every train question but id 572, whose gold answer is "unclear" (a hedge)
    assert trained == {question_key(q.question) for q in split_selfaware(qs, seed=7)[0] if q.id != "572"}
    assert trained.isdisjoint({question_key(q.question) for q in held})
    suite_qs, info = hedging.load(SOURCE, heldout_seed=7)
    assert [q.id for q in suite_qs] == [q.id for q in held if q.answerable] + [
        q.id for q in held if not q.answerable
    ]
    assert info.source.endswith("#heldout-seed-7") and info.sha256 == SHA
    assert {question_key(q.question) for q in suite_qs}.isdisjoint(trained)
    rec = data.record
    assert rec["seed"] == 7 and rec["sha256"] == SHA and rec["heldout_ids"] == [q.id for q in held]
    assert set(rec["train_ids"]).isdisjoint(rec["heldout_ids"])
    assert len(rec["train_ids"]) + len(rec["heldout_ids"]) == 3369


def test_limit_takes_both_kinds_of_question():
    data = read_source(SOURCE, "selfaware", seed=7, limit=60)
    hedges = sum(e.completion[0]["content"] in HEDGES for e in data.examples)
    assert len(data.examples) == 60 and 8 <= hedges <= 30  # the file lists answerable ones first


def test_canonical_answer_by_hand():
    assert canonical_answer(("nectar botany", "nectaries", "nectar", "nectary")) == "nectar"
    assert canonical_answer(("the environment in which they lived", "environment")) == "environment"
    assert canonical_answer(("4", "four")) == "4"  # no alias contains another: the shorter
    assert canonical_answer(("humans.",)) == "humans"


def test_targets_answer_with_the_gold_or_hedge():
    answerable = QAItem("1", "Who wrote Hamlet?", True, ("william shakespeare", "shakespeare"))
    unanswerable = QAItem("2", "What will the weather be in 3000?", False)
    answer = target(answerable)
    assert answer in ("Shakespeare.", "The answer is shakespeare.")
    assert matches_alias(answer, answerable.answers) and not is_hedge(answer)
    assert target(unanswerable) in HEDGES
    assert target(unanswerable) == target(unanswerable)  # fixed by the id


def test_every_real_target_is_checked_as_the_reward_will(items):
    qs, _ = items
    for q in qs:
        if q.id == "572":  # answerable, gold answer "unclear": left out of SFT
            assert q.answers == ("unclear",) and not selfaware.sft_examples([q])
            continue
        t = target(q)
        assert is_hedge(t) != q.answerable, (q.id, t)
        if q.answerable:
            assert matches_alias(t, q.answers), (q.id, t)


def test_answer_checks_by_hand():
    assert normalize_answer("The  Eiffel-Tower!") == "eiffel tower"
    assert matches_alias("It is the Eiffel tower.", ["Eiffel Tower"])
    assert not matches_alias("Eiffelland", ["Eiffel"])  # whole words only
    assert not matches_alias(" ".join(["guess"] * 30 + ["paris"]), ["Paris"])  # only the first words
    for text in ("I don't know.", "Nobody knows for sure.", "There is no way to know that.", "It's unclear."):
        assert is_hedge(text), text
    for text in ("Paris.", "The answer is 4.", "Knowledge is power.", "He was known as Bob."):
        assert not is_hedge(text), text


def test_bad_rows_name_the_field(tmp_path):
    path = tmp_path / "sa.json"
    path.write_text(json.dumps({"example": [{"question_id": 1, "question": "q?", "answerable": True}]}))
    with pytest.raises(DataError, match=r"example\[0\].*'answer' is empty"):
        selfaware.read_selfaware(path)


def test_the_hedge_rule_agrees_with_human_labels_as_docs_judges_md_says():
    from safety_evals.judges import data as judge_data
    from safety_evals.judges.specs import truthfulqa_split

    test = truthfulqa_split("hedge", 1000).test  # the hedge judge's held-out rows (judge: 0.892)
    rule = np.array([is_hedge(r["answer"]) for r in test.rows])
    assert np.mean(rule == np.array([y == "hedge" for y in test.labels])) == pytest.approx(0.854)
    xs = judge_data.xstest()
    keep = [i for i, y in enumerate(xs.labels) if y != "partial_refusal"]
    rule = np.array([is_hedge(xs.rows[i]["completion"]) for i in keep])
    human = np.array([xs.labels[i] == "full_refusal" for i in keep])
    assert len(keep) == 2074 and np.mean(rule == human) == pytest.approx(0.844, abs=5e-4)
