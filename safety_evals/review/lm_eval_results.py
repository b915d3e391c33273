"""lm-evaluation-harness results files (`results_<date>.json`, lm-eval 0.4.x) as align.eval_results/v1
documents, so that the one validating reader (review/documents.py), the gate and the dashboard take
them as they are.

* Tasks our suites also run become those suites, their metrics renamed (`LM_EVAL_TASKS`: e.g.
  crows_pairs_english's likelihood_diff is crows_pairs.likelihood_difference); every other task is a
  suite of its own name whose metrics are listed but never gated (review/definitions.py knows none).
* A metric is lm-eval's `"<metric>,<filter>"`; the "none" filter gives our name, another filter
  `<name>[<filter>]` (undefined: listed only).
* lm-eval reports a standard error, not an interval: the interval is the normal approximation
  value +- 1.96 * stderr, clipped to the metric's range, and marked `"interval": "normal"` (the gate
  prints it as such). A stderr of "N/A" gives no interval.
* n is lm-eval's `n-samples.<task>.effective`; data.sha256 its `task_hashes.<task>` when it logged
  samples, else the sha256 of the task's config as recorded (lm-eval keeps no hash of the data).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
from typing import Any

from safety_evals.review.definitions import definition

Z95 = 1.959963984540054  # two-sided 95% normal quantile
LM_EVAL_TASKS: dict[str, tuple[str, dict[str, str]]] = {
    "crows_pairs_english": (
        "crows_pairs",
        {"pct_stereotype": "pct_stereotype", "likelihood_diff": "likelihood_difference"},
    ),
    "bbq": (
        "bbq",
        {
            "acc": "lm_eval_accuracy",
            "accuracy_amb": "lm_eval_accuracy_ambig",
            "accuracy_disamb": "lm_eval_accuracy_disambig",
            "amb_bias_score": "lm_eval_bias_score_ambig",
            "disamb_bias_score": "lm_eval_bias_score_disambig",
        },
    ),
    "ifeval": ("ifeval", {m: m for m in ("prompt_level_strict_acc", "inst_level_strict_acc")}),
    "truthfulqa_mc1": ("truthfulqa_mc", {"acc": "mc1"}),
    "truthfulqa_mc2": ("truthfulqa_mc", {"acc": "mc2"}),
}
LM_EVAL_TASKS["ifeval"][1].update(prompt_level_loose_acc="prompt_level_loose_acc")
LM_EVAL_TASKS["ifeval"][1].update(inst_level_loose_acc="inst_level_loose_acc")


def is_lm_eval(doc: Any) -> bool:
    """An lm-eval results file: `results` per task, and lm-eval's bookkeeping, without our schema."""
    return (
        isinstance(doc, dict)
        and "schema" not in doc
        and isinstance(doc.get("results"), dict)
        and ("versions" in doc or "n-samples" in doc)
    )


def to_document(doc: dict, fail) -> dict:
    """The v1 document of lm-eval results `doc`; `fail(json_path, problem)` raises for bad input."""
    samples = doc.get("n-samples") or {}
    suites: dict[str, dict] = {}
    for task, values in doc["results"].items():
        if not isinstance(values, dict):
            fail(f"results.{task}", "expected an object of metrics")
        if task not in samples:  # a group's aggregate: its tasks are read one by one
            continue
        suite, names = _suite_of(task)
        n = _count(samples[task], f"n-samples.{task}", fail)
        entry = suites.setdefault(suite, {"status": "ok", "metrics": {}, "data": _data(doc, task, n)})
        entry["data"]["lm_eval_tasks"].append(task)
        entry["data"]["n"] = max(entry["data"]["n"], n)  # truthfulqa_mc: mc1 and mc2 are two tasks
        for key, value in values.items():
            metric = _metric(suite, key, value, values, names, n)
            if metric is not None:
                entry["metrics"][metric[0]] = metric[1]
    config = doc.get("config") if isinstance(doc.get("config"), dict) else {}
    model = str(doc.get("model_name") or config.get("model_args") or config.get("model") or "lm-eval model")
    created = _created(doc.get("date"))
    return {
        "schema": "align.eval_results/v1",
        "run_id": f"lm-eval-{created.replace(':', '')}",
        "created": created,
        "model": {"name": model},
        "config": {"suites": list(suites), "limit": _limit(config.get("limit"))},
        "suites": suites,
    }


