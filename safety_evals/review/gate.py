"""`align gate`: turn a results document into a CI verdict under a release policy.

Exit codes: 0 every check passed, 1 at least one check failed, 2 unusable input (malformed or
unknown-schema results, unreadable or invalid policy): the message names the file and the field.

The gate fails closed. Each of these is a failed check with its own message:
  * a suite with status "failed", and a suite named in `config.suites` but absent from `suites`;
  * a suite listed in the policy's `suites:` that is absent or failed;
  * a policy metric absent from the results (typo, dropped metric, failed suite) or with value null;
  * a regression rule whose metric is absent from the baseline, or whose direction is unknown;
  * a regression rule whose suite is not comparable with the baseline's: a different suite
    `version`, `data.sha256` or `data.n`, different `judges` (name or content hash of any role), or a
    different `config.limit`, `config.chat_template` or `config.system_prompt`, for ifeval also a
    different `config.ifeval` (its token budget and punkt option) (or one of version, data, limit
    missing).

Rules (per metric in the policy; the direction comes from the suite's definition of the metric,
safety_evals/review/definitions.py, never from the results, unless the rule overrides it: a rule
`target` alone, or `higher_is_better: null`, means "closer to the target is better"; the
definition's `target` only counts when the direction is null):
  * `min` / `max`: absolute thresholds on the point value, or with `bound: interval` on the whole
    95% interval (max: ci_high <= max, min: ci_low >= min).
  * `regression: X` ("no worse than the baseline by more than X", in the metric's own units).
    Map every value to a badness b (lower is better): b = x if higher_is_better is false, b = -x if
    true, b = |x - target| if null. With the candidate interval mapped to [b_lo, b_hi] and the
    baseline point value to b_base, the check FAILS iff  b_lo > b_base + X,  i.e. the candidate's
    whole 95% interval lies beyond the baseline value plus the tolerance in the bad
    direction. A worse point estimate whose interval still reaches baseline + X passes (not
    significant). A candidate metric without an interval is compared on its point value (stricter).
    Without `--baseline`, regression checks are skipped unless the policy sets `require_baseline`.

Everything printed from the documents (suite errors, names) goes through `safe_text.one_line`, so a
results file cannot forge a verdict line or a CI workflow command.
"""

from __future__ import annotations

import argparse
import dataclasses
import html
import json
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from align.errors import InvalidInput
from safety_evals.review.policy import UNSET, Policy, Rule, load_policy
from safety_evals.review.documents import MetricReading, Results, load_results
from align.safe_text import one_line


# ---------------------------------------------------------------- comparison (shared with the dashboard)
@dataclasses.dataclass(frozen=True)
class Direction:
    """Which way is bad: higher_is_better True/False, or None with a `target` (closer is better)."""

    higher_is_better: bool | None
    target: float | None = None

    @property
    def known(self) -> bool:
        return self.higher_is_better is not None or self.target is not None

    def badness(self, x: float) -> float:
        """b(x), lower is better."""
        if self.higher_is_better is None:
            return abs(x - self.target)
        return -x if self.higher_is_better else x

    def badness_interval(self, lo: float, hi: float) -> tuple[float, float]:
        """Image of [lo, hi] under b: a monotone map, or |x - t| which is 0 inside the interval."""
        if self.higher_is_better is None and lo <= self.target <= hi:
            return 0.0, max(self.badness(lo), self.badness(hi))
        a, b = self.badness(lo), self.badness(hi)
        return min(a, b), max(a, b)

    @staticmethod
    def of(metric: MetricReading, rule: Rule | None = None) -> Direction:
        """The metric's direction, overridden by the rule's keys where the policy gives them."""
        hib, target = metric.higher_is_better, metric.target
        if rule is not None and rule.target is not None:
            hib, target = None, rule.target  # load_policy refuses a target with higher_is_better true/false
        if rule is not None and rule.higher_is_better is not UNSET:
            hib = rule.higher_is_better
        return Direction(hib, target)


@dataclasses.dataclass(frozen=True)
class Comparison:
    delta: float  # candidate - baseline, raw units
    regressed: bool  # candidate interval entirely beyond baseline + tolerance, bad side
    improved: bool  # candidate interval entirely beyond baseline - tolerance, good side
    text: str


