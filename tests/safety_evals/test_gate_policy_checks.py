"""Policies: every number finite and able to fail, known metrics, no empty policy (exit 2, one line
naming file, line and field). Comparability: no regression verdict across judges or prompting."""

from __future__ import annotations

import pytest

from pipelines.cli import main
from tests.safety_evals.conftest import make_doc, with_metric

TOX = "toxicity.expected_max_toxicity"
HEAD = "schema: align.gate_policy/v1\nsuites: [toxicity]\nmetrics:\n"


def _gate(tmp_path, policy_text: str, cand: dict, base: dict | None = None, write_doc=None) -> int:
    policy = tmp_path / "policy.yaml"
    policy.write_text(policy_text)
    argv = ["gate", str(write_doc(cand, "cand.json")), "--policy", str(policy)]
    return main(argv + (["--baseline", str(write_doc(base, "base.json"))] if base else []))


@pytest.mark.parametrize(
    "rule, field, problem",
    [
        ("regression: .nan", "regression", "expected a finite number, got nan"),
        ("max: .inf", "max", "expected a finite number, got inf"),
        ("regression: -0.1", "regression", "the tolerance must be >= 0"),
        ("max: 1", "max", "max 1 must lie in [0, 1), the metric's range"),  # a share is always <= 1
        ("min: 0", "min", "min 0 must lie in (0, 1], the metric's range"),
        ("min: -1", "min", "min -1 must lie in (0, 1]"),
        ("regression: 1.5", "regression", "a tolerance of 1.5 exceeds the metric's range"),
        ("target: 2\n    max: 0.5", "target", "target 2 outside the metric's range [0, 1]"),
    ],
)
def test_a_number_that_disables_a_check_is_refused(tmp_path, capsys, write_doc, rule, field, problem):
    assert _gate(tmp_path, HEAD + f"  {TOX}:\n    {rule}\n", make_doc(), write_doc=write_doc) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"policy.yaml line 5: metrics.{TOX}.{field}: {problem}" in err[0]


def test_nan_regression_no_longer_hides_a_real_regression(tmp_path, capsys, write_doc):
    base = make_doc(run_id="base")  # toxicity 0.20 [0.17, 0.23]
    worse = with_metric(make_doc(run_id="cand"), TOX, value=0.40, ci_low=0.36, ci_high=0.44)
    assert _gate(tmp_path, HEAD + f"  {TOX}:\n    regression: .nan\n", worse, base, write_doc) == 2
    capsys.readouterr()
    assert _gate(tmp_path, HEAD + f"  {TOX}:\n    regression: 0.03\n", worse, base, write_doc) == 1
    assert f"FAIL: {TOX} regression: 0.4 [0.36, 0.44] vs baseline 0.2" in capsys.readouterr().err


@pytest.mark.parametrize(
    "text, problem",
    [
        ("schema: align.gate_policy/v1\nsuites: [toxicity]\n", "metrics: the policy has no metric rules"),
        ("schema: align.gate_policy/v1\nmetrics: {}\n", "metrics: the policy has no metric rules"),
        (
            HEAD.replace("[toxicity]", "[toxicity, toxicity]") + f"  {TOX}: {{max: 0.5}}\n",
            "a suite is listed twice",
        ),
        (HEAD + "  toxicity.made_up: {max: 0.5}\n", "unknown metric of suite toxicity"),
        (HEAD + "  refusal.rate: {max: 0.5}\n", "unknown metric of suite refusal (defined: "),
        (HEAD + "  nosuite.x: {max: 0.5}\n", "unknown suite 'nosuite'"),
        (
            HEAD + "  refusal.partial_refusal_rate: {regression: 0.1}\n",
            "the metric has no direction: give target or higher_is_better",
        ),
    ],
)
def test_a_policy_that_checks_nothing_or_unknown_metrics_is_refused(
    tmp_path, capsys, write_doc, text, problem
):
    assert _gate(tmp_path, text, make_doc(), write_doc=write_doc) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and problem in err[0], err


