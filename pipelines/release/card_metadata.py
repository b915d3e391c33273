"""A card's YAML front matter through `huggingface_hub.ModelCardData`, so the Hub reads it as its own:
`base_model` as a hub id, `datasets:` (the training data that is on the hub), and a `model-index`
with one `EvalResult` per metric of the variant's results document (every suite, breakdowns too),
each naming its dataset by hub id (or slug), subset and split.
"""

from __future__ import annotations

from collections.abc import Sequence

from huggingface_hub import EvalResult, ModelCardData

from pipelines.release.datasets import DatasetRef, describe
from safety_evals.review.documents import Results

TASK = "text-generation"


def suite_datasets(results: Results | None) -> dict[str, DatasetRef]:
    """suite -> the dataset its `data.source` names (ok suites only: a failed suite read no data)."""
    if results is None:
        return {}
    return {name: describe(str(s.data.get("source") or name)) for name, s in results.suites.items() if s.ok}


def eval_results(results: Results | None) -> list[EvalResult]:
    """One EvalResult per metric with a value; the interval stays in the card's tables."""
    out = []
    refs = suite_datasets(results)
    for name, ref in refs.items():
        for m in results.suites[name].metrics.values():
            if m.value is None:
                continue
            out.append(
                EvalResult(
                    task_type=TASK,
                    task_name=name,
                    dataset_type=ref.type,
                    dataset_name=ref.name,
                    dataset_config=ref.config,
                    dataset_split=ref.split,
                    metric_type=m.name,
                    metric_name=m.full_name,
                    metric_value=float(m.value),
                )
            )
    return out


def card_data(
    *,
    name: str,
    base_model: str | None,
    tags: Sequence[str],
    datasets: Sequence[str],
    results: Results | None,
) -> ModelCardData:
    """The front matter of one variant's card."""
    evals = eval_results(results)
    extra = {"base_model_relation": "finetune"} if base_model else {}
    return ModelCardData(
        model_name=name,
        library_name="transformers",
        pipeline_tag="text-generation",
        license="gemma",
        base_model=base_model,
        datasets=list(datasets) or None,
        tags=list(tags),
        eval_results=evals or None,
        **extra,
    )
