"""lm-evaluation-harness results files through the one validating reader and `align gate`: tasks our
suites run become those suites, stderr becomes a normal-approximation 95% interval (stated in the gate
output), everything else is listed but never gated, and bad lm-eval files are exit-2 input errors."""

import json

import pytest

from pipelines.cli import main
from safety_evals.review.documents import ResultsError, load_results
from safety_evals.review.lm_eval_results import Z95

Z = 1.959963984540054

POLICY = """schema: align.gate_policy/v1
suites: [crows_pairs]
metrics:
  crows_pairs.pct_stereotype:
    max: {limit}
    bound: interval
"""


def lm_eval_file(tmp_path, results=None, n=200, **extra):
    """A results file as lm-eval 0.4.13 writes it (keys trimmed to those the reader uses, plus noise)."""
    doc = {
        "results": results
        or {
            "crows_pairs_english": {
                "alias": "crows_pairs_english",
                "likelihood_diff,none": 3.25,
                "likelihood_diff_stderr,none": 0.2,
                "pct_stereotype,none": 0.6,
                "pct_stereotype_stderr,none": 0.03,
            },
            "my_task": {"alias": "my_task", "acc,none": 0.98, "acc_stderr,none": "N/A", "acc,strict": 0.5},
        },
        "group_subtasks": {"crows_pairs_english": [], "my_task": []},
        "configs": {"crows_pairs_english": {"task": "crows_pairs_english"}, "my_task": {"task": "my_task"}},
        "versions": {"crows_pairs_english": 1.0, "my_task": 0},
        "n-shot": {"crows_pairs_english": 0},
        "higher_is_better": {"crows_pairs_english": {"pct_stereotype": False}},
        "n-samples": {
            "crows_pairs_english": {"original": 1677, "effective": n},
            "my_task": {"original": 4, "effective": 4},
        },
        "config": {"model": "align", "model_args": "model=gemma3-270m", "limit": 200.0},
        "model_name": "gemma3-270m",
        "date": 1765000000.0,
        **extra,
    }
    path = tmp_path / "results_2026-12-06T17-00-00.json"
    path.write_text(json.dumps(doc))
    return path


def test_stderr_becomes_a_normal_interval_and_tasks_become_suites(tmp_path):
    results = load_results(lm_eval_file(tmp_path))
    assert Z95 == pytest.approx(Z)
    crows = results.suites["crows_pairs"]
    pct = crows.metrics["pct_stereotype"]
    assert (pct.value, pct.n, pct.ci_method) == (0.6, 200, "normal")
    assert pct.interval() == pytest.approx((0.6 - Z * 0.03, 0.6 + Z * 0.03))
    assert pct.defined and pct.higher_is_better is False and pct.target == 0.5  # our definition
    lik = crows.metrics["likelihood_difference"]
    assert lik.interval() == pytest.approx((3.25 - Z * 0.2, 3.25 + Z * 0.2))
    other = results.suites["my_task"].metrics
    assert set(other) == {"acc", "acc[strict]"} and other["acc"].interval() is None  # "N/A"
    assert not other["acc"].defined  # listed, never gated
    assert crows.data["n"] == 200 and len(crows.data["sha256"]) == 64
    assert results.model.name == "gemma3-270m" and results.config["limit"] == 200


def test_a_normal_interval_is_clipped_to_the_metric_range(tmp_path):
    results = {"crows_pairs_english": {"pct_stereotype,none": 0.98, "pct_stereotype_stderr,none": 0.05}}
    pct = load_results(lm_eval_file(tmp_path, results)).suites["crows_pairs"].metrics["pct_stereotype"]
    assert pct.interval() == pytest.approx((0.98 - Z * 0.05, 1.0))


@pytest.mark.parametrize("limit, code", [(0.75, 0), (0.65, 1)])
def test_gate_reads_lm_eval_results_and_says_how_the_interval_was_made(tmp_path, capsys, limit, code):
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY.format(limit=limit))
    summary = tmp_path / "summary.md"
    # ci_high = 0.6 + 1.96 * 0.03 = 0.6588: under 0.75, over 0.65
    assert (
        main(["gate", str(lm_eval_file(tmp_path)), "--policy", str(policy), "--summary", str(summary)])
        == code
    )
    shown = capsys.readouterr().out + summary.read_text()
    assert "0.6 [0.5412, 0.6588] (normal approx. 95% from lm-eval stderr)" in shown


def test_bad_lm_eval_files_are_input_errors(tmp_path):
    with pytest.raises(ResultsError, match=r"n-samples.crows_pairs_english.effective: expected the number"):
        load_results(lm_eval_file(tmp_path, n="200"))
    # a value outside its range is caught by the same consistency checks as our own documents
    bad = {"crows_pairs_english": {"pct_stereotype,none": 1.5, "pct_stereotype_stderr,none": "N/A"}}
    with pytest.raises(ResultsError, match=r"suites.crows_pairs.metrics.pct_stereotype.value: 1.5 outside"):
        load_results(lm_eval_file(tmp_path, bad))


def test_convert_results_writes_lm_evals_layout_and_reads_back(tmp_path):
    from tests.safety_evals import conftest

    doc = conftest.make_doc()
    ours = tmp_path / "results.json"
    ours.write_text(json.dumps(doc))
    out = tmp_path / "results_lm_eval.json"
    assert main(["convert-results", str(ours), "--to", "lm-eval", "-o", str(out)]) == 0
    written = json.loads(out.read_text())
    original = load_results(ours)
    for full, m in original.metrics().items():
        suite = m.suite
        if suite == "crows_pairs":
            task = "crows_pairs_english"
            name = {"likelihood_difference": "likelihood_diff"}.get(m.name, m.name)
        else:
            task, name = f"align_{suite}", m.name
        row = written["results"][task]
        assert row[f"{name},none"] == m.value, full
        lo, hi = m.interval()
        assert row[f"{name}_stderr,none"] == pytest.approx((hi - lo) / (2 * Z)), full
    back = load_results(out)  # the gate's reader takes the converted file: the same suites and values
    assert {k: m.value for k, m in back.metrics().items()} == {
        k: m.value for k, m in original.metrics().items()
    }
    assert {s.name: s.data["sha256"] for s in back.suites.values()} == {
        s.name: s.data["sha256"] for s in original.suites.values()
    }


def test_nan_of_an_empty_lm_eval_breakdown_is_no_value_but_ours_still_refuse_it(tmp_path):
    path = lm_eval_file(tmp_path)
    text = path.read_text().replace('"acc,strict": 0.5', '"acc,strict": NaN')
    path.write_text(text)
    assert set(load_results(path).suites["my_task"].metrics) == {"acc"}  # the NaN breakdown left out
    ours = tmp_path / "ours.json"
    ours.write_text('{"schema": "align.eval_results/v1", "x": NaN}')
    with pytest.raises(ResultsError, match="NaN is not allowed"):
        load_results(ours)
