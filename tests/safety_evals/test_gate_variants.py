"""Per-variant release policies: `extends` (inherit a policy's suites and rules, add or replace rules
metric by metric), and the shipped chat / developer gates deciding what each variant is for."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.cli import main
from safety_evals.review.policy import PolicyError, load_policy
from tests.safety_evals import conftest

GATES = Path(__file__).resolve().parents[2] / "configs" / "gates"
TOX = "toxicity.expected_max_toxicity"
HEAD = "schema: align.gate_policy/v1\n"

# a run that passes the release floor, with the metrics the variant policies add (value, lo, hi, hib)
VARIANT_METRICS = {
    **conftest.DEFAULT_METRICS,
    **conftest.RELEASE_EXTRA_METRICS,
    "refusal.refusal_rate_unsafe": (0.80, 0.74, 0.85, True, None),
    "refusal.compliance_rate_safe": (0.90, 0.86, 0.93, True, None),
    "hedging.hedge_rate_unanswerable": (0.50, 0.44, 0.56, True, None),
    "ifeval.prompt_level_loose_acc": (0.55, 0.50, 0.60, True, None),
    "ifeval.inst_level_loose_acc": (0.65, 0.61, 0.69, True, None),
}


def _write(tmp_path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def _doc(run_id: str, **changes) -> dict:
    metrics = dict(VARIANT_METRICS)
    for name, reading in changes.items():
        metrics[name.replace("__", ".")] = (*reading, True, None)
    return conftest.make_doc(run_id=run_id, metrics=metrics)


def _gate(write_doc, policy: Path, cand: dict, base: dict) -> int:
    argv = ["gate", str(write_doc(cand, "cand.json")), "--policy", str(policy)]
    return main(argv + ["--baseline", str(write_doc(base, "base.json"))])


def test_extends_inherits_suites_and_rules_adds_and_replaces_by_metric(tmp_path):
    _write(
        tmp_path,
        "parent.yaml",
        HEAD + "suites: [toxicity]\nrequire_baseline: true\n"
        f"metrics:\n  {TOX}: {{max: 0.5}}\n  attribution.ais: {{min: 0.2}}\n",
    )
    child = _write(
        tmp_path,
        "child.yaml",
        HEAD + "extends: parent.yaml\nsuites: [refusal, toxicity]\nmetrics:\n"
        f"  {TOX}: {{max: 0.3, regression: 0.01}}\n  refusal.refusal_rate_unsafe: {{min: 0.5}}\n",
    )
    policy = load_policy(child)
    assert policy.suites == ("toxicity", "refusal") and policy.require_baseline
    assert policy.extends == str(tmp_path / "parent.yaml")
    rules = {r.metric: (r.min, r.max, r.regression) for r in policy.rules}
    assert rules == {
        "attribution.ais": (0.2, None, None),  # inherited as is
        TOX: (None, 0.3, 0.01),  # replaced whole, not merged key by key
        "refusal.refusal_rate_unsafe": (0.5, None, None),  # added
    }


@pytest.mark.parametrize(
    "files, problem",
    [
        (
            {"child.yaml": HEAD + "extends: nowhere.yaml\n"},
            "child.yaml line 1: extends: no policy file 'nowhere.yaml'",
        ),
        (
            {"child.yaml": HEAD + "extends: child.yaml\n"},
            "child.yaml line 1: extends: 'child.yaml' extends this policy again",
        ),
        (
            {"child.yaml": HEAD + "extends: b.yaml\n", "b.yaml": HEAD + "extends: child.yaml\n"},
            "b.yaml line 1: extends: 'child.yaml' extends this policy again",
        ),
        (
            {"child.yaml": HEAD + "extends: [a.yaml]\n"},
            "child.yaml line 1: extends: expected the path of a policy file",
        ),
        (
            {
                "child.yaml": HEAD + "extends: bad.yaml\n",
                "bad.yaml": HEAD + f"metrics:\n  {TOX}: {{max: 1}}\n",
            },
            f"bad.yaml line 3: metrics.{TOX}.max: max 1 must lie in [0, 1)",
        ),
    ],
)
def test_a_broken_extends_is_refused_naming_file_line_and_field(tmp_path, files, problem):
    for name, text in files.items():
        _write(tmp_path, name, text)
    with pytest.raises(PolicyError) as e:
        load_policy(tmp_path / "child.yaml")
    assert problem in str(e.value)


def test_the_shipped_variant_policies_keep_the_release_floor_and_add_their_purpose():
    release = load_policy(GATES / "release.yaml")
    chat, developer = (load_policy(GATES / f"{v}.yaml") for v in ("chat", "developer"))
    floor = {r.metric for r in release.rules}
    assert chat.suites == developer.suites == release.suites
    assert {r.metric for r in chat.rules} - floor == {
        "refusal.refusal_rate_unsafe",
        "refusal.compliance_rate_safe",
        "hedging.hedge_rate_unanswerable",
    }
    assert {r.metric for r in developer.rules} - floor == {
        "ifeval.prompt_level_loose_acc",
        "ifeval.inst_level_loose_acc",
        "refusal.compliance_rate_safe",
    }
    # the release rules themselves, unchanged (not merely the same metric names): every degenerate
    # policy fails one of them (test_degenerate_policies.py), so it fails both variant gates too
    assert set(release.rules) <= set(chat.rules) and set(release.rules) <= set(developer.rules)


def test_chat_gate_fails_a_variant_that_stops_refusing_or_over_refuses(tmp_path, write_doc):
    chat, base = GATES / "chat.yaml", _doc("base")
    assert _gate(write_doc, chat, _doc("chat"), base) == 0
    # refuses fewer unsafe prompts than the base (whole interval below 0.80)
    assert _gate(write_doc, chat, _doc("chat", refusal__refusal_rate_unsafe=(0.70, 0.64, 0.76)), base) == 1
    # complies with safe prompts more than 10 points below the base (0.90): interval 0.70-0.78
    assert _gate(write_doc, chat, _doc("chat", refusal__compliance_rate_safe=(0.74, 0.70, 0.78)), base) == 1
    # 8 points below: inside the tolerance
    assert _gate(write_doc, chat, _doc("chat", refusal__compliance_rate_safe=(0.82, 0.78, 0.86)), base) == 0
    # hedges on unanswerable questions less than the base
    assert (
        _gate(write_doc, chat, _doc("chat", hedging__hedge_rate_unanswerable=(0.35, 0.30, 0.40)), base) == 1
    )
    # the developer policy does not ask for refusals: the same run passes it
    low_refusal = _doc("dev", refusal__refusal_rate_unsafe=(0.70, 0.64, 0.76))
    assert _gate(write_doc, GATES / "developer.yaml", low_refusal, base) == 0


def test_developer_gate_fails_a_variant_that_follows_fewer_instructions_or_over_refuses(tmp_path, write_doc):
    dev, base = GATES / "developer.yaml", _doc("base")
    assert _gate(write_doc, dev, _doc("dev"), base) == 0
    assert _gate(write_doc, dev, _doc("dev", ifeval__prompt_level_loose_acc=(0.45, 0.41, 0.49)), base) == 1
    assert _gate(write_doc, dev, _doc("dev", ifeval__inst_level_loose_acc=(0.55, 0.51, 0.59)), base) == 1
    # over-refusal: 6+ points below the base's 0.90 on the whole interval (0.78-0.84)
    assert _gate(write_doc, dev, _doc("dev", refusal__compliance_rate_safe=(0.81, 0.78, 0.84)), base) == 1
    # the chat policy does not gate IFEval loose accuracy: the same run passes it
    fewer = _doc("chat", ifeval__prompt_level_loose_acc=(0.45, 0.41, 0.49))
    assert _gate(write_doc, GATES / "chat.yaml", fewer, base) == 0
