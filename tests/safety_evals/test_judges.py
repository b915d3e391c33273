"""safety_evals.judges: the protocol, the head fit, agreement figures, held-out splits, shipped artifacts."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from align.errors import InvalidInput
from safety_evals.judges import SHIPPED, Judge, LLMJudge, ProbeJudge, load_judge, read_card
from safety_evals.judges import build as build_mod
from safety_evals.judges import data
from safety_evals.judges.agreement import agreement, balanced_accuracy, cohen_kappa
from safety_evals.judges.features import Recipe
from safety_evals.judges.head import fit_head, group_folds
from safety_evals.judges.specs import SPECS, truthfulqa_split
from safety_evals.judges.testing import FakeJudge
from tests.paths import DATA
from tests.safety_evals.fakes import FakeLM

needs_data = pytest.mark.skipif(not (DATA / "xstest").is_dir(), reason="no data directory")


def _text_features(texts, progress=None):
    """Deterministic stand-in for the backbone: [n, 6] from character statistics."""
    return np.array(
        [[len(t), t.count(" "), t.count("o"), t.count("?"), t.count("I"), 1.0] for t in texts], float
    )


def _judge(role="truth", seed=0) -> ProbeJudge:
    rng = np.random.default_rng(seed)
    head = fit_head(
        rng.normal(size=(40, 6)), rng.integers(0, len(SPECS[role].labels), 40), len(SPECS[role].labels), 0.1
    )
    judge = ProbeJudge(SPECS[role], head, Recipe())
    judge._features = _text_features
    return judge


ROWS = [{"question": "What is 2+2?", "answer": "4"}, {"question": "Why?", "answer": "I have no comment."}]


def test_probe_judge_protocol_shapes_and_labels():
    judge = _judge()
    assert isinstance(judge, Judge)
    p = judge.predict_proba(ROWS)
    assert p.shape == (2, 2) and np.allclose(p.sum(1), 1.0)
    assert judge.classify(ROWS) == [judge.labels[k] for k in p.argmax(1)]
    assert judge.predict_proba([]).shape == (0, 2)
    with pytest.raises(InvalidInput, match="truth judge input row 0: missing .*'answer'"):
        judge.classify([{"question": "q"}])


def test_identity_hash_changes_with_weights_and_recipe():
    a = _judge()
    same = ProbeJudge(a.spec, a.head, a.recipe)
    moved = dataclasses.replace(a.head, bias=a.head.bias + 1e-3)
    assert a.identity() == same.identity() and a.identity()["name"] == "truth"
    assert ProbeJudge(a.spec, moved, a.recipe).identity()["sha256"] != a.identity()["sha256"]
    assert ProbeJudge(a.spec, a.head, Recipe(layers=(18,))).identity()["sha256"] != a.identity()["sha256"]


def test_unknown_role_is_invalid_input():
    with pytest.raises(InvalidInput, match="judge role 'toxicity'"):
        load_judge("toxicity")
    with pytest.raises(InvalidInput):
        FakeJudge("toxicity")


def test_head_matches_sklearn_multinomial_logistic_regression():
    """Parity: mean CE + l2/2 |W|^2 on standardised x is sklearn's with C = 1 / (n l2)."""
    linear_model = pytest.importorskip("sklearn.linear_model")
    rng = np.random.default_rng(1)
    x = rng.normal(size=(120, 5)) * [1, 2, 3, 4, 5] + 3
    y = (x[:, 0] + rng.normal(size=120) > 3).astype(int) + (x[:, 1] > 5)
    head = fit_head(x, y, 3, l2=0.05)
    z = (x - head.mean) / head.scale
    ref = linear_model.LogisticRegression(C=1 / (120 * 0.05), tol=1e-10, max_iter=10_000).fit(z, y)
    np.testing.assert_allclose(head.proba(x), ref.predict_proba(z), atol=1e-4)


def test_agreement_figures_by_hand():
    human = np.array(["a", "a", "a", "b"])
    judged = np.array(["a", "a", "b", "b"])
    # p_o = 3/4, p_e = 3/4*2/4 + 1/4*2/4 = 1/2 -> kappa 1/2; recalls a 2/3, b 1 -> 5/6
    assert cohen_kappa(human, judged) == pytest.approx(0.5)
    assert balanced_accuracy(human, judged) == pytest.approx(5 / 6)
    fig = agreement(human, judged)
    assert fig["n"] == 4 and fig["accuracy"]["value"] == 0.75
    low, high = fig["accuracy"]["ci"]
    assert low < 0.75 < high
    assert cohen_kappa(human, np.array(["a"] * 4)) == 0.0  # a constant judge agrees by chance only