def compare(
    candidate: MetricReading, baseline: MetricReading, direction: Direction, tolerance: float = 0.0
) -> Comparison:
    """The gate's significance rule (module docstring): regressed iff b_lo > b_base + tolerance."""
    if candidate.value is None or baseline.value is None:
        raise ValueError(f"{candidate.full_name}: cannot compare a null value")
    if not direction.known:
        raise ValueError(f"{candidate.full_name}: no direction (set higher_is_better or target in the rule)")
    lo, hi = candidate.interval() or (candidate.value, candidate.value)
    b_lo, b_hi = direction.badness_interval(lo, hi)
    b_base = direction.badness(baseline.value)
    regressed, improved = b_lo > b_base + tolerance, b_hi < b_base - tolerance
    delta = candidate.value - baseline.value
    verdict = (
        "significantly worse" if regressed else "significantly better" if improved else "not significant"
    )
    text = (
        f"{candidate.value:.4g} [{lo:.4g}, {hi:.4g}] vs baseline {baseline.value:.4g}: "
        f"Δ {delta:+.4g}, {verdict} (tolerance {tolerance:g})"
    )
    return Comparison(delta, regressed, improved, text)


# ---------------------------------------------------------------- evaluation
@dataclasses.dataclass(frozen=True)
class Check:
    name: str  # e.g. "toxicity.expected_max_toxicity max"
    group: str  # suite name: the JUnit classname
    status: str  # "pass" | "fail" | "skip"
    message: str
    value: str = ""  # "0.31 [0.28, 0.34]"
    baseline: str = ""
    rule: str = ""


def evaluate(results: Results, policy: Policy, baseline: Results | None = None) -> list[Check]:
    """All checks, suites first then rules in policy order."""
    checks = _suite_checks(results, policy)
    metrics = results.metrics()
    base_metrics = baseline.metrics() if baseline else {}
    for rule in policy.rules:
        checks += _rule_checks(
            rule, results, metrics.get(rule.metric), baseline, base_metrics.get(rule.metric), policy
        )
    return checks


def _suite_checks(results: Results, policy: Policy) -> list[Check]:
    checks = []
    for name, s in results.suites.items():
        msg = "ok" if s.ok else f"suite failed: {(s.error or 'no error recorded').strip()}"
        checks.append(Check(f"suite {name}", name, "pass" if s.ok else "fail", msg, rule="status ok"))
    declared = results.config.get("suites")
    for name in declared if isinstance(declared, list) else []:
        if isinstance(name, str) and name not in results.suites:
            checks.append(
                Check(f"suite {name}", name, "fail", "listed in config.suites but missing from suites")
            )
    for name in policy.suites:
        if name not in results.suites:
            have = ", ".join(results.suites) or "none"
            msg = f"required by the policy but absent from the results (suites present: {have})"
            checks.append(Check(f"suite {name} required", name, "fail", msg, rule="present"))
    return checks


def _fmt(m: MetricReading | None) -> str:
    if m is None or m.value is None:
        return "—"
    iv = m.interval()
    if iv is None:
        return f"{m.value:.4g}"
    how = " (normal approx. 95% from lm-eval stderr)" if m.ci_method == "normal" else ""
    return f"{m.value:.4g} [{iv[0]:.4g}, {iv[1]:.4g}]{how}"


def _rule_checks(
    rule: Rule,
    results: Results,
    m: MetricReading | None,
    baseline: Results | None,
    bm: MetricReading | None,
    policy: Policy,
) -> list[Check]:
    """One check per rule kind present (min, max, regression); a missing metric fails each."""
    out = []
    for kind in ("min", "max", "regression"):
        limit = getattr(rule, kind)
        if limit is None:
            continue
        if kind == "regression":
            text = f"no worse than baseline by > {limit:g}"
        else:
            text = f"{'≥' if kind == 'min' else '≤'} {limit:g}" + (
                " (whole interval)" if rule.bound == "interval" else ""
            )
        if m is None or m.value is None:
            status, msg = "fail", _missing_reason(rule.metric, results, m)
        elif kind == "regression":
            status, msg = _regression(rule, m, results, baseline, bm, policy)
        else:
            status, msg = _threshold(rule, m, kind)
        out.append(
            Check(f"{rule.metric} {kind}", rule.metric.split(".", 1)[0], status, msg, _fmt(m), _fmt(bm), text)
        )
    return out


