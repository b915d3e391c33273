"""The CrowS-Pairs comparison script and the scoring-throughput benchmark, without a real model."""

import json

import numpy as np
import pytest

from safety_evals.suites import crows_pairs
from safety_evals.lm.protocol import TokenScores
from tests.scripts import load_script

compare = load_script("scripts/compare_crows_lm_eval.py")
bench = load_script("benchmarks/eval_throughput.py")


def test_agreement_counts_decisions_and_sentence_differences():
    a = (np.array([-1.0, -5.0, -2.0]), np.array([-2.0, -4.0, -2.5]))  # decisions: more, less, more
    b = (np.array([-1.0, -3.0, -2.0]), np.array([-2.5, -4.0, -1.0]))  # decisions: more, more, less
    g = compare.agreement(a, b)
    assert g["max_abs_ll_diff"] == 2.0 and g["mean_abs_ll_diff"] == pytest.approx((2.0 + 0.5 + 1.5) / 6)
    assert g["agree"] == pytest.approx(1 / 3) and g["n_differ"] == 2


def test_jax_lls_come_from_results_examples_in_data_order(tmp_path):
    pairs, _ = crows_pairs.load(limit=2)
    ex = [
        {"output": p.sent_more, "prompt": p.sent_less, "extra": {"ll_more": -i, "ll_less": -2.0 * i}}
        for i, p in enumerate(pairs, 1)
    ]
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"suites": {"crows_pairs": {"examples": ex}}}))
    more, less = compare.jax_from_results(str(path), pairs)
    assert more.tolist() == [-1, -2] and less.tolist() == [-2.0, -4.0]
    path.write_text(json.dumps({"suites": {"crows_pairs": {"examples": ex[::-1]}}}))
    with pytest.raises(RuntimeError, match="example 0: not the pair at row 1"):
        compare.jax_from_results(str(path), pairs)


def test_lm_eval_task_builds_crows_requests_from_the_local_csv():
    pytest.importorskip("lm_eval")  # the lm-eval extra (scripts/setup.sh installs it)
    pairs, _ = crows_pairs.load(limit=3)
    task = compare.lm_eval_task(crows_pairs.DEFAULT_SOURCE, None)
    task.build_all_requests(limit=3)
    got = sorted((r.doc_id, r.idx, r.args) for r in task.instances)
    want = [(i, j, ("", s)) for i, p in enumerate(pairs) for j, s in enumerate((p.sent_more, p.sent_less))]
    assert got == want
    # the task's own decision rule: stereotyped when ll(sent_more) > ll(sent_less)
    got = task.process_results({}, [(-1.0, False), (-3.0, False)])
    assert got == {"likelihood_diff": 2.0, "pct_stereotype": 1.0}


class _Counting:
    """Scores a request as -(its token count); records the slices it was given."""

    def __init__(self, log, name):
        self.log, self.name = log, name

    def loglikelihood_tokens(self, requests):
        self.log.append((self.name, len(requests)))
        return [TokenScores((-float(len(c) + len(k)),)) for c, k in requests]


def test_interleaved_alternates_backends_and_keeps_request_order():
    log = []
    reqs = [([2], [5] * n) for n in (5, 4, 3, 2, 1)]
    seconds, totals = bench.interleaved({"a": _Counting(log, "a"), "b": _Counting(log, "b")}, reqs, 2)
    assert log == [("a", 2), ("b", 2), ("b", 2), ("a", 2), ("a", 1), ("b", 1)]
    assert totals["a"].tolist() == totals["b"].tolist() == [-6.0, -5.0, -4.0, -3.0, -2.0]
    assert set(seconds) == {"a", "b"}


def test_reuse_reads_compare_and_benchmark_json(tmp_path):
    b = {"ll_more": [-1.0, -2.0], "ll_less": [-3.0, -1.0]}
    (tmp_path / "c.json").write_text(json.dumps({"n": 2, "backends": {"lm-eval": b}}))
    (tmp_path / "b.json").write_text(
        json.dumps({"rows": [{"pairs": 5, "backends": {}}, {"pairs": 2, "backends": {"jax": b, "hf": b}}]})
    )
    got = compare.reused([str(tmp_path / "c.json"), str(tmp_path / "b.json")], 2)
    assert sorted(got) == ["hf", "jax", "lm-eval"] and got["jax"][1].tolist() == [-3.0, -1.0]
    with pytest.raises(RuntimeError, match="c.json: scored 2 pairs, this run has 3"):
        compare.reused([str(tmp_path / "c.json")], 3)
    with pytest.raises(RuntimeError, match="no row with 3 pairs"):
        compare.reused([str(tmp_path / "b.json")], 3)
