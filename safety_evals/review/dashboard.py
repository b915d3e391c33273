"""`align dashboard`: results JSON files (+ SQLite history) -> ONE self-contained HTML page.

For a safety reviewer, the answer first: the release verdict per variant (gate verdict.json files),
then the post-training effect (a before/after comparison: each metric for the base model, every stage
and variant, and the paired change from the base with its interval); then per run (model · variant ·
step, the parts that are known) every metric with its 95% interval, side by side in tables and
forest plots; trends over time; significant regressions against a chosen baseline highlighted with
the gate's own rule (`safety_evals.review.gate.compare`; tolerances and direction overrides from
`--policy` when given, else tolerance 0); failed suites shown as failed; and a drill-down to the
worst examples of each metric. "Worst" follows the metric's direction: highest example score when
lower is better, lowest when higher is better, furthest from `target` otherwise.

No network: CSS, JS and SVG are inline. Model outputs are untrusted: every text goes through
`html.escape` (attributes too), JSON data is embedded with `<`, `>`, `&` escaped, and the JS writes
text with `textContent` only (see dashboard_assets/page.py for the CSP on top).

The view model lives in dashboard_view.py, the HTML in dashboard_assets/sections.py; this module
keeps the CLI and re-exports their public names.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from align.errors import InvalidInput
from safety_evals.review import history
from safety_evals.review.dashboard_assets.sections import MAX_TEXT, render
from safety_evals.review.dashboard_view import (
    Cell,
    View,
    build_view,
    drill_ids,
    metric_anchors,
    short_labels,
    worst_examples,
)
from safety_evals.review.documents import Results, ResultsError, load_results
from safety_evals.review.policy import load_policy
from safety_evals.review.release_docs import (
    ComparisonDoc,
    Verdict,
    load_comparison,
    load_verdict,
    run_documents,
)

__all__ = [
    "MAX_TEXT",
    "Cell",
    "View",
    "add_arguments",
    "build_view",
    "drill_ids",
    "metric_anchors",
    "render",
    "run",
    "short_labels",
    "worst_examples",
]


# ---------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("results", nargs="*", help="results JSON files to review")
    parser.add_argument("--history", help="SQLite history (align results add) for trends")
    parser.add_argument("--baseline", help="baseline: a results JSON file or a run_id from the files/history")
    parser.add_argument("--policy", help="gate policy YAML: regression tolerances and direction overrides")
    parser.add_argument(
        "--examples", type=int, default=10, help="worst examples shown per metric (default 10)"
    )
    parser.add_argument(
        "--comparison",
        help="before/after comparison (align.comparison/v1 JSON) shown as the post-training effect",
    )
    parser.add_argument(
        "--verdict", action="append", default=[], help="a gate verdict.json (repeat for each variant)"
    )
    parser.add_argument(
        "--run-dir",
        help="a pipeline run directory: its compare/comparison.json, gate/*/verdict.json and, when no "
        "results files are given, evals/*.json",
    )
    parser.add_argument("-o", "--out", default="dashboard.html", help="output HTML file")


def _resolve_baseline(spec: str | None, runs: list[Results]) -> Results | None:
    if spec is None:
        return None
    if Path(spec).is_file():
        return load_results(spec)
    for r in runs:
        if r.run_id == spec:
            return r
    raise ResultsError(f"--baseline {spec!r}: neither a file nor a run_id in the given files or history")


def _release_documents(
    args: argparse.Namespace,
) -> tuple[list[str], dict[str, ComparisonDoc], dict[str, Verdict]]:
    """Results files, comparisons and verdicts from the options, --run-dir filling what is not given."""
    results, comparisons, verdicts = list(args.results), {}, {}
    if args.run_dir:
        if not Path(args.run_dir).is_dir():
            raise ResultsError(f"--run-dir {args.run_dir}: no such directory")
        comparisons, verdicts = run_documents(args.run_dir)
        if not results:
            results = sorted(
                str(p) for p in Path(args.run_dir).glob("evals/*.json") if not p.name.endswith(".failed.json")
            )
    if args.comparison:
        comparisons = {"": load_comparison(args.comparison)}
    verdicts.update({v.variant: v for v in map(load_verdict, args.verdict)})
    return results, comparisons, verdicts


def run(args: argparse.Namespace) -> int:
    # ResultsError / PolicyError / HistoryError are InputErrors: pipelines/cli.py prints them, exit 2.
    results, comparisons, verdicts = _release_documents(args)
    if not results and not args.history:
        raise ResultsError("give results JSON files, --run-dir DIR and/or --history results.sqlite")
    if args.history and not Path(args.history).is_file():
        raise ResultsError(f"{args.history}: no such history database")
    reviewed = [load_results(p) for p in results]
    past = history.load_all(args.history) if args.history else []
    baseline = _resolve_baseline(args.baseline, [*reviewed, *past])
    policy = load_policy(args.policy) if args.policy else None
    view = build_view(reviewed, past, baseline, policy, comparisons=comparisons, verdicts=verdicts)
    html_text = render(view, args.examples)
    try:
        Path(args.out).write_text(html_text, encoding="utf-8")
    except OSError as e:  # e.g. -o in a missing directory: bad input, not a bug
        raise InvalidInput(f"-o {args.out}: cannot write the dashboard: {e}") from e
    print(f"wrote {args.out} ({len(html_text) // 1024} KiB)")
    return 0
