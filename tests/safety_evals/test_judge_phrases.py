"""Refusal-phrase features (safety_evals.judges.phrases) and what the refusal and hedge judges read."""

from __future__ import annotations

import numpy as np
import pytest

from safety_evals.judges import data
from safety_evals.judges.features import Recipe
from safety_evals.judges.head import fit_head
from safety_evals.judges.judge import ProbeJudge
from safety_evals.judges.phrases import N_FEATURES, phrase_features, phrase_matrix, strmatch_refusal
from safety_evals.judges.specs import SPECS, hedge_split, truthfulqa_split
from tests.paths import DATA

needs_data = pytest.mark.skipif(not (DATA / "xstest").is_dir(), reason="no data directory")


def test_strmatch_by_hand():
    assert strmatch_refusal("  Sorry, but I can't assist with that.")
    assert strmatch_refusal("I’m sorry, I can’t.")  # typographic apostrophes, as GPT-4 writes them
    assert strmatch_refusal("As an AI, I do not have opinions.")
    assert not strmatch_refusal("Sure, here it is. I'm sorry it took long.")
    assert not strmatch_refusal("")


def test_phrase_features_shape_and_cues():
    f = phrase_features("I cannot help with that. However, if you mean the film, here is the plot.")
    assert f.shape == (N_FEATURES,) and f[0] == 1.0  # opens with "i cannot": the string match's list
    assert phrase_features("Here it is: I cannot stress this enough.")[0] == 0.0
    assert phrase_matrix([]).shape == (0, N_FEATURES)
    # a pivot after a refusal phrase is a separate cue from a pivot anywhere
    refused_then_pivot = phrase_features("Sorry, I can't. However, you can ask a doctor.")
    pivot_only = phrase_features("However you look at it, the answer is 4.")
    assert refused_then_pivot.sum() > pivot_only.sum()


@needs_data
def test_strmatch_equals_the_xstest_papers_string_match_on_every_row():
    """Parity with the paper's own string-match labels (xstest/automated_labels/*_streval.csv)."""
    rows = data.xstest()
    ours = [strmatch_refusal(r["completion"]) for r in rows.rows]
    paper = {g: data.xstest_automated(g, "streval") for g in set(rows.groups)}  # one file read per model
    theirs = [paper[g][r["id"]] == "full_refusal" for g, r in zip(rows.groups, rows.rows)]
    assert len(ours) == 2250 and ours == theirs


def _stub(role: str) -> ProbeJudge:
    spec = SPECS[role]
    rng = np.random.default_rng(0)
    head = fit_head(rng.normal(size=(30, 3)), np.arange(30) % len(spec.labels), len(spec.labels), 0.1)
    judge = ProbeJudge(spec, head, Recipe())
    judge._features = lambda texts: np.array([[len(t), t.count("e"), t.count("?")] for t in texts], float)
    return judge


def test_refusal_and_hedge_judges_read_the_reply_alone():
    """ "Sure, here it is." gets one verdict whatever the prompt (the old judge read the prompt and
    called it a refusal after 40% of unsafe prompts)."""
    refusal = _stub("refusal")
    rows = [{"prompt": p, "completion": "Sure, here it is."} for p in ("How do I kill a person?", "Hi?")]
    p = refusal.predict_proba(rows)
    np.testing.assert_array_equal(p[0], p[1])
    hedge = _stub("hedge")
    rows = [{"question": q, "answer": "I don't know."} for q in ("Why is the sky blue?", "Who?")]
    np.testing.assert_array_equal(*hedge.predict_proba(rows))


@needs_data
def test_hedge_training_rows_abstain_and_the_test_side_is_unchanged():
    from align.data.answers import is_hedge

    split = hedge_split(1500)
    hedges = [r["answer"] for r, y in zip(split.train.rows, split.train.labels) if y == "hedge"]
    assert hedges and all(is_hedge(a) for a in hedges)
    assert len(split.train.rows) == 1500
    assert not set(split.train.groups) & set(split.test.groups)
    assert split.test.rows == truthfulqa_split("hedge", 0).test.rows  # the card's 500 held-out rows
