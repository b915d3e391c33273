"""`align judges build ROLE`: fit, validate and write one shipped judge (head + card).

    align judges build truth --backbone gemma3-270m --limit 1500

Writes safety_evals/judges/artifacts/ROLE.{npz,json} and prints the card's held-out figures.
Backbone features are cached under $ALIGN_CACHE_DIR/features, so a rebuild re-runs only the fit.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

ROLES = ("truth", "info", "refusal", "attribution", "hedge")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, help="build: train and validate a judge")
    build = sub.add_parser("build", help="fit and validate one judge, write its artifact")
    build.add_argument("role", choices=ROLES, help="which judge: " + ", ".join(ROLES))
    build.add_argument(
        "--backbone",
        default="gemma3-270m",
        help="model spec of the frozen backbone, or `lexical` (hashed n-grams) or `references` (truth, info: "
        "comparison with TruthfulQA's reference answers, boosted trees; what the shipped ones use)",
    )
    build.add_argument("--limit", type=int, default=None, help="training rows (default: the role's own)")


def _progress(start: float):
    def report(done: int, total: int) -> None:
        if done == total or done % 256 == 0:
            print(f"  features {done}/{total} ({time.time() - start:.0f} s)", file=sys.stderr, flush=True)

    return report


def run(args: argparse.Namespace) -> int:
    from safety_evals.judges.build import build

    judge, card = build(args.role, backbone=args.backbone, limit=args.limit, progress=_progress(time.time()))
    summary = {
        "identity": judge.identity(),
        "held_out": card["validation"]["held_out"],
        "target": card["target"],
        "build_seconds": card["build_seconds"],
    }
    print(json.dumps(summary, indent=1))
    return 0