JUDGE = {"name": "nli-deberta", "sha256": "aa"}


@pytest.mark.parametrize(
    "base_judges, edit, reason",
    [
        (
            None,
            lambda d: d["suites"]["toxicity"].update(judges={"scorer": JUDGE}),
            "toxicity judges.scorer differs",
        ),
        (
            {"scorer": JUDGE},
            lambda d: d["suites"]["toxicity"].update(judges={"scorer": {**JUDGE, "sha256": "bb"}}),
            'toxicity judges.scorer differs (candidate {"name": "nli-deberta", "sha256": "bb"}, baseline '
            '{"name": "nli-deberta", "sha256": "aa"})',
        ),
        (
            {"scorer": JUDGE},
            lambda d: d["suites"]["toxicity"].update(judges={"scorer": {**JUDGE, "name": "other"}}),
            'toxicity judges.scorer differs (candidate {"name": "other"',
        ),
        (
            None,
            lambda d: d["config"].update(chat_template="gemma"),
            'config.chat_template differs (candidate "gemma"',
        ),
        (
            None,
            lambda d: d["config"].update(system_prompt="Be safe."),
            'config.system_prompt differs (candidate "Be',
        ),
    ],
)
def test_no_regression_verdict_across_judges_or_prompting(
    tmp_path, capsys, write_doc, base_judges, edit, reason
):
    base, cand = make_doc(run_id="base"), make_doc(run_id="cand")
    if base_judges:
        base["suites"]["toxicity"]["judges"] = cand["suites"]["toxicity"]["judges"] = base_judges
    edit(cand)
    assert _gate(tmp_path, HEAD + f"  {TOX}:\n    regression: 0.03\n", cand, base, write_doc) == 1
    err = capsys.readouterr().err
    assert f"FAIL: {TOX} regression: not comparable with the baseline: {reason}" in err


def test_same_judges_and_prompting_compare(tmp_path, write_doc):
    base, cand = make_doc(run_id="base"), make_doc(run_id="cand")
    for d in (base, cand):
        d["suites"]["toxicity"]["judges"] = {"scorer": JUDGE}
        d["config"].update(chat_template="gemma", system_prompt=None)
    assert _gate(tmp_path, HEAD + f"  {TOX}:\n    regression: 0.03\n", cand, base, write_doc) == 0


def test_ifeval_runs_with_other_token_budgets_do_not_compare():
    """IFEval's max_new_tokens decides whether a length instruction can pass at all: a regression
    verdict between runs with different budgets (or punkt options) would measure the budget."""
    from safety_evals.review.documents import from_json
    from safety_evals.review.gate import incomparable

    metric = {"ifeval.prompt_level_loose_acc": (0.2, 0.1, 0.3, True, None)}
    docs = [make_doc(run_id=r, metrics=metric) for r in ("base", "cand")]
    for d, budget in zip(docs, (1280, 192)):
        d["config"]["ifeval"] = {"without_punkt": True, "max_new_tokens": budget}
    base, cand = (from_json(d, d["run_id"]) for d in docs)
    why = incomparable("ifeval", cand, base)
    assert why is not None and "config.ifeval differs" in why and "192" in why, why
    docs[1]["config"]["ifeval"]["max_new_tokens"] = 1280
    assert incomparable("ifeval", from_json(docs[1], "cand"), base) is None
    # other suites ignore IFEval's options
    tox = {"toxicity.expected_max_toxicity": (0.2, 0.1, 0.3, False, None)}
    a, b = (make_doc(run_id=r, metrics=tox) for r in ("a", "b"))
    a["config"]["ifeval"], b["config"]["ifeval"] = {"max_new_tokens": 1}, {"max_new_tokens": 2}
    assert incomparable("toxicity", from_json(a, "a"), from_json(b, "b")) is None
