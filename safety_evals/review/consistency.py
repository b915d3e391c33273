"""Checks that a results document agrees with itself and with the suites' definitions.

Each failure calls the reader's `fail(json_path, problem)` (a ResultsError naming the file), so a
document that contradicts itself is unusable input (exit 2), never a verdict:
  * a metric's value lies inside its own interval, and both inside the metric's range;
  * `n` is an integer >= 0, >= 1 when there is a value, <= the suite's data.n, and a breakdown's n
    <= the n of the metric it breaks down;
  * a Wilson interval is the Wilson interval of value * n successes in n (value * n an integer);
  * the document's `higher_is_better`/`target` are the suite's own (review/definitions.py);
  * a failed suite carries no metrics, an ok suite no error and its data's sha256 and n;
  * `judges` entries name a judge and its content hash; `config` values have their types.
"""

from __future__ import annotations

from typing import Any

from align.intervals import wilson_ci
from safety_evals.review.definitions import MetricDef

CI_METHODS = ("bootstrap", "wilson", "normal")  # normal: lm-eval stderr x 1.96 (review/lm_eval_results.py)
_REL = 1e-9  # float slack for comparisons of numbers that went through JSON and a multiply


def _le(a: float, b: float) -> bool:
    return a <= b + _REL * max(1.0, abs(a), abs(b))


def check_direction(r, spec: MetricDef, hib: Any, target: float | None, at: str, suite: str) -> None:
    """The direction the document declares must be the suite's: the reader never takes it from the
    document, and a document that disagrees was either written by another suite version or edited."""
    if hib is not spec.higher_is_better:
        r.fail(
            f"{at}.higher_is_better",
            f"the document says {_json(hib)}, suite {suite} defines {_json(spec.higher_is_better)} "
            "(directions come from the suite definition, not from the results)",
        )
    if target is not None and target != spec.target:
        r.fail(f"{at}.target", f"the document says {target:g}, suite {suite} defines {_json(spec.target)}")


def _json(v: Any) -> str:
    return "null" if v is None else ("true" if v is True else "false" if v is False else f"{v:g}")


def check_metric(r, m, spec: MetricDef | None, at: str) -> None:
    """Value, interval, n and range of one metric (see the module docstring)."""
    if m.ci_method not in CI_METHODS:
        r.fail(f"{at}.interval", f"expected one of {CI_METHODS}, got {m.ci_method!r}")
    if m.n is None or m.n < 0:
        r.fail(f"{at}.n", f"expected an integer >= 0, got {m.n!r}")
    if (m.ci_low is None) != (m.ci_high is None):
        r.fail(f"{at}.ci_low", "ci_low and ci_high are both numbers or both null")
    if m.value is None:
        if m.ci_low is not None:
            r.fail(f"{at}.value", "null, but the metric has an interval")
        return
    if m.n == 0:
        r.fail(f"{at}.n", "0 examples, but the metric has a value")
    if m.ci_low is not None:
        if m.ci_low > m.ci_high:
            r.fail(f"{at}.ci_low", f"ci_low {m.ci_low} > ci_high {m.ci_high}")
        if not (_le(m.ci_low, m.value) and _le(m.value, m.ci_high)):
            r.fail(f"{at}.value", f"{m.value} lies outside its own interval [{m.ci_low}, {m.ci_high}]")
    if spec is not None:
        for key in ("value", "ci_low", "ci_high"):
            x = getattr(m, key)
            if x is not None and not _in_range(x, spec):
                r.fail(f"{at}.{key}", f"{x} outside the metric's range {_range(spec)}")
    if m.ci_method == "wilson":
        _check_wilson(r, m, at)


def _in_range(x: float, spec: MetricDef) -> bool:
    return (spec.low is None or _le(spec.low, x)) and (spec.high is None or _le(x, spec.high))


def _range(spec: MetricDef) -> str:
    lo = "-inf" if spec.low is None else f"{spec.low:g}"
    hi = "inf" if spec.high is None else f"{spec.high:g}"
    return f"[{lo}, {hi}]"


def _check_wilson(r, m, at: str) -> None:
    """A proportion: k = value * n successes, and the interval the producer's wilson_ci gives."""
    k = m.value * m.n
    if not (0 <= round(k) <= m.n) or abs(k - round(k)) > 1e-6 * max(1, m.n):
        r.fail(f"{at}.value", f"a Wilson proportion of n={m.n} examples, but value * n = {k:.6g}")
    if m.ci_low is None:
        r.fail(f"{at}.ci_low", "a Wilson proportion without its interval")
    lo, hi = wilson_ci(round(k), m.n)
    if abs(lo - m.ci_low) > 1e-6 or abs(hi - m.ci_high) > 1e-6:
        r.fail(
            f"{at}.ci_low",
            f"[{m.ci_low}, {m.ci_high}] is not the Wilson interval of {round(k)} of {m.n} "
            f"([{lo:.6g}, {hi:.6g}])",
        )


def check_suite(r, suite, at: str) -> None:
    """Status against metrics and error; every metric's n against data.n and its overall metric."""
    if not suite.ok:
        if suite.metrics:
            r.fail(f"{at}.metrics", "a failed suite carries no metrics")
        return
    if suite.error is not None:
        r.fail(f"{at}.error", "status ok, but the suite records an error")
    data_n = suite.data.get("n")
    if not isinstance(suite.data.get("sha256"), str):
        r.fail(f"{at}.data.sha256", "an ok suite records the sha256 of its data")
    if isinstance(data_n, bool) or not isinstance(data_n, int) or data_n < 0:
        r.fail(f"{at}.data.n", f"expected the number of examples (an integer >= 0), got {data_n!r}")
    for name, m in suite.metrics.items():
        if m.n > data_n:
            r.fail(f"{at}.metrics.{name}.n", f"{m.n} examples, more than the suite's data.n = {data_n}")
        whole = suite.metrics.get(name.split("/", 1)[0])
        if "/" in name and whole is not None and m.n > whole.n:
            r.fail(f"{at}.metrics.{name}.n", f"{m.n} examples, more than {whole.name} has ({whole.n})")
    if suite.seconds is not None and suite.seconds < 0:
        r.fail(f"{at}.seconds", f"expected >= 0, got {suite.seconds}")


def judges(r, obj: Any, at: str) -> dict:
    """`judges`: {role: {"name": str, "sha256": str}}; absent or null: no judges."""
    if obj is None:
        return {}
    r.mapping(obj, at)
    out = {}
    for role, judge in obj.items():
        j = r.mapping(judge, f"{at}.{role}")
        out[role] = {
            "name": r.string(j.get("name"), f"{at}.{role}.name"),
            "sha256": r.opt_string(j.get("sha256"), f"{at}.{role}.sha256"),
        }
    return out


def check_config(r, config: dict) -> None:
    """The config keys consumers read: limit (the comparability of runs), suites, prompting."""
    limit = config.get("limit")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        r.fail("config.limit", f"expected an integer >= 1 or null, got {limit!r}"[:200])
    suites = config.get("suites", [])
    if not isinstance(suites, list) or not all(isinstance(s, str) for s in suites):
        r.fail("config.suites", "expected a list of suite names")
    for key in ("chat_template", "system_prompt"):
        r.opt_string(config.get(key), f"config.{key}")
    seed = config.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        r.fail("config.seed", "expected an integer or null")
