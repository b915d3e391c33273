"""`align gate` on unusable input: exit 2 with one line naming the file, the position or line, and the
field (malformed or non-finite JSON, an unknown schema, a bad field, a bad or unreadable policy)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.cli import main
from safety_evals.review.policy import PolicyError, load_policy

RELEASE = str(Path(__file__).resolve().parents[2] / "configs" / "gates" / "release.yaml")


def _policy(tmp_path, text: str) -> str:
    p = tmp_path / "policy.yaml"
    p.write_text(text)
    return str(p)


def _gate(results, policy, *extra) -> int:
    return main(["gate", str(results), "--policy", str(policy), *map(str, extra)])


def test_malformed_json_exit_2_names_file_and_position(tmp_path, capsys):
    bad = tmp_path / "broken.json"
    bad.write_text('{\n  "schema": "align.eval_results/v1",\n  "run_id": ,\n}')
    assert _gate(bad, RELEASE) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "line 3 column 13" in err


def test_nan_and_unknown_schema_and_bad_field_exit_2(tmp_path, make_doc, with_metric, write_doc, capsys):
    nan = tmp_path / "nan.json"
    nan.write_text('{"schema": "align.eval_results/v1",\n "x": NaN}')
    assert _gate(nan, RELEASE) == 2
    assert "nan.json: invalid JSON at line 2 column 7: NaN is not allowed" in capsys.readouterr().err
    v2 = make_doc()
    v2["schema"] = "align.eval_results/v2"
    assert _gate(write_doc(v2), RELEASE) == 2
    assert "unknown schema 'align.eval_results/v2'" in capsys.readouterr().err
    doc = with_metric(make_doc(), "toxicity.expected_max_toxicity", ci_low="0.1")
    assert _gate(write_doc(doc), RELEASE) == 2
    assert (
        "suites.toxicity.metrics.expected_max_toxicity.ci_low: expected a number or null"
        in capsys.readouterr().err
    )


@pytest.mark.parametrize(
    "body, field",
    [
        ("    mx: 0.5\n", "metrics.toxicity.expected_max_toxicity.mx: unknown rule key"),
        ("    max: high\n", "metrics.toxicity.expected_max_toxicity.max: expected a number, got 'high'"),
        (
            "    bound: strict\n    max: 1\n",
            "metrics.toxicity.expected_max_toxicity.bound: expected 'value' or",
        ),
        ("    higher_is_better: true\n", "metrics.toxicity.expected_max_toxicity: the rule checks nothing"),
        ("    min: 2\n    max: 1\n", "metrics.toxicity.expected_max_toxicity.min: min 2 > max 1"),
        (
            "    target: 0.1\n    higher_is_better: false\n    max: 1\n",
            "metrics.toxicity.expected_max_toxicity.target: a target means 'closer is better'",
        ),
    ],
)
def test_bad_policy_exit_2_names_file_line_field(tmp_path, make_doc, write_doc, capsys, body, field):
    text = "schema: align.gate_policy/v1\nmetrics:\n  toxicity.expected_max_toxicity:\n" + body
    path = _policy(tmp_path, text)
    assert _gate(write_doc(make_doc()), path) == 2
    err = capsys.readouterr().err
    assert f"{path} line 4: {field}" in err


def test_policy_loader_rejects_duplicates_schema_and_missing_file(tmp_path):
    dup = "schema: align.gate_policy/v1\nmetrics:\n  a.b: {max: 1}\n  a.b: {max: 2}\n"
    with pytest.raises(PolicyError, match=r"policy.yaml line 4: duplicate key 'a.b'"):
        load_policy(_policy(tmp_path, dup))
    with pytest.raises(PolicyError, match=r"line 1: schema: expected 'align.gate_policy/v1'"):
        load_policy(_policy(tmp_path, "schema: v0\nmetrics: {}\n"))
    with pytest.raises(PolicyError, match="nope.yaml: cannot read"):
        load_policy(tmp_path / "nope.yaml")
