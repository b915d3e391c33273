"""An independent reading of results documents and of the release gate's rules, for the fuzz test
(tests/safety_evals/test_gate_fuzz.py): written again from docs/results_schema.md and the gate's
docstring, not from safety_evals/review, so that the two can disagree."""

from __future__ import annotations

import json
import math

from safety_evals.review.definitions import definition

__all__ = ["definition", "expected_pass", "strict_problems"]


def strict_problems(text: str) -> list[str]:
    """What a stricter reader finds wrong with a results text (empty: nothing)."""

    def no_dups(pairs):
        keys = [k for k, _ in pairs]
        if len(set(keys)) != len(keys):
            raise ValueError("duplicate key")
        return dict(pairs)

    try:
        doc = json.loads(text, object_pairs_hook=no_dups, parse_constant=lambda c: float("nan"))
    except ValueError as e:
        return [str(e)]
    problems = []
    for sname, s in doc["suites"].items():
        for mname, m in (s.get("metrics") or {}).items():
            v, lo, hi, n = m.get("value"), m.get("ci_low"), m.get("ci_high"), m.get("n")
            nums = [x for x in (v, lo, hi) if x is not None]
            if any(not math.isfinite(x) for x in nums):
                problems.append(f"{sname}.{mname} not finite")
                continue
            if v is not None and (not isinstance(n, int) or n < 1):
                problems.append(f"{sname}.{mname} value without examples")
            if v is not None and lo is not None and not lo - 1e-9 <= v <= hi + 1e-9:
                problems.append(f"{sname}.{mname} value outside its interval")
            d = definition(sname, mname)
            if d is not None:
                if m.get("higher_is_better") is not d.higher_is_better:
                    problems.append(f"{sname}.{mname} direction differs from the suite's")
                for x in nums:
                    if (d.low is not None and x < d.low - 1e-9) or (d.high is not None and x > d.high + 1e-9):
                        problems.append(f"{sname}.{mname} outside its range")
    return problems


def _comparable(c: dict, b: dict, suite: str) -> bool:
    cs, bs = c["suites"][suite], b["suites"][suite]
    for key in ("sha256", "n"):
        if (cs.get("data") or {}).get(key) is None or (cs.get("data") or {}).get(key) != (
            bs.get("data") or {}
        ).get(key):
            return False
    if cs.get("version") is None or str(cs.get("version")) != str(bs.get("version")):
        return False
    if (cs.get("judges") or {}) != (bs.get("judges") or {}):
        return False
    if (
        "limit" not in c["config"]
        or "limit" not in b["config"]
        or c["config"]["limit"] != b["config"]["limit"]
    ):
        return False
    return all(c["config"].get(k) == b["config"].get(k) for k in ("chat_template", "system_prompt"))


def expected_pass(c: dict, b: dict, policy: dict) -> bool:
    """The release gate by its documented rules, written again from the docs (gate.py docstring)."""
    if any(s["status"] != "ok" for s in c["suites"].values()):
        return False
    if any(
        name not in c["suites"] for name in [*c["config"].get("suites", []), *(policy.get("suites") or [])]
    ):
        return False
    for full, rule in policy["metrics"].items():
        suite, name = full.split(".", 1)
        m = c["suites"].get(suite, {}).get("metrics", {}).get(name)
        if m is None or m["value"] is None:
            return False
        iv = (m.get("ci_low"), m.get("ci_high"))
        interval = rule.get("bound", "value") == "interval"
        if interval and None in iv:
            return False
        lo, hi = iv if interval else (m["value"], m["value"])
        if ("max" in rule and hi > rule["max"]) or ("min" in rule and lo < rule["min"]):
            return False
        if "regression" in rule and not _no_regression(c, b, suite, name, m, rule):
            return False
    return True


def _no_regression(c, b, suite, name, m, rule) -> bool:
    bm = b["suites"].get(suite, {}).get("metrics", {}).get(name)
    if bm is None or bm["value"] is None or not _comparable(c, b, suite):
        return False
    d = definition(suite, name)
    hib, target = d.higher_is_better, d.target
    if "target" in rule:
        hib, target = None, rule["target"]
    if "higher_is_better" in rule:
        hib = rule["higher_is_better"]

    def bad(x):
        return abs(x - target) if hib is None else (-x if hib else x)

    lo, hi = (m["ci_low"], m["ci_high"]) if m.get("ci_low") is not None else (m["value"], m["value"])
    b_lo = 0.0 if hib is None and lo <= target <= hi else min(bad(lo), bad(hi))
    return not b_lo > bad(bm["value"]) + rule["regression"]
