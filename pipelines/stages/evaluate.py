"""The pipeline's eval stage: the starting model, the SFT model and every variant on the same suites.

Each results document is one `safety_evals.api.run_eval` call (the one eval path), written to
`output_dir/evals/` and skipped on a rerun when its file exists. Every model is evaluated with the
same suites, limit, seed and judges (the `eval` section), so any two documents compare metric by metric.

Prompting (chat template and system prompt) is part of a variant, and generation suites read prompts
through it, so a variant is compared with the base and SFT models prompted the same way. Variants that
share their prompting form one group, named after its first variant; base and SFT are evaluated once
per group:

    evals/base.<group>.json   the starting model (config `model`)       label "base"
    evals/sft.<group>.json    the SFT export                             label "sft"
    evals/<variant>.json      the variant's RL policy, as it is exported label "<variant>"

A variant is its RL policy under its prompting, so the RL policy is not evaluated a second time.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

from align import distributed
from align.config_io import build
from align.hub import ModelOptions

log = logging.getLogger("align.pipeline")


@dataclasses.dataclass(frozen=True)
class EvalStage:
    enabled: bool = True
    suites: str = "crows_pairs,stereoset"
    limit: int = 16  # examples per suite: a smoke-sized sample with wide intervals
    batch_size: int = 8
    # other safety_evals.api.EvalOptions fields (judge, data, toxicity, seed, ...); the model, variant,
    # template, system prompt, suites, limit and batch size come from the stage
    options: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class EvalTarget:
    """One results document the stage writes."""

    label: str  # base | sft | <variant>
    group: str  # the prompting group (its first variant's name)
    model: str  # what the eval loads: a spec or an export directory
    variant: Any  # the VariantSpec whose prompting the prompts go through
    file: Path
    recorded_variant: str | None  # model.variant in the document (None for base and SFT)


def prompting_groups(variants) -> dict[str, list]:
    """{group name: its variants}: variants with the same chat template and system prompt share one."""
    groups: dict[tuple, list] = {}
    for v in variants:
        groups.setdefault((v.chat_template, v.system_prompt), []).append(v)
    return {members[0].name: members for members in groups.values()}


def group_of(variants, name: str) -> str:
    return next(g for g, members in prompting_groups(variants).items() if name in [m.name for m in members])


def targets(pipeline) -> list[EvalTarget]:
    """Every results document of the eval stage, base and SFT first."""
    evals, out = pipeline.out / "evals", []
    for group, members in prompting_groups(pipeline.variants).items():
        lead = members[0]
        out.append(
            EvalTarget("base", group, pipeline.config.model.spec, lead, evals / f"base.{group}.json", None)
        )
        sft = str(pipeline.sft_dir() / "export")
        out.append(EvalTarget("sft", group, sft, lead, evals / f"sft.{group}.json", None))
    for v in pipeline.variants:
        model = str(pipeline.policy_dir(v))
        out.append(
            EvalTarget(
                v.name, group_of(pipeline.variants, v.name), model, v, evals / f"{v.name}.json", v.name
            )
        )
    return out


def check(pipeline) -> None:
    """Build every target's options now: a typo in the eval section fails before any training."""
    if pipeline.config.eval.enabled:
        for target in targets(pipeline):
            eval_options(pipeline, target)


def eval_options(pipeline, target: EvalTarget):
    """The safety_evals.api.EvalOptions of one target; a ConfigError naming the config for a bad eval
    section. Generation suites see prompts as the exported variant would: its chat template and system
    prompt."""
    from safety_evals import api

    e = pipeline.config.eval
    fixed = {
        "model": target.model,
        "variant": target.recorded_variant,
        "chat_template": target.variant.chat_template,
        "system_prompt": target.variant.system_prompt,
        "suites": api.parse_suites(e.suites),
        "limit": e.limit,
        "batch_size": e.batch_size,
    }
    return build(api.EvalOptions, {**e.options, **fixed}, source=f"{pipeline.source}: eval")


def run_eval(pipeline, target: EvalTarget) -> dict | None:
    """Evaluate one target and write its document; a stop record when every suite failed."""
    from safety_evals import api, results

    options = eval_options(pipeline, target)
    lm = _base_lm(pipeline, options) if target.label == "base" else None
    doc = api.run_eval(options) if lm is None else api.run_eval(options, lm=lm)
    if distributed.is_primary():  # every process evaluated; one writes
        results.write_atomic(target.file, doc)
    distributed.barrier("eval-results")
    if all(s["status"] == "ok" for s in doc["suites"].values()):
        return None
    return failed_suites(target.file)


def _base_lm(pipeline, options):
    """The starting model exactly as the SFT stage loads it, where its spec alone does not say how (a
    preset's seed, a separate tokenizer, other dtypes); None: run_eval loads the spec itself."""
    model = pipeline.config.model
    if model == ModelOptions(spec=model.spec, remat=model.remat, attention=model.attention):
        return None
    from align.hub import load_model
    from safety_evals.lm.jax_lm import JaxLM

    decoder, tokenizer = load_model(model)
    return JaxLM(decoder, tokenizer, name=model.spec, batch_size=options.batch_size)


def failed_suites(path: Path) -> dict | None:
    """Some suites failed: the card shows them as failed. All failed (e.g. no data for any suite): the
    document is moved aside so that the stage counts as unfinished and a rerun retries it."""
    suites = json.loads(path.read_text())["suites"]
    failed = [name for name, s in suites.items() if s["status"] != "ok"]
    if len(failed) < len(suites):
        log.warning("eval suites %s failed: see %s", ", ".join(failed), path)
        return None
    aside = path.with_suffix(".failed.json")
    path.replace(aside)
    first = ((suites[failed[0]].get("error") or "").splitlines() or ["no error recorded"])[0]
    return {"stopped": f"every eval suite failed ({first}); see {aside}"}