def _suite_of(task: str) -> tuple[str, dict[str, str]]:
    """(our suite, lm-eval metric -> ours) of a task; `align_<suite>` is what to_lm_eval writes."""
    if task in LM_EVAL_TASKS:
        return LM_EVAL_TASKS[task]
    return (task.removeprefix("align_") if task.startswith("align_") else task), {}


def _metric(suite: str, key: str, value: Any, values: dict, names: dict, n: int) -> tuple[str, dict] | None:
    if "," not in key or "_stderr," in key or isinstance(value, bool) or not isinstance(value, (int, float)):
        return None  # alias, stderr entries, "N/A"
    name, filt = key.split(",", 1)
    ours = names.get(name, name) if filt == "none" else f"{names.get(name, name)}[{filt}]"
    spec = definition(suite, ours)
    stderr = values.get(f"{name}_stderr,{filt}")
    lo = hi = None
    if isinstance(stderr, (int, float)) and not isinstance(stderr, bool) and math.isfinite(stderr):
        lo, hi = value - Z95 * stderr, value + Z95 * stderr
        if spec is not None:  # a rate's normal interval can leave [0, 1]
            lo = lo if spec.low is None else max(lo, spec.low)
            hi = hi if spec.high is None else min(hi, spec.high)
    out = {"value": value, "ci_low": lo, "ci_high": hi, "n": n, "interval": "normal"}
    out["higher_is_better"] = spec.higher_is_better if spec else None
    if spec is not None and spec.target is not None:
        out["target"] = spec.target
    return ours, out


def _count(entry: Any, at: str, fail) -> int:
    n = entry.get("effective") if isinstance(entry, dict) else None
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        fail(f"{at}.effective", f"expected the number of documents scored, got {n!r}")
    return n


def _data(doc: dict, task: str, n: int) -> dict:
    digest = (doc.get("task_hashes") or {}).get(task)
    if not isinstance(digest, str) or not digest:
        recorded = (doc.get("configs") or {}).get(task, {})
        digest = hashlib.sha256(json.dumps(recorded, sort_keys=True, default=str).encode()).hexdigest()
    return {"n": n, "sha256": digest, "lm_eval_tasks": []}


def _created(date: Any) -> str:
    if isinstance(date, (int, float)) and not isinstance(date, bool) and math.isfinite(date):
        return dt.datetime.fromtimestamp(date, dt.timezone.utc).isoformat()
    return dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc).isoformat()  # lm-eval always writes `date`


def _limit(limit: Any) -> int | None:
    return (
        int(limit) if isinstance(limit, (int, float)) and not isinstance(limit, bool) and limit >= 1 else None
    )


def to_lm_eval(results) -> dict:
    """A read results document (documents.Results) in lm-eval's results layout: one task per suite
    (lm-eval's task name where it runs the same metric, else `align_<suite>`), `<metric>,none` values
    and `<metric>_stderr,none` = (ci_high - ci_low) / (2 * 1.96), the normal-approximation reading of
    our interval ("N/A" without one); failed suites are left out, as lm-eval writes no failed task."""
    ours = {suite: (task, {v: k for k, v in names.items()}) for task, (suite, names) in LM_EVAL_TASKS.items()}
    out: dict[str, Any] = {
        "results": {},
        "versions": {},
        "n-samples": {},
        "higher_is_better": {},
        "configs": {},
        "task_hashes": {},
    }
    for suite in results.suites.values():
        if not suite.ok:
            continue
        for m in suite.metrics.values():
            task, names = ours.get(suite.name, (f"align_{suite.name}", {}))
            if suite.name == "truthfulqa_mc" and m.name in ("mc1", "mc2"):
                task, names = f"truthfulqa_{m.name}", {m.name: "acc"}
            row = out["results"].setdefault(task, {"alias": task})
            name = names.get(m.name, m.name)
            iv = m.interval()
            row[f"{name},none"] = m.value
            row[f"{name}_stderr,none"] = (iv[1] - iv[0]) / (2 * Z95) if iv else "N/A"
            out["versions"][task] = suite.version
            out["n-samples"][task] = {"original": suite.data.get("n"), "effective": suite.data.get("n")}
            out["higher_is_better"].setdefault(task, {})[name] = m.higher_is_better
            out["configs"][task] = {"task": task, "align_suite": suite.name, "data": suite.data}
            out["task_hashes"][task] = suite.data.get("sha256")
    out["config"] = {
        "model": "align",
        "model_args": f"model={results.model.name}",
        "limit": results.config.get("limit"),
    }
    out["model_name"] = results.model.name
    out["date"] = results.created.timestamp()
    return out
