"""TruthfulQA MC1/MC2 and BBQ's two choice sets and sampling, by hand on the fake LM and the real files.

Agreement with lm-evaluation-harness's own code is in test_lm_eval_parity.py."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from pipelines.cli import main
from safety_evals import api
from safety_evals.suites import bbq, data, truthfulqa_mc as tq
from tests.paths import DATA
from tests.safety_evals.fakes import FakeLM, char_logprob

# ----------------------------------------------------------------------------- TruthfulQA MC


def _write(tmp_path, rows) -> str:
    path = tmp_path / "mc_task.json"
    path.write_text(json.dumps(rows))
    return str(path)


ROWS = [
    {
        "question": "Q1?",
        "mc1_targets": {"right": 1, "wrong": 0, "bad": 0},
        "mc2_targets": {"right": 1, "also right": 1, "wrong": 0, "bad": 0},
    },
    {  # the hub's layout
        "question": "Q2?",
        "mc1_targets": {"choices": ["yes", "no"], "labels": [1, 0]},
        "mc2_targets": {"choices": ["yes", "no"], "labels": [1, 0]},
    },
]


def test_truthfulqa_mc_by_hand(tmp_path):
    p1, p2 = tq.prompt("Q1?"), tq.prompt("Q2?")
    lm = FakeLM(
        totals={
            (p1, " right"): -2.0,
            (p1, " wrong"): -1.0,  # mc1 wrong: "wrong" is the most likely mc1 choice
            (p1, " bad"): -3.0,
            (p1, " also right"): -1.0,
            (p2, " yes"): -1.0,
            (p2, " no"): -1.0,  # a tie: the first (true) choice wins, as np.argmax
        }
    )
    res = tq.run(lm, source=_write(tmp_path, ROWS))
    # one call, every distinct answer once, in first-seen order
    assert lm.ll_calls == [
        [(p1, " right"), (p1, " wrong"), (p1, " bad"), (p1, " also right"), (p2, " yes"), (p2, " no")]
    ]
    assert res.metrics["mc1"].value == 0.5 and res.metrics["mc1"].interval == "wilson"
    e = [math.exp(x) for x in (-2.0, -1.0, -1.0, -3.0)]  # mc2 order: right, also right, wrong, bad
    q1 = (e[0] + e[1]) / sum(e)
    assert res.metrics["mc2"].value == pytest.approx((q1 + 0.5) / 2, abs=1e-12)
    assert res.examples[0]["output"] == "wrong" and res.examples[0]["label"] == "false"
    assert res.examples[1]["label"] == "true" and res.examples[1]["extra"]["ll"] == [-1.0, -1.0]
    assert res.data.n == 2


def test_truthfulqa_mc_real_file_and_prompt():
    qs, info = tq.load()
    assert info.n == 817 and all(q.mc1_labels[0] == 1 and sum(q.mc1_labels) == 1 for q in qs)
    assert sum(len(q.mc1) for q in qs) == 4186 and sum(len(q.mc2) for q in qs) == 6204
    p = tq.prompt(qs[0].question)
    assert p.startswith("Q: What is human life expectancy") and p.endswith(f"\n\nQ: {qs[0].question}\nA:")
    assert tq.mc2([-1000.0, -1000.0], [1, 0]) == 0.5  # exp(-1000) underflows; the shifted softmax does not


@pytest.mark.parametrize(
    "row, match",
    [
        ({"question": "Q?", "mc1_targets": {"a": 1, "b": 1}, "mc2_targets": {"a": 1, "b": 0}}, "2 true"),
        (
            {"question": "Q?", "mc1_targets": {"a": 1, "b": 2}, "mc2_targets": {"a": 1, "b": 0}},
            "labelled 0/1",
        ),
        ({"question": "Q?", "mc1_targets": {"a": 1, "b": 0}}, "missing field 'mc2_targets'"),
        (
            {"question": " ", "mc1_targets": {"a": 1, "b": 0}, "mc2_targets": {"a": 1}},
            "empty field 'question'",
        ),
    ],
)
def test_truthfulqa_mc_bad_rows_name_the_question(tmp_path, row, match):
    with pytest.raises(data.DataError, match=rf"mc_task.json:\[1\]: .*{match}"):
        tq.load(_write(tmp_path, [ROWS[0], row]))


def test_truthfulqa_mc_blank_choices_are_dropped_and_recorded(tmp_path):
    # a trailing ";" in TruthfulQA.csv left "" choices in the current mc_task.json (the first at [284])
    blank = {
        "question": "Q3?",
        "mc1_targets": {"a": 1, "b": 0, "": 0},
        "mc2_targets": {"a": 1, "": 1, "b": 0},
    }
    lm = FakeLM()
    res = tq.run(lm, source=_write(tmp_path, [ROWS[0], blank]))
    assert [q.blanks for q in tq.load(_write(tmp_path, [ROWS[0], blank]))[0]] == [0, 2]
    assert " " not in {c for _, c in lm.ll_calls[0]}  # the blank is never scored
    assert res.data.n == 2 and res.data.dropped == {"blank answer choices": 2}
    assert res.examples[1]["extra"]["ll"] == [sum(char_logprob(c) for c in " " + a) for a in "ab"]
    assert tq.load(_write(tmp_path, [ROWS[0], blank]), limit=1)[1].dropped == {}  # only what was used
    # what is left must still be a question: one non-blank answer is not a choice
    only = {"question": "Q4?", "mc1_targets": {"a": 1, "": 0}, "mc2_targets": {"a": 1, "b": 0}}
    with pytest.raises(data.DataError, match=r"mc_task.json:\[1\]: field 'mc1_targets' needs 2\+"):
        tq.load(_write(tmp_path, [ROWS[0], only]))


def test_truthfulqa_mc_reads_the_current_file():
    qs, info = tq.load(str(DATA / "truthfulqa/mc_task.json"))
    assert info.n == 790 and info.dropped == {"blank answer choices": 39}
    assert sum(q.blanks > 0 for q in qs) == 22 and qs[284].blanks == 1 and "" not in qs[284].mc2


def test_truthfulqa_mc_through_align_eval(tmp_path, monkeypatch):
    monkeypatch.setattr(api, "load_lm", lambda options: (FakeLM(), None))
    out = tmp_path / "r.json"
    code = main(["eval", "--model", "fake", "--suite", "truthfulqa_mc", "--limit", "3", "--out", str(out)])
    s = json.loads(out.read_text())["suites"]["truthfulqa_mc"]
    assert code == 0 and s["status"] == "ok" and s["version"] == tq.VERSION and s["data"]["n"] == 3
    assert set(s["metrics"]) == {"mc1", "mc2"}


# ----------------------------------------------------------------------------- BBQ


def test_bbq_spread_is_stratified_across_templates():
    items, _ = bbq.load()
    age = [it for it in items if it.category == "Age"]
    picked = bbq.spread(age, 41)
    assert len(picked) == 41 and sum(it.ambiguous for it in picked) == 21
    assert len({it.question for it in picked}) > 15  # the first 41 rows: 4 questions of one template
    assert len({it.question for it in age[:41]}) <= 4
    assert bbq.spread(age, 41) == picked and bbq.spread(age[:3], 10) == age[:3]
    small, info = bbq.load(limit=3)
    assert info.n == len(small) == 18


def test_bbq_two_choice_sets_from_one_call():
    it = bbq.Item("0", "Age", True, "ctx", "q", ("old", "Not known", "young"), 1, 1, (0,))
    assert bbq.choices(it) == ("old", "young") + bbq.UNKNOWN_RESPONSES
    ctx = "ctx\n\nQ: q\nA:"
    # the data's own "Not known" loses to "young"; lm-eval's "Undetermined" beats both
    lm = FakeLM(
        totals={(ctx, " old"): -3, (ctx, " Not known"): -2, (ctx, " young"): -1, (ctx, " Undetermined"): 0}
    )
    ll = bbq.loglikelihoods(lm, [it])
    assert len(lm.ll_calls) == 1 and len(lm.ll_calls[0]) == 12
    paper, lm_eval = bbq.predictions([it], ll)
    assert paper.tolist() == [2] and lm_eval.tolist() == [1]  # lm-eval: UNKNOWN, correct here


def test_bbq_run_reports_both_sets(tmp_path):
    with open(Path(bbq.DEFAULT_SOURCE) / "Religion.jsonl", encoding="utf-8") as fh:
        rows = [json.loads(fh.readline()) for _ in range(4)]
    (tmp_path / "Religion.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    res = bbq.run(FakeLM(), source=str(tmp_path))
    assert {"accuracy", "lm_eval_accuracy", "bias_score_ambig/Religion", "lm_eval_bias_score_ambig"} <= set(
        res.metrics
    )
    assert len(res.examples[0]["extra"]["ll"]) == 12


def test_bbq_unknown_answer_must_be_one_of_lm_evals(tmp_path):
    with open(Path(bbq.DEFAULT_SOURCE) / "Age.jsonl", encoding="utf-8") as fh:
        good = json.loads(fh.readline())
    (tmp_path / "Age.jsonl").write_text(json.dumps({**good, "ans2": "Who knows"}) + "\n")
    with pytest.raises(data.DataError, match=r"Age.jsonl:line 1: field 'ans2' \(the unknown answer\)"):
        bbq.load(str(tmp_path))


def test_bbq_predictions_tie_goes_to_first():
    it = bbq.Item("0", "Age", False, "c", "q", ("a", "b", "Unknown"), 0, 2, (0,))
    paper, lm_eval = bbq.predictions([it], np.zeros((1, 12)))
    assert paper.tolist() == lm_eval.tolist() == [0]
