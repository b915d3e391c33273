"""Model cards: README.md for an exported variant, from its training record and its eval results.

The card is Hugging Face flavoured Markdown (YAML front matter + sections). Evaluation numbers come
from an `align.eval_results/v1` document (docs/results_schema.md), read with the consumer-side loader
of safety_evals, so the card shows exactly what `align eval` measured for this variant: value, 95%
interval, n, and which direction is better. Failed suites are listed as failed, never left out.
Everything taken from data files (dataset names, error messages) is escaped for Markdown tables.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from align.training.rundir import SUMMARY, read_json
from pipelines.release.card_metadata import card_data, suite_datasets
from pipelines.release.card_sections import before_after_section, gate_section, provenance_section
from pipelines.release.card_sections import cell as _cell
from pipelines.release.card_sections import num as _num
from pipelines.release.datasets import describe_all, hub_ids
from pipelines.release.provenance import provenance
from safety_evals.review.documents import Results
from safety_evals.review.release_docs import as_comparison, as_verdict


@dataclasses.dataclass(frozen=True)
class StageRecord:
    """One training stage as the card reports it (pipelines.pipeline.Stage is a stage to run)."""

    name: str  # sft | rm | ppo | grpo | dpo
    data: str  # where its data came from
    steps: int | None = None  # optimizer steps (or RL iterations, see `unit`)
    unit: str = "steps"
    notes: str = ""  # e.g. "held-out reward 0.12 -> 0.31"


def rm_notes(summary: Mapping) -> str:
    """A reward-model stage's card note from its summary.json: held-out pair accuracy beside the
    length-only baseline, the paired difference and the accuracy on length-matched pairs (95% intervals),
    so a reader can tell a reward model from a length counter (reward_models.evaluate.length_report)."""

    def ci(d: Mapping, key: str = "accuracy") -> str:
        return f"{d[key]:.3f} [{d['ci_low']:.3f}, {d['ci_high']:.3f}]"

    after = summary.get("eval_after") or {}
    if not isinstance(after.get("accuracy"), (int, float)):
        return ""
    if not isinstance((after.get("rm_minus_length") or {}).get("mean"), (int, float)):
        return f"held-out pair accuracy {after['accuracy']:.3f}"
    note = (
        f"held-out pair accuracy {ci(after)} over {after['n']} pairs; longer-answer-wins baseline "
        f"{ci(after['length'])}; difference {ci(after['rm_minus_length'], 'mean')}"
    )
    matched = after.get("length_matched") or {}
    if isinstance(matched.get("accuracy"), (int, float)):
        note += f"; on {matched['n']} length-matched pairs {ci(matched)}"
    return note


def rl_notes(summary: Mapping) -> str:
    """An RL stage's card note: held-out reward before -> after, the paired change with its 95% interval
    (so a reader can tell a change from sampling noise), and the KL to the starting policy."""
    before, after = summary.get("eval_before") or {}, summary.get("eval_after") or {}
    if "reward/mean" not in before or "reward/mean" not in after:
        return ""
    note = f"held-out reward {before['reward/mean']:.3f} -> {after['reward/mean']:.3f}"
    gain = summary.get("reward_gain") or {}
    if all(isinstance(gain.get(k), (int, float)) for k in ("mean", "ci_low", "ci_high", "n")):
        note += (
            f" over {gain['n']} prompts (paired change {gain['mean']:+.3f}, 95% interval "
            f"[{gain['ci_low']:.3f}, {gain['ci_high']:.3f}])"
        )
    # k1 estimate (mean of log-ratio sums over sampled responses): near zero it can come out negative
    kl = after.get("kl/ref", float("nan"))
    return f"{note}; sampled KL to the starting policy {kl:.2f} nats"


def stage_records(pipeline, variant) -> list[StageRecord]:
    """The training record of `variant` from a pipeline's run directories (pipelines.pipeline.Pipeline):
    SFT, each reward model, then the RL run the variant's policy came from."""

    if variant.source == "distill":  # the teacher variant's record, then the distillation
        from pipelines.stages.distill import stage_records as distill_records

        return distill_records(pipeline)

    def summary(path) -> dict:
        return read_json(path / SUMMARY) or {}

    config = pipeline.config
    sft = summary(pipeline.sft_dir())
    records = [StageRecord("sft", str(config.sft.get("data", {}).get("path", "")), sft.get("step"))]
    for rm in config.reward_models:
        s = summary(pipeline.rm_dir(rm))
        data = str(rm.config.get("data", {}).get("path", ""))
        records.append(StageRecord(f"rm ({rm.name})", data, s.get("step"), notes=rm_notes(s)))
    rl = summary(pipeline.rl_dir(variant.name))
    rl_config = pipeline.rlhf_config(variant)
    data = ", ".join(s.path for s in rl_config.data.mixture) or rl_config.data.path
    algorithm = rl.get("algorithm", rl_config.algorithm)
    records.append(StageRecord(algorithm, data, rl.get("iterations"), "iterations", rl_notes(rl)))
    return records


