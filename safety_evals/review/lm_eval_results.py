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
        suite, names = LM_EVAL_TASKS.get(task, (task, {}))
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