def test_group_folds_keep_each_group_whole():
    groups = [f"q{i % 13}" for i in range(100)]
    folds = group_folds(groups, 4)
    for g in set(groups):
        assert len({f for f, h in zip(folds, groups) if h == g}) == 1
    assert len(set(group_folds(["m1", "m2", "m3"] * 3, 4))) == 3  # few groups: one fold each


@needs_data
def test_truthfulqa_split_is_by_question():
    split = truthfulqa_split("truth", 300)
    assert not set(split.train.groups) & set(split.test.groups)
    assert {r["question"] for r in split.test.rows}.isdisjoint(r["question"] for r in split.train.rows)
    hedge = truthfulqa_split("hedge", 300)
    assert set(hedge.test.labels) <= {"answer", "hedge"} and len(hedge.test.rows) == len(split.test.rows)


@needs_data
def test_leave_one_model_out_never_trains_on_the_held_out_model(monkeypatch):
    seen = []

    def record(spec, x, labelled):
        seen.append(set(labelled.groups))
        return fit_head(x, build_mod._encode(spec, labelled.labels), len(spec.labels), 1.0), {"l2": 1.0}

    monkeypatch.setattr(build_mod, "_fit", record)

    class Store:
        recipe = Recipe()

        def __call__(self, texts, progress=None):
            return _text_features(texts)

    _, _, validation, target = build_mod._leave_one_model_out(SPECS["refusal"], Store(), 2250, None)
    assert [s for s in seen[:5]] == [set(data.XSTEST_MODELS) - {m} for m in data.XSTEST_MODELS]
    assert seen[5] == set(data.XSTEST_MODELS)  # the shipped head: all five
    assert validation["held_out"]["n"] == 2250
    # the XSTest paper's own agreement figures, recomputed on the same rows
    assert validation["baselines"]["string match (XSTest paper)"]["accuracy"]["value"] == pytest.approx(
        np.mean([0.924, 0.856, 0.802, 0.760, 0.851]), abs=1e-3
    )
    assert target["metric"] == "accuracy" and target["threshold"] == 0.9


@pytest.mark.parametrize("role", sorted(SHIPPED))
def test_shipped_artifacts_load_offline(role):
    judge = load_judge(role)
    card = read_card(role)
    assert judge.role == role and judge.labels == SPECS[role].labels
    if card.get("head_kind", "logistic") == "logistic":
        assert judge.head.weight.shape == (judge.head.mean.size, len(judge.labels))
    else:  # boosted trees: one raw score (two labels) or one per label
        assert judge.head.baseline.size == (1 if len(judge.labels) == 2 else len(judge.labels))
    assert card["identity"] == judge.identity()
    assert card["validation"]["held_out"]["n"] > 0
    # the artifact was built from the spec as it stands (a spec changed without a rebuild fails here)
    assert judge.recipe == SPECS[role].recipe(card["backbone"])
    assert card.get("version", 1) == SPECS[role].version


def test_fake_judge_protocol():
    judge = FakeJudge("hedge", table={"Paris": "hedge"})
    rows = [{"question": "q", "answer": "I have no comment."}, {"question": "q", "answer": "Paris"},
            {"question": "q", "answer": "It is 100 C."}]  # fmt: skip
    assert isinstance(judge, Judge)
    assert judge.classify(rows) == ["hedge", "hedge", "answer"]
    assert judge.predict_proba(rows).tolist() == [[0, 1], [0, 1], [1, 0]]
    assert judge.identity() != FakeJudge("hedge").identity()
    refusal = FakeJudge("refusal")
    assert refusal.classify([{"prompt": "p", "completion": "I'm sorry, I can't."}]) == ["full_refusal"]


def test_llm_self_judge_says_so():
    judge = LLMJudge(FakeLM())
    assert judge.identity()["name"] == "self"
    p = judge.predict_proba([{"knowledge": "P", "context": "", "response": "R"}])
    assert p.shape == (1, 2) and np.allclose(p.sum(1), 1.0)
    assert "self" not in SHIPPED
