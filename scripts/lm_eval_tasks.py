"""lm-evaluation-harness's own task objects for BBQ and TruthfulQA MC, reading the local data files.

Each task is built from the YAML that ships in the installed `lm_eval/tasks` (prompt, choices,
target, process_results, aggregation unchanged) with only the dataset swapped for a local file
through the `datasets` json builder, so nothing is downloaded. The BBQ files are read as they are
(lm-eval's `oskarvanderwal/bbq` has the same rows); TruthfulQA's `mc_task.json` ({answer: label})
is first written in the hub's layout ({"choices": [...], "labels": [...]}), in the file's order.
Used by tests/safety_evals/test_lm_eval_parity.py and scripts/compare_mc_lm_eval.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

BBQ_YAML = "bbq/bbq_multiple_choice.yaml"
TRUTHFULQA_YAML = {"mc1": "truthfulqa/truthfulqa_mc1.yaml", "mc2": "truthfulqa/truthfulqa_mc2.yaml"}


def load_config(rel: str) -> dict[str, Any]:
    """A task YAML of the installed lm_eval, its `include` resolved (the included file first)."""
    import lm_eval.tasks
    from lm_eval.tasks._yaml_loader import load_yaml

    path = Path(lm_eval.tasks.__file__).parent / rel
    config = load_yaml(path)
    if "include" in config:
        base = load_yaml(path.parent / config.pop("include"))
        config = {**base, **config}
    return config


def task(rel: str, split: str, files: Sequence[str | Path], cache_dir: str | Path):
    """lm-eval's ConfigurableTask for YAML `rel`, its `split` read from local JSON(L) `files`."""
    from lm_eval.api.task import ConfigurableTask

    config = load_config(rel)
    config.update(
        dataset_path="json",
        dataset_name=None,
        dataset_kwargs={"data_files": {split: [str(f) for f in files]}, "cache_dir": str(cache_dir)},
    )
    return ConfigurableTask(config=config)


def bbq_task(files: Sequence[str | Path], cache_dir: str | Path):
    return task(BBQ_YAML, "test", files, cache_dir)


def truthfulqa_rows(questions) -> list[dict[str, Any]]:
    """safety_evals.suites.truthfulqa_mc Questions in the hub's multiple_choice layout."""
    return [
        {
            "question": q.question,
            "mc1_targets": {"choices": list(q.mc1), "labels": list(q.mc1_labels)},
            "mc2_targets": {"choices": list(q.mc2), "labels": list(q.mc2_labels)},
        }
        for q in questions
    ]


def truthfulqa_tasks(questions, cache_dir: str | Path) -> dict[str, Any]:
    """{"mc1": task, "mc2": task} over `questions` (written to cache_dir/truthfulqa_mc.jsonl)."""
    path = Path(cache_dir) / "truthfulqa_mc.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for row in truthfulqa_rows(questions):
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return {k: task(rel, "validation", [path], cache_dir) for k, rel in TRUTHFULQA_YAML.items()}


def docs(t) -> list[dict[str, Any]]:
    """The task's evaluation documents after its process_docs, in data order."""
    return list(t.eval_docs)


def requests(t, doc: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(context, continuation) per choice, as lm-eval's multiple_choice requests are built
    (zero-shot: the context is doc_to_text; the continuation is target_delimiter + choice)."""
    context = t.doc_to_text(doc)
    return [(context, t.config.target_delimiter + c) for c in t.doc_to_choice(doc)]


def aggregate(t, per_doc: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """The task's aggregation over the per-document process_results dicts, as the evaluator does."""
    per_doc = list(per_doc)
    out = {}
    for name, fn in t.aggregation().items():
        if per_doc and name in per_doc[0]:
            out[name] = float(fn([d[name] for d in per_doc]))
    return out


def process(t, doc: Mapping[str, Any], lls: Sequence[float]) -> dict[str, Any]:
    """The task's process_results on these log-likelihoods (is_greedy False: no metric here reads it)."""
    return t.process_results(doc, [(float(x), False) for x in lls])


IFEVAL_YAML = "ifeval/ifeval.yaml"
IFEVAL_METRICS = (
    "prompt_level_strict_acc",
    "inst_level_strict_acc",
    "prompt_level_loose_acc",
    "inst_level_loose_acc",
)


def ifeval_sample(source: str, limit: int) -> tuple[list, int]:
    """The first `limit` IFEval prompts of `source` that the checkers can score here (without NLTK's
    punkt_tab, those that need it are left out), and how many were left out before the last one."""
    from safety_evals.suites import ifeval

    items, info = ifeval.load(source)
    kept, _ = ifeval.scorable(items, info, ifeval.IFEvalConfig(without_punkt=True))
    kept = kept[:limit]
    upto = items.index(kept[-1]) + 1 if kept else 0
    return kept, upto - len(kept)


def ifeval_task(items, cache_dir: str | Path) -> dict[str, Any]:
    """lm-eval's `ifeval` task config (prompt, generation settings, checkers, aggregation unchanged)
    over safety_evals.suites.ifeval Items, written in the hub's layout to cache_dir/ifeval.jsonl in
    their order: the documents are exactly the suite's prompts."""
    path = Path(cache_dir) / "ifeval.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for it in items:
            row = {"key": it.key, "prompt": it.prompt, "instruction_id_list": list(it.instruction_id_list)}
            f.write(json.dumps(row | {"kwargs": [dict(k) for k in it.kwargs]}, ensure_ascii=False) + "\n")
    config = load_config(IFEVAL_YAML)
    config.update(
        dataset_path="json",
        dataset_name=None,
        dataset_kwargs={"data_files": {"train": [str(path)]}, "cache_dir": str(cache_dir)},
    )
    return config


def run_ifeval(lm, items, cache_dir: str | Path, max_gen_toks: int) -> dict[str, Any]:
    """lm-eval's evaluator (`simple_evaluate`) on its ifeval task over `items` with the lm-eval model
    `lm`, `max_gen_toks` overriding the task's 1280 as `--gen_kwargs max_gen_toks=N` does; samples
    logged. Returns lm-eval's results dict."""
    import lm_eval

    return lm_eval.simple_evaluate(
        model=lm,
        tasks=[ifeval_task(items, cache_dir)],
        gen_kwargs={"max_gen_toks": max_gen_toks},
        log_samples=True,
        bootstrap_iters=0,
    )
