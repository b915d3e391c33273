"""BBQ and TruthfulQA MC1/MC2: our requests and metric code against lm-evaluation-harness's own.

The reference is lm-eval's task objects, built from the YAML in the installed package with only
the dataset swapped for the local files (scripts/lm_eval_tasks.py): its doc_to_text and
doc_to_choice must give our requests exactly, and its process_results + aggregation, fed the SAME
log-likelihoods as our metric code, must give our numbers to 1e-12, on realistic random
log-likelihoods and on edge cases (ties, UNKNOWN winning, a condition with no examples).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("lm_eval")

from safety_evals.suites import bbq, truthfulqa_mc as tq  # noqa: E402
from tests.scripts import load_script  # noqa: E402

L = load_script("scripts/lm_eval_tasks.py")

CATEGORIES = (
    "Age",
    "Disability_status",
    "Nationality",
    "Physical_appearance",
    "Religion",
    "Sexual_orientation",
)


def same(ours: float | None, theirs: float) -> bool:
    """Equal to 1e-12, or both undefined (our None, lm-eval's NaN)."""
    if ours is None or theirs is None or math.isnan(theirs):
        return ours is None and (theirs is None or math.isnan(theirs))
    return abs(ours - theirs) <= 1e-12


# ----------------------------------------------------------------------------- BBQ


@pytest.fixture(scope="module")
def bbq_pair(tmp_path_factory):
    """(our items, lm-eval's task, lm-eval's processed docs) over all six category files."""
    items, _ = bbq.load()
    files = sorted(Path(bbq.DEFAULT_SOURCE).glob("*.jsonl"))
    task = L.bbq_task(files, tmp_path_factory.mktemp("hf"))
    return items, task, L.docs(task)


def test_bbq_same_documents_requests_and_biased_answers(bbq_pair):
    items, task, docs = bbq_pair
    assert len(items) == len(docs) == 11956
    assert {it.category for it in items} == set(CATEGORIES)
    for it, doc in zip(items, docs):
        assert it.id == f"{doc['category']}-{doc['example_id']}"
        assert L.requests(task, doc) == [(bbq.prompt(it), " " + c) for c in bbq.choices(it)]
        assert sorted(doc["biased_answers"]) == sorted(it.answers[i] for i in it.biased)


def _bbq_lls(items, case: str, rng) -> np.ndarray:
    """[N, 12] log-likelihoods over lm-eval's choices for one scenario."""
    n = len(items)
    ll = rng.normal(-9.0, 3.0, size=(n, 12))  # a few tokens at a few nats each
    if case == "ties":  # integer lls in a narrow range: most documents have a tie for the max
        ll = rng.integers(-3, 0, size=(n, 12)).astype(np.float64)
    elif case == "constant":  # every choice equally likely: argmax takes the first named answer
        ll = np.full((n, 12), -5.0)
    elif case == "unknown_wins":  # UNKNOWN phrasings usually best: few biased, many non-UNKNOWN = 0
        ll[:, 2:] += 6.0
    elif case == "three_answers":  # only the data's own UNKNOWN phrasing competes: the paper's set
        for row, it in zip(ll, items):
            own = bbq.choices(it).index(it.answers[it.unknown])
            row[[c for c in range(2, 12) if c != own]] = -1e9
    return ll


def _lm_eval_bbq(task, docs, ll) -> dict[str, float]:
    return L.aggregate(task, (L.process(task, d, row) for d, row in zip(docs, ll)))


def _check_bbq(ours: dict, theirs: dict, prefix: str, categories) -> None:
    pairs = {
        "acc": "accuracy",
        "accuracy_amb": "accuracy_ambig",
        "accuracy_disamb": "accuracy_disambig",
        "amb_bias_score": "bias_score_ambig",
        "disamb_bias_score": "bias_score_disambig",
    }
    for c in CATEGORIES:
        pairs[f"amb_bias_score_{c}"] = f"bias_score_ambig/{c}"
        pairs[f"disamb_bias_score_{c}"] = f"bias_score_disambig/{c}"
    for name, mine in pairs.items():
        m = ours.get(prefix + mine)
        if m is None:  # a category absent from the sample: lm-eval reports NaN
            assert mine.split("/")[-1] not in categories and math.isnan(theirs[name]), name
            continue
        assert same(m.value, theirs[name]), (name, m.value, theirs[name])


@pytest.mark.parametrize("case", ["random", "ties", "constant", "unknown_wins", "three_answers"])
def test_bbq_metrics_equal_lm_eval(bbq_pair, case):
    items, task, docs = bbq_pair
    rng = np.random.default_rng(["random", "ties", "constant", "unknown_wins", "three_answers"].index(case))
    sel = np.arange(len(items)) if case == "random" else rng.choice(len(items), 1500, replace=False)
    items = [items[i] for i in sel]
    docs = [docs[i] for i in sel]
    ll = _bbq_lls(items, case, rng)
    theirs = _lm_eval_bbq(task, docs, ll)
    paper, lm_eval = bbq.predictions(items, ll)
    _check_bbq(bbq.metrics(items, lm_eval, prefix="lm_eval_"), theirs, "lm_eval_", CATEGORIES)
    if case == "three_answers":  # lm-eval's formulas on the paper's choice set give the paper metrics
        assert (paper == lm_eval).all()
        _check_bbq(bbq.metrics(items, paper), theirs, "", CATEGORIES)
    if case == "constant":
        assert (lm_eval == [next(i for i in range(3) if i != it.unknown) for it in items]).all()
    if case == "unknown_wins":
        assert (lm_eval == [it.unknown for it in items]).mean() > 0.9


def test_bbq_empty_conditions_are_undefined_in_both(bbq_pair):
    """Religion ambiguous only, Age disambiguated only, no other category: ours None, lm-eval NaN."""
    items, task, docs = bbq_pair
    keep = [
        i
        for i, it in enumerate(items)
        if (it.category == "Religion" and it.ambiguous) or (it.category == "Age" and not it.ambiguous)
    ]
    items, docs = [items[i] for i in keep], [docs[i] for i in keep]
    ll = _bbq_lls(items, "random", np.random.default_rng(7))
    theirs = _lm_eval_bbq(task, docs, ll)
    ours = bbq.metrics(items, bbq.predictions(items, ll)[1], prefix="lm_eval_")
    assert ours["lm_eval_bias_score_disambig/Religion"].value is None
    assert ours["lm_eval_bias_score_ambig/Age"].value is None
    _check_bbq(ours, theirs, "lm_eval_", {"Religion", "Age"})


# ----------------------------------------------------------------------------- TruthfulQA MC


@pytest.fixture(scope="module")
def tqa_pair(tmp_path_factory):
    questions, _ = tq.load()
    tasks = L.truthfulqa_tasks(questions, tmp_path_factory.mktemp("hf"))
    return questions, tasks, {k: L.docs(t) for k, t in tasks.items()}


def test_truthfulqa_same_questions_prompt_and_choices(tqa_pair):
    questions, tasks, docs = tqa_pair
    assert len(questions) == len(docs["mc1"]) == len(docs["mc2"]) == 817
    for q, d1, d2 in zip(questions, docs["mc1"], docs["mc2"]):
        p = tq.prompt(q.question)
        assert L.requests(tasks["mc1"], d1) == [(p, " " + a) for a in q.mc1]
        assert L.requests(tasks["mc2"], d2) == [(p, " " + a) for a in q.mc2]
        assert tasks["mc1"].doc_to_target(d1) == q.mc1_labels.index(1) == 0


def _tqa_lls(questions, case: str, rng) -> list[dict[str, float]]:
    out = []
    for q in questions:
        if case == "random":  # about two nats per word of the answer, plus noise
            ll = {a: -2.0 * len(a.split()) + rng.normal(0.0, 2.0) for a in q.answers}
        elif case == "ties":
            ll = {a: float(rng.integers(-2, 0)) for a in q.answers}
        else:  # "constant": every answer equally likely, mc1 takes the first (true) one as lm-eval
            ll = {a: -7.0 for a in q.answers}
        out.append(ll)
    return out


@pytest.mark.parametrize("case", ["random", "ties", "constant"])
def test_truthfulqa_mc1_mc2_equal_lm_eval(tqa_pair, case):
    questions, tasks, docs = tqa_pair
    lls = _tqa_lls(questions, case, np.random.default_rng(0))
    s1, s2 = tq.scores(questions, lls)
    per = {
        k: [
            L.process(tasks[k], d, [ll[a] for a in getattr(q, k)])
            for q, d, ll in zip(questions, docs[k], lls)
        ]
        for k in ("mc1", "mc2")
    }
    np.testing.assert_allclose(s1, [p["acc"] for p in per["mc1"]], rtol=0, atol=1e-12)
    np.testing.assert_allclose(s2, [p["acc"] for p in per["mc2"]], rtol=0, atol=1e-12)
    m = tq.metrics(s1, s2)
    assert same(m["mc1"].value, L.aggregate(tasks["mc1"], per["mc1"])["acc"])
    assert same(m["mc2"].value, L.aggregate(tasks["mc2"], per["mc2"])["acc"])
    if case == "constant":
        assert m["mc1"].value == 1.0  # lm-eval's argmax tie rule: a flat model "passes" MC1
        expected = np.mean([sum(q.mc2_labels) / len(q.mc2) for q in questions])
        assert m["mc2"].value == pytest.approx(expected, abs=1e-12)


def test_truthfulqa_mc2_where_lm_eval_underflows():
    """Every ll below -745: lm-eval's exp underflows to 0/0 (NaN); ours is shift-invariant."""
    from lm_eval.tasks.truthfulqa.utils import process_results_mc2

    lls, labels = [-900.0, -901.0, -899.5], [1, 0, 0]
    with np.errstate(invalid="ignore"):
        theirs = process_results_mc2({"mc2_targets": {"labels": labels}}, [(x, False) for x in lls])["acc"]
    assert math.isnan(theirs)
    assert tq.mc2(lls, labels) == pytest.approx(tq.mc2([x + 900.0 for x in lls], labels), abs=1e-15)
    assert tq.mc2([x + 900.0 for x in lls], labels) == pytest.approx(
        process_results_mc2({"mc2_targets": {"labels": labels}}, [(x + 900.0, False) for x in lls])["acc"],
        abs=1e-12,
    )
