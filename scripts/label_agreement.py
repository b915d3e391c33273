"""How often each model's judged label matches a reference model's on the same examples.

    python scripts/label_agreement.py teacher.json kd.json sft.json     # reference first
    python scripts/label_agreement.py teacher.json kd.json sft.json --by-metric

"Closer to the teacher", example by example: for every suite the documents share, the share of
examples (matched by id) where a model's label (hedge / answer, refusal / compliance, the truth and
info judges' verdicts, ...) equals the reference's, with a Wilson 95% interval. Prints one JSON row
per (suite, model). `--by-metric` splits a suite whose examples carry labels of several metrics
(factuality: the generated answers' verdicts and the mc2 picks) into one row per metric.

With two or more models, also one row per (suite, pair of models): the difference of their
agreement rates, delta = rate_a - rate_b, over the examples that all documents label, with a paired
percentile bootstrap interval (safety_evals.bootstrap, 1000 resamples, seed 0). Pairing matters: both
models are scored on the same examples, so resampling examples jointly cancels the between-example
variance that two separate Wilson intervals count twice. The resampling unit is the example id (all
labels of one id move together). Reads results documents only.
"""

from __future__ import annotations

import argparse
import itertools
import json
from collections import defaultdict

import numpy as np

from align.intervals import wilson_ci
from safety_evals.bootstrap import ratio_ci


def labels(doc: dict, by_metric: bool = False) -> dict:
    """{suite: {(id, metric): label}} of a results document's examples that carry a label;
    with by_metric, keyed "suite/metric" instead."""
    out = defaultdict(dict)
    for suite, res in doc["suites"].items():
        for r in res.get("examples") or []:
            if r.get("label") is not None:
                key = f"{suite}/{r.get('metric')}" if by_metric else suite
                out[key][(r["id"], r.get("metric"))] = r["label"]
    return dict(out)


def agreement(ref: dict, other: dict) -> dict:
    """{suite: (agreeing, shared)} over the examples both label."""
    out = {}
    for suite, want in ref.items():
        got = other.get(suite, {})
        shared = [k for k in want if k in got]
        if shared:
            out[suite] = (sum(want[k] == got[k] for k in shared), len(shared))
    return out


def paired_difference(ref: dict, a: dict, b: dict) -> dict:
    """{suite: (delta, ci_low, ci_high, n)}: agreement rate of a minus that of b with the reference,
    over the examples all three label, and a bootstrap interval that resamples example ids."""
    out = {}
    for suite, want in ref.items():
        got_a, got_b = a.get(suite, {}), b.get(suite, {})
        shared = [k for k in want if k in got_a and k in got_b]
        if not shared:
            continue
        diff, count = defaultdict(float), defaultdict(float)  # per id: sum of (agree_a - agree_b), labels
        for k in shared:
            diff[k[0]] += float(want[k] == got_a[k]) - float(want[k] == got_b[k])
            count[k[0]] += 1.0
        ids = list(diff)
        num, den = np.array([diff[i] for i in ids]), np.array([count[i] for i in ids])
        lo, hi = ratio_ci(num, den)
        out[suite] = (float(num.sum() / den.sum()), lo, hi, len(shared))
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("reference")
    p.add_argument("others", nargs="+")
    p.add_argument("--by-metric", action="store_true", help="one row per (suite, metric)")
    args = p.parse_args(argv)
    ref = labels(json.load(open(args.reference)), args.by_metric)
    others = {path: labels(json.load(open(path)), args.by_metric) for path in args.others}
    for path, got in others.items():
        for suite, (k, n) in agreement(ref, got).items():
            lo, hi = wilson_ci(k, n)
            print(json.dumps({"suite": suite, "model": path, "agree": k, "n": n, "rate": k / n,
                              "ci95": [lo, hi]}))  # fmt: skip
    for pa, pb in itertools.combinations(args.others, 2):
        for suite, (delta, lo, hi, n) in paired_difference(ref, others[pa], others[pb]).items():
            print(json.dumps({"suite": suite, "difference": [pa, pb], "n": n, "delta": delta,
                              "ci95": [lo, hi], "interval": "paired bootstrap over ids"}))  # fmt: skip


if __name__ == "__main__":
    main()
