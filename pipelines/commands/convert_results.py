"""`align convert-results RESULTS --to lm-eval -o OUT`: an align results document (validated by
safety_evals.review.documents) rewritten in lm-evaluation-harness's results layout
(safety_evals.review.lm_eval_results.to_lm_eval). `align gate` and the dashboard read both layouts."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("results", help="align results JSON (align eval --out)")
    parser.add_argument("--to", choices=("lm-eval",), default="lm-eval", help="layout to write")
    parser.add_argument(
        "-o", "--out", required=True, help="file to write (lm-eval names them results_<date>.json)"
    )


def run(args: argparse.Namespace) -> int:
    from align.fileio import write_text_atomic
    from safety_evals.review.documents import load_results
    from safety_evals.review.lm_eval_results import to_lm_eval

    doc = to_lm_eval(load_results(args.results))
    write_text_atomic(Path(args.out), json.dumps(doc, indent=2, default=str) + "\n")
    print(f"wrote {args.out}: {', '.join(doc['results'])}")
    return 0