def _direction(higher_is_better: bool | None, target: float | None) -> str:
    if higher_is_better is None:
        return f"closer to {_num(target)}" if target is not None else "n/a"
    return "higher" if higher_is_better else "lower"


def _prompting(config: dict) -> str:
    """How the generation suites' prompts were wrapped (absent from documents before it was recorded)."""
    template = config.get("chat_template")
    if template is None:
        return ""
    if template == "none":
        return " Generation prompts were raw text (no chat template)."
    system = config.get("system_prompt")
    with_system = f' with the system prompt "{_cell(system)}"' if system else " with no system prompt"
    return f" Generation prompts were one user turn of the {template} chat template{with_system}."


def eval_section(results: Results | None, variant: str) -> list[str]:
    """The evaluation table of one results document (top-level metrics; breakdowns are in the JSON)."""
    if results is None:
        return ["## Evaluation", "", "No safety evaluation was run for this variant.", ""]
    if results.model.variant not in (None, variant):
        raise ValueError(
            f"{results.source}: results are for variant {results.model.variant!r}, not {variant!r}"
        )
    limit = results.config.get("limit")
    out = [
        "## Evaluation",
        "",
        f"`align eval` run `{_cell(results.run_id)}` ({results.created:%Y-%m-%d %H:%M} UTC)"
        + (f", at most {limit} examples per suite" if limit else "")
        + ". "
        "Intervals are 95% intervals over examples: the percentile bootstrap, or for a proportion "
        "(every example scored 0 or 1) the Wilson score interval, marked (Wilson)."
        + _prompting(results.config),
        "",
        "| suite | metric | value | 95% interval | n | better |",
        "|---|---|---|---|---|---|",
    ]
    for suite in results.suites.values():
        if not suite.ok:
            error = (suite.error or "").splitlines()[0] if suite.error else ""
            out.append(f"| {_cell(suite.name)} | **failed** | {_cell(error)[:120]} | | | |")
            continue
        for m in suite.metrics.values():
            if "/" in m.name:
                continue
            ci = m.interval()
            interval = f"[{_num(ci[0])}, {_num(ci[1])}]" if ci else "n/a"
            if ci and m.ci_method == "wilson":
                interval += " (Wilson)"
            out.append(
                f"| {_cell(suite.name)} | {_cell(m.name)} | {_num(m.value)} | {interval} | "
                f"{m.n if m.n is not None else 'n/a'} | {_direction(m.higher_is_better, m.target)} |"
            )
    data = [
        f"- {_cell(suite)}: {_cell(ref)}" + (f" (`{_cell(ref.hub_id)}`)" if ref.hub_id else "")
        for suite, ref in suite_datasets(results).items()
    ]
    return out + [
        "",
        (
            "Small `--limit` runs give wide intervals: compare variants by their intervals, not "
            "by the point values."
        ),
        "",
        *(["Evaluation data (dataset, subset, split):", "", *data, ""] if data else []),
    ]


def training_section(stages: Sequence[StageRecord], reward_mixture: Sequence[Mapping] = ()) -> list[str]:
    """The training record; data named by dataset and split (datasets.describe), never by a path."""
    out = ["## Training", "", "| stage | data | length | notes |", "|---|---|---|---|"]
    for s in stages:
        length = f"{s.steps} {s.unit}" if s.steps is not None else "n/a"
        data = "; ".join(str(r) for r in describe_all(s.data)) or "n/a"
        out.append(f"| {_cell(s.name)} | {_cell(data)} | {length} | {_cell(s.notes)} |")
    if reward_mixture:
        out += ["", "Reward used in RL (weighted sum):", ""]
        out += [
            f"- {_cell(r['name'])}: weight {r['weight']} ({_cell(_where(r.get('source', '')))})"
            for r in reward_mixture
        ]
    return out + [""]


