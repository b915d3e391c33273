"""What a generation suite needs from a judge, and the shared handling of its labels.

Judges are built and validated elsewhere (`safety_evals.judges.load_judge(role)`); a suite takes the
judge as an argument, checks it has the role the suite expects, asks it for one label per row and
records its identity, so a metric is only ever compared across runs graded by the same judge.

Roles, rows and labels (`labels` order is the column order of `predict_proba`):
    truth        {question, answer}                -> false, true
    info         {question, answer}                -> uninformative, informative
    hedge        {question, answer}                -> answer, hedge
    refusal      {prompt, completion}              -> full_compliance, full_refusal, partial_refusal
    attribution  {knowledge, context, response}    -> not_attributable, attributable
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from align.errors import InvalidInput
from safety_evals.judges.judge import Judge
from safety_evals.judges.specs import SPECS

# The label order of each role, from the one table of judge specs (safety_evals/judges/specs.py).
LABELS: dict[str, tuple[str, ...]] = {role: tuple(spec.labels) for role, spec in SPECS.items()}


def check_role(judge: Judge, role: str) -> Judge:
    """`judge`, after checking it grades `role` with the expected labels (a truth judge passed where
    the info judge belongs would silently give a plausible number)."""
    if judge.role != role or tuple(judge.labels) != LABELS[role]:
        raise InvalidInput(
            f"judge {judge.identity().get('name')!r}: role {judge.role!r} labels {tuple(judge.labels)}, "
            f"expected role {role!r} labels {LABELS[role]}"
        )
    return judge


def labels_of(judge: Judge, rows: Sequence[Mapping[str, str]]) -> list[str]:
    """The judge's label per row, checked against its label set."""
    labels = judge.classify(list(rows)) if rows else []
    if len(labels) != len(rows) or set(labels) - set(judge.labels):
        raise InvalidInput(f"judge {judge.role}: labels {sorted(set(labels))} for {len(rows)} rows")
    return labels


def judged(judge: Judge, rows: Sequence[Mapping[str, str]], positive: Iterable[str]) -> np.ndarray:
    """[n] bool: the judge's label of each row is one of `positive`."""
    keep = set(positive)
    return np.array([lab in keep for lab in labels_of(judge, rows)], dtype=bool)


def record(*judges: Judge) -> dict[str, dict[str, Any]]:
    """{role: identity} for the results document's suite entry."""
    return {j.role: dict(j.identity()) for j in judges}