def _missing_reason(name: str, results: Results, m: MetricReading | None) -> str:
    if m is not None:
        return f"metric {name} has value null in the results"
    suite_name = name.split(".", 1)[0]
    suite = results.suites.get(suite_name)
    if suite is None:
        return f"metric {name}: suite {suite_name!r} is not in the results (unknown suite or not run)"
    if not suite.ok:
        return f"metric {name}: suite {suite_name!r} failed, so the metric is missing"
    have = ", ".join(suite.metrics) or "none"
    return f"metric {name}: unknown metric, not in the results (suite {suite_name} has: {have})"


def _threshold(rule: Rule, m: MetricReading, kind: str) -> tuple[str, str]:
    iv = m.interval()
    if rule.bound == "interval" and iv is None:
        return "fail", "bound: interval, but the metric has no ci_low/ci_high"
    if kind == "max":
        x = iv[1] if rule.bound == "interval" else m.value
        what = "ci_high" if rule.bound == "interval" else "value"
        ok = x <= rule.max
        return ("pass" if ok else "fail"), f"{what} {x:.4g} {'≤' if ok else '>'} max {rule.max:g}"
    x = iv[0] if rule.bound == "interval" else m.value
    what = "ci_low" if rule.bound == "interval" else "value"
    ok = x >= rule.min
    return ("pass" if ok else "fail"), f"{what} {x:.4g} {'≥' if ok else '<'} min {rule.min:g}"


def _regression(
    rule: Rule,
    m: MetricReading,
    results: Results,
    baseline: Results | None,
    bm: MetricReading | None,
    policy: Policy,
) -> tuple[str, str]:
    if baseline is None:
        if policy.require_baseline:
            return "fail", "the policy sets require_baseline but no --baseline was given"
        return "skip", "no --baseline given"
    if bm is None or bm.value is None:
        return "fail", f"metric missing or null in the baseline {baseline.source}"
    why = incomparable(m.suite, results, baseline)
    if why:
        return "fail", why
    direction = Direction.of(m, rule)
    if not direction.known:
        return "fail", "no direction: the metric has higher_is_better null and no target; set one in the rule"
    c = compare(m, bm, direction, rule.regression)
    return ("fail" if c.regressed else "pass"), c.text


_MAY_BE_NULL = ("config.limit", "judges", "config.chat_template", "config.system_prompt", "config.ifeval")


def _provenance(r: Results, suite: str) -> dict[str, Any]:
    s = r.suites[suite]
    return {
        "version": s.version,
        "data.sha256": s.data.get("sha256"),
        "data.n": s.data.get("n"),
        "judges": s.judges,  # {} when the suite uses none
        "config.limit": r.config.get("limit", UNSET),
        "config.chat_template": r.config.get("chat_template"),
        "config.system_prompt": r.config.get("system_prompt"),
        # IFEval's token budget and punkt option change which instructions can pass; other suites ignore them
        **({"config.ifeval": r.config.get("ifeval")} if suite == "ifeval" else {}),
    }


def incomparable(suite: str, results: Results, baseline: Results) -> str | None:
    """Why the suite's numbers cannot be compared with the baseline's, or None. Other data, another
    --limit, a rescored suite, another judge or other prompting can move a metric as much as a model
    change, so the gate cannot tell them apart; a missing version, data or limit fails too
    (config.limit may be null: the whole data set)."""
    cand, base = _provenance(results, suite), _provenance(baseline, suite)
    for key in cand:
        a, b = cand[key], base[key]
        what = key if key.startswith("config.") else f"{suite} {key}"
        if UNSET in (a, b) or (key not in _MAY_BE_NULL and None in (a, b)):
            side = "candidate" if a is None or a is UNSET else "baseline " + baseline.source
            return f"not comparable with the baseline: {what} is missing in the {side}"
        if key == "judges" and a != b:
            role = sorted(r for r in {*a, *b} if a.get(r) != b.get(r))[0]
            what, a, b = f"{suite} judges.{role}", a.get(role), b.get(role)
        if a != b:
            return (
                f"not comparable with the baseline: {what} differs (candidate {json.dumps(a)}, baseline "
                f"{json.dumps(b)}); rerun both with the same data, --limit, suite version, judges and "
                "prompting"
            )
    return None