USAGE_AND_LIMITATIONS = """## Usage

```python
from transformers import AutoModelForCausalLM, AutoTokenizer
tok = AutoTokenizer.from_pretrained(PATH)
model = AutoModelForCausalLM.from_pretrained(PATH)
ids = tok.apply_chat_template([{"role": "user", "content": "Hello!"}], add_generation_prompt=True,
                              return_tensors="pt", return_dict=True)
out = model.generate(**ids)  # sampling defaults come from generation_config.json
print(tok.decode(out[0, ids['input_ids'].shape[1]:], skip_special_tokens=True))
```

## Limitations

A small model briefly post-trained on CPU-sized data: it makes factual errors, can produce harmful or
biased text, and its safety numbers above come from small samples. Evaluate it for your own use before
deploying it.
""".splitlines()


def render_card(
    *,
    name: str,
    variant: str,
    description: str,
    base_model: str,
    differences: Mapping[str, Any],
    generation: Mapping[str, Any],
    stages: Sequence[StageRecord],
    results: Results | None,
    reward_mixture: Sequence[Mapping] = (),
    caveat: str | None = None,
    created: dt.datetime | None = None,
    comparison: Mapping | None = None,
    verdicts: Mapping[str, Mapping] | None = None,
    export_dtype: str = "float32",
) -> str:
    """The README.md text of one exported variant; `caveat` is quoted under the description.

    base_model: the align.hub model spec the pipeline started from (the card names its hub id);
    comparison: an `align.comparison/v1` document (the before/after table); verdicts: variant ->
    its gate verdict.json. Both are shown first when given: they are the release's answer.
    """
    created = created or dt.datetime.now(dt.timezone.utc)
    prov = provenance(base_model)
    meta = card_data(
        name=name,
        base_model=prov.base_model,
        tags=["gemma", "align", "rlhf", f"variant-{variant}"],
        datasets=hub_ids(r for s in stages for r in describe_all(s.data)),
        results=results,
    )
    lines = [
        f"---\n{meta.to_yaml()}\n---",
        "",
        f"# {_cell(name)}",
        "",
        _cell(description),
        "",
        *([f"> **Note:** {caveat}", ""] if caveat else []),
        f"Variant **{_cell(variant)}** of a post-trained `{_cell(prov.base_model or prov.source_file)}`, "
        f"exported by `align` on {created:%Y-%m-%d}.",
        "",
    ]
    if verdicts:  # {}: no gate ran for this variant
        lines += gate_section({k: as_verdict(v) for k, v in verdicts.items()}, variant)
    if comparison is not None:
        lines += before_after_section(as_comparison(comparison))
    lines += differences_section(differences, generation)
    lines += training_section(stages, reward_mixture)
    lines += eval_section(results, variant)
    lines += provenance_section(prov, export_dtype)
    return _checked("\n".join(lines + USAGE_AND_LIMITATIONS))


def differences_section(differences: Mapping[str, Any], generation: Mapping[str, Any]) -> list[str]:
    """What sets the variant apart, and its default sampling (generation_config.json)."""
    out = ["## How this variant differs", "", "| setting | value |", "|---|---|"]
    out += [f"| {_cell(k)} | {_cell(v)} |" for k, v in differences.items()]
    return out + [
        "",
        "Default generation settings (`generation_config.json`):",
        "",
        "```json",
        _json(generation),
        "```",
        "",
    ]


def _checked(text: str) -> str:
    """The card as huggingface_hub parses it (a front matter it cannot read raises here, not on push)."""
    from huggingface_hub import ModelCard

    return str(ModelCard(text, ignore_metadata_errors=False))


def _json(obj: Mapping) -> str:
    import json

    return json.dumps(dict(obj), indent=2)


def _where(paths: str) -> str:
    """Comma-separated model paths (reward models) as a published card may name them: relative to the
    run or to ~, or the last two parts of an absolute path, never the layout of the training machine."""
    from align.data_dir import portable_path

    def one(p: str) -> str:
        text = portable_path(p.strip()) or ""
        return ".../" + "/".join(Path(text).parts[-2:]) if Path(text).is_absolute() else text

    return ", ".join(one(p) for p in str(paths).split(",")) if paths else ""
