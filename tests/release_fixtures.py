"""Hand-made release documents of a pipeline run, for the model-card and dashboard tests: a results
document shaped like `align eval` writes it, an `align.comparison/v1` before/after document, and
gate verdicts (safety_evals/review/release_docs.py describes both schemas)."""

from __future__ import annotations

from safety_evals import results

CROWS = "${ALIGN_DATA_DIR}/crows_pairs/crows_pairs_anonymized.csv"
SELFAWARE = "selfaware/SelfAware.json"  # joined to the data directory by the test: an absolute path


def _metric(value, lo, hi, n, hib):
    return {"value": value, "ci_low": lo, "ci_high": hi, "n": n, "higher_is_better": hib}


def results_doc(variant: str, selfaware_source: str) -> dict:
    """crows_pairs from a portable source, hedging from an absolute one, toxicity failed."""
    suites = {
        "crows_pairs": {
            "status": "ok",
            "version": "1",
            "error": None,
            "seconds": 1.0,
            "data": {"source": CROWS, "sha256": "0" * 64, "n": 1508},
            "metrics": {
                "pct_stereotype": _metric(0.61, 0.585, 0.634, 1508, False),
                "pct_stereotype/gender": _metric(0.5, 0.4, 0.6, 10, False),
            },
        },
        "hedging": {
            "status": "ok",
            "version": "1",
            "error": None,
            "seconds": 1.0,
            "data": {"source": selfaware_source, "sha256": "1" * 64, "n": 200},
            "metrics": {"hedge_rate_unanswerable": _metric(0.55, 0.45, 0.65, 100, True)},
        },
        "toxicity": {
            "status": "failed",
            "version": "1",
            "error": "RuntimeError: no detoxify weights\ntrace",
            "seconds": 0.1,
            "metrics": {},
        },
    }
    return results.build_document(
        model=results.model_record("runs/q/rl/export", None, variant=variant),
        config={"limit": 200},
        suites=suites,
        run_id=f"run-{variant}",
        created="2026-12-01T10:00:00Z",
    )


def _value(v, lo, hi, n=100):
    return {"value": v, "ci_low": lo, "ci_high": hi, "n": n}


def _change(m, lo, hi, n=100):
    return {"mean": m, "ci_low": lo, "ci_high": hi, "n_paired": n, "method": "paired bootstrap"}


def comparison_doc() -> dict:
    """base -> sft -> rl: hedging up (interval excludes zero), AIS flat (interval straddles zero)."""
    return {
        "schema": "align.comparison/v1",
        "base": "base",
        "models": ["base", "sft", "rl"],
        "rows": [
            {
                "suite": "hedging",
                "metric": "hedge_rate_unanswerable",
                "higher_is_better": True,
                "description": "share of unanswerable questions hedged",
                "values": {
                    "base": _value(0.02, 0.0, 0.07),
                    "sft": _value(0.4, 0.3, 0.5),
                    "rl": _value(0.55, 0.45, 0.65),
                },
                "change": {"sft": _change(0.38, 0.28, 0.48), "rl": _change(0.53, 0.43, 0.63)},
            },
            {
                "suite": "attribution",
                "metric": "ais",
                "higher_is_better": True,
                "description": "share of responses attributable to the passage",
                "values": {
                    "base": _value(0.4, 0.3, 0.5),
                    "sft": _value(0.41, 0.31, 0.51),
                    "rl": _value(0.43, 0.33, 0.53),
                },
                "change": {"sft": _change(0.01, -0.04, 0.06), "rl": _change(0.03, -0.02, 0.08)},
            },
            {
                "suite": "crows_pairs",
                "metric": "pct_stereotype/gender",
                "higher_is_better": False,
                "description": "a breakdown",
                "values": {
                    "base": _value(0.6, 0.5, 0.7),
                    "sft": _value(0.6, 0.5, 0.7),
                    "rl": _value(0.7, 0.6, 0.8),
                },
                "change": {"sft": _change(0.0, 0.0, 0.0), "rl": _change(0.1, 0.05, 0.15)},
            },
        ],
    }


def verdict_doc(variant: str, passed: bool) -> dict:
    checks = [{"name": "suite hedging", "status": "pass", "message": "ok", "rule": "status ok"}]
    if not passed:
        checks.append(
            {
                "name": "attribution.ais min",
                "status": "fail",
                "message": "0.43 < min 0.5 | <b>not html</b>",
                "rule": "min 0.5",
            }
        )
    return {"variant": variant, "passed": passed, "failed": 0 if passed else 1, "checks": checks}
