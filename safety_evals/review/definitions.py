"""What each suite's metrics mean, for the readers of results documents: direction, target, range.

The gate judges a document against these definitions, never against what the document says of
itself: a candidate that declares toxicity "higher is better" must not turn a regression into an
improvement. review/ does not import suites/ (it reads documents only), so this is a static copy of
what the suites write; tests/safety_evals/test_definitions.py runs every suite's `metrics()` and
fails when the two drift apart.

Breakdowns (`pct_stereotype/gender`) share the definition of the metric before the `/`. A suite
listed with no metrics is known by name while its metrics are still being defined: its metrics are
read and shown, but a policy may not gate on them until they are added here.
"""

from __future__ import annotations

import dataclasses
import math


@dataclasses.dataclass(frozen=True)
class MetricDef:
    """higher_is_better None: closer to `target` is better (None and no target: no direction).
    `low`/`high`: the values the metric can take (None: unbounded on that side)."""

    higher_is_better: bool | None
    target: float | None = None
    low: float | None = None
    high: float | None = None

    @property
    def width(self) -> float:
        """high - low, inf when unbounded."""
        return math.inf if self.low is None or self.high is None else self.high - self.low


_RATE = MetricDef(True, None, 0.0, 1.0)  # a share of examples, higher is better
_BAD_RATE = MetricDef(False, None, 0.0, 1.0)  # a share of examples, lower is better
_SCORE_100 = MetricDef(True, 100.0, 0.0, 100.0)  # StereoSet LMS / ICAT

SUITES: dict[str, dict[str, MetricDef]] = {
    "crows_pairs": {
        "pct_stereotype": MetricDef(False, 0.5, 0.0, 1.0),
        "likelihood_difference": MetricDef(False, None, 0.0, None),
    },
    "stereoset": {
        "lms": _SCORE_100,
        "ss": MetricDef(None, 50.0, 0.0, 100.0),
        "icat": _SCORE_100,
    },
    "bbq": {
        "accuracy": _RATE,
        "accuracy_ambig": _RATE,
        "accuracy_disambig": _RATE,
        "bias_score_ambig": MetricDef(None, 0.0, -1.0, 1.0),
        "bias_score_disambig": MetricDef(None, 0.0, -1.0, 1.0),
        # the same metrics over lm-eval's twelve choices (suites/bbq.py)
        "lm_eval_accuracy": _RATE,
        "lm_eval_accuracy_ambig": _RATE,
        "lm_eval_accuracy_disambig": _RATE,
        "lm_eval_bias_score_ambig": MetricDef(None, 0.0, -1.0, 1.0),
        "lm_eval_bias_score_disambig": MetricDef(None, 0.0, -1.0, 1.0),
    },
    "truthfulqa_mc": {"mc1": _RATE, "mc2": _RATE},
    "toxicity": {
        "expected_max_toxicity": _BAD_RATE,
        "toxicity_probability": _BAD_RATE,
        "mean_toxicity": _BAD_RATE,
    },
    "factuality": {
        "truthful_informative_rate": _RATE,
        "truthful_rate": _RATE,
        "inaccuracy_rate": _BAD_RATE,
        "informative_rate": _RATE,
        "mc1": _RATE,
        "mc2": _RATE,
    },
    "hedging": {
        "hedging_balanced_accuracy": _RATE,
        "hedge_rate_unanswerable": _RATE,
        "false_hedge_rate_answerable": _BAD_RATE,
        "answer_accuracy_answerable": _RATE,
    },
    "attribution": {
        "ais": _RATE,
        "passage_copy_rate": _BAD_RATE,
    },
    "refusal": {
        "refusal_balanced_accuracy": _RATE,
        "refusal_rate_unsafe": _RATE,
        "compliance_rate_safe": _RATE,
        "partial_refusal_rate": MetricDef(None, None, 0.0, 1.0),
    },
    "ifeval": {
        "prompt_level_strict_acc": _RATE,
        "inst_level_strict_acc": _RATE,
        "prompt_level_loose_acc": _RATE,
        "inst_level_loose_acc": _RATE,
    },
}


def definition(suite: str, metric: str) -> MetricDef | None:
    """The definition of `suite.metric` (a breakdown `m/x` takes m's), or None when unknown."""
    return SUITES.get(suite, {}).get(metric.split("/", 1)[0])


def known_metrics(suite: str) -> list[str]:
    return sorted(SUITES.get(suite, {}))
