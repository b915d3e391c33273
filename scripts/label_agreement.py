"""How often each model's judged label matches a reference model's on the same examples.

    python scripts/label_agreement.py teacher.json kd.json sft.json     # reference first

"Closer to the teacher", example by example: for every suite the documents share, the share of
examples (matched by id) where a model's label (hedge / answer, refusal / compliance, the truth and
info judges' verdicts, ...) equals the reference's, with a Wilson 95% interval. Prints one JSON row
per (suite, model). Reads results documents only.
"""

from __future__ import annotations

import argparse
import json

from align.intervals import wilson_ci


def labels(doc: dict) -> dict:
    """{suite: {(id, metric): label}} of a results document's examples that carry a label."""
    out = {}
    for suite, res in doc["suites"].items():
        rows = res.get("examples") or []
        out[suite] = {(r["id"], r.get("metric")): r["label"] for r in rows if r.get("label") is not None}
    return out


def agreement(ref: dict, other: dict) -> dict:
    """{suite: (agreeing, shared)} over the examples both label."""
    out = {}
    for suite, want in ref.items():
        got = other.get(suite, {})
        shared = [k for k in want if k in got]
        if shared:
            out[suite] = (sum(want[k] == got[k] for k in shared), len(shared))
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("reference")
    p.add_argument("others", nargs="+")
    args = p.parse_args(argv)
    ref = labels(json.load(open(args.reference)))
    for path in args.others:
        for suite, (k, n) in agreement(ref, labels(json.load(open(path)))).items():
            lo, hi = wilson_ci(k, n)
            print(json.dumps({"suite": suite, "model": path, "agree": k, "n": n, "rate": k / n,
                              "ci95": [lo, hi]}))  # fmt: skip


if __name__ == "__main__":
    main()