# ---------------------------------------------------------------- reports
_XML_BAD = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def junit_xml(checks: list[Check], results: Results) -> str:
    """One <testcase> per check; failure/skip counts in the <testsuite> attributes."""
    clean = lambda s: _XML_BAD.sub("\ufffd", s)  # noqa: E731 - tracebacks can hold control bytes
    fails = sum(c.status == "fail" for c in checks)
    skips = sum(c.status == "skip" for c in checks)
    root = ET.Element("testsuites", tests=str(len(checks)), failures=str(fails))
    ts = ET.SubElement(
        root,
        "testsuite",
        name=clean(f"align gate {results.run_id}"),
        tests=str(len(checks)),
        failures=str(fails),
        errors="0",
        skipped=str(skips),
    )
    for c in checks:
        tc = ET.SubElement(ts, "testcase", classname=clean(f"gate.{c.group}"), name=clean(c.name))
        if c.status == "fail":
            ET.SubElement(tc, "failure", message=clean(c.message[:500])).text = clean(c.message)
        elif c.status == "skip":
            ET.SubElement(tc, "skipped", message=clean(c.message))
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _cell(s: str) -> str:
    """Markdown table cell: escape HTML (untrusted error text) and pipes, one line."""
    return html.escape(" ".join(s.split()), quote=False).replace("|", "\\|") or " "


def summary_markdown(checks: list[Check], results: Results, policy: Policy, baseline: Results | None) -> str:
    """A Markdown report for $GITHUB_STEP_SUMMARY: verdict, context, failures first."""
    fails = [c for c in checks if c.status == "fail"]
    verdict = (
        f"❌ FAIL: {len(fails)} of {len(checks)} checks failed" if fails else f"✅ PASS: {len(checks)} checks"
    )
    base = f"`{_cell(baseline.run_id)}` ({_cell(baseline.label)})" if baseline else "none"
    lines = [
        f"## Release gate: {verdict}",
        "",
        f"- run `{_cell(results.run_id)}`, model {_cell(results.label)}, "
        f"created {results.created:%Y-%m-%d %H:%M} UTC",
        f"- policy `{_cell(policy.source)}`"
        + (f" (extends `{_cell(policy.extends)}`)" if policy.extends else "")
        + f", baseline {base}",
        "",
        "| | check | value [95% CI] | baseline | rule | detail |",
        "|---|---|---|---|---|---|",
    ]
    icon = {"fail": "❌", "skip": "⏭️", "pass": "✅"}
    order = {"fail": 0, "skip": 1, "pass": 2}
    for c in sorted(checks, key=lambda c: order[c.status]):
        lines.append(
            f"| {icon[c.status]} | `{_cell(c.name)}` | {_cell(c.value)} | {_cell(c.baseline)} "
            f"| {_cell(c.rule)} | {_cell(c.message[:300])} |"
        )
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("results", help="results JSON of the candidate run")
    parser.add_argument("--policy", required=True, help="policy YAML, e.g. configs/gates/release.yaml")
    parser.add_argument("--baseline", help="results JSON of the baseline run (for regression rules)")
    parser.add_argument("--junit", help="write a JUnit XML report here (one testcase per check)")
    parser.add_argument(
        "--summary", help="append a Markdown summary to this file (e.g. $GITHUB_STEP_SUMMARY)"
    )


def run(args: argparse.Namespace) -> int:
    # PolicyError / ResultsError are InputErrors: pipelines/cli.py prints them (one line) and exits 2.
    policy = load_policy(args.policy)
    results = load_results(args.results)
    baseline = load_results(args.baseline) if args.baseline else None
    checks = evaluate(results, policy, baseline)
    summary = summary_markdown(checks, results, policy, baseline)
    try:
        if args.junit:
            Path(args.junit).write_text(junit_xml(checks, results), encoding="utf-8")
        if args.summary:
            with open(args.summary, "a", encoding="utf-8") as f:  # append: $GITHUB_STEP_SUMMARY is shared
                f.write(summary)
    except OSError as e:  # e.g. a report path in a missing directory: bad input, not a bug
        raise InvalidInput(f"cannot write the gate report: {e}") from e
    for c in checks:
        if c.status != "pass":
            print(f"{c.status.upper()}: {one_line(c.name)}: {one_line(c.message)}", file=sys.stderr)
    failed = sum(c.status == "fail" for c in checks)
    print(f"align gate: {'FAIL' if failed else 'PASS'} ({failed} failed of {len(checks)} checks)")
    return 1 if failed else 0
