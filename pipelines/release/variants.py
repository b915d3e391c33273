"""Release variants (`chat`, `developer`): how they differ, and their export as Hugging Face directories.

A variants file (configs/variants/*.yaml) names each variant and everything that sets it apart:

    variants:
      - name: chat
        description: ...
        system_prompt: "You are a helpful, honest and harmless assistant."   # injected when none is given
        system_handling: fold          # fold: Gemma's way, into the first user turn | drop: ignored
        chat_template: gemma           # gemma | none (a plain completion model)
        data:                          # prompt mixture of the variant's RL stage
          - {path: .../helpful-base/test.jsonl.gz, weight: 0.7}
          - {path: .../harmless-base/test.jsonl.gz, weight: 0.3}
        reward_weights: {helpfulness: 1.0, harmlessness: 1.0}   # by reward-model name
        reward_rules:                  # added to the variant's RL reward, as rlhf.reward.rules reads them
          - {kind: instructions, weight: 1.0}   # no path: the pipeline's prompt file (stages/instructions.py)
        generation: {temperature: 0.7, top_p: 0.95, top_k: 64, max_new_tokens: 256}
        dtype: bfloat16                # exported weights: float32 (default) | bfloat16 (half the size)

The RL settings (data, system prompt, reward_weights, reward_rules) are applied when the pipeline runs
one RL stage per variant (`rl_per_variant: true`); with one shared run the card shows them as
configured, not applied.

`export_variant` writes model.safetensors + config.json (align.model.hf_io.save_hf_dir), the tokenizer
with the variant's chat template, generation_config.json from its sampling defaults, and README.md
(pipelines.release.model_card) with its training record and the eval results of that variant.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from align.data.testing import GEMMA3_CHAT_TEMPLATE
from align.errors import InvalidInput
from align.config_io import load_config
from align.model.hf_io import EXPORT_DTYPES
from pipelines.release.model_card import StageRecord, render_card
from pipelines.stages.rewards import RewardOptions, RuleSpec
from pipelines.stages.rl_data import PromptSource

SYSTEM_HANDLING = ("fold", "drop")
NOT_APPLIED = "configured, not applied: one RL run shared by all variants"
SHARED_RL_CAVEAT = (
    "These weights come from one RL run shared by all variants (`rl_per_variant: false`): what the "
    "description says of this variant's RL prompts and reward was configured but not applied. The "
    "reward that was used is listed under Training."
)
TEMPLATES = ("gemma", "none")


@dataclasses.dataclass(frozen=True)
class GenerationDefaults:
    temperature: float = 1.0  # 0: greedy
    top_k: int | None = 64
    top_p: float | None = 0.95
    max_new_tokens: int = 256


@dataclasses.dataclass(frozen=True)
class VariantSpec:
    name: str
    description: str = ""
    source: str = "ppo"  # the pipeline stage (or a model directory) the variant's weights come from
    system_prompt: str | None = None
    system_handling: str = "fold"
    chat_template: str = "gemma"
    data: tuple[PromptSource, ...] = ()  # the RL prompt mixture (data.mixture of its RL stage)
    reward_weights: dict[str, float] = dataclasses.field(default_factory=dict)
    reward_rules: tuple[RuleSpec, ...] = ()  # rule rewards beside the reward models (rlhf.reward.rules)
    generation: GenerationDefaults = GenerationDefaults()
    dtype: str = "float32"  # of the exported safetensors (align.model.hf_io.EXPORT_DTYPES)

    def __post_init__(self):
        if self.dtype not in EXPORT_DTYPES:
            raise ValueError(
                f"variant {self.name!r}: dtype={self.dtype!r}, expected one of {sorted(EXPORT_DTYPES)}"
            )
        if self.system_handling not in SYSTEM_HANDLING:
            raise ValueError(
                f"variant {self.name!r}: system_handling={self.system_handling!r}, expected one of "
                f"{SYSTEM_HANDLING}"
            )
        if self.chat_template not in TEMPLATES:
            raise ValueError(
                f"variant {self.name!r}: chat_template={self.chat_template!r}, expected one of {TEMPLATES}"
            )
        if self.system_prompt and self.system_handling == "drop":
            raise ValueError(
                f"variant {self.name!r}: a system_prompt with system_handling='drop' is never used"
            )

    def differences(self, rl_applied: bool = True) -> dict[str, str]:
        """The settings that set this variant apart, for its model card.

        rl_applied=False: the weights come from an RL run shared by all variants, so the variant's own
        prompt mixture and reward weights are shown as configured but marked as not applied.
        """
        marked = "" if rl_applied else f" ({NOT_APPLIED})"
        mixture = ", ".join(f"{Path(d.path).parent.name or d.path} x{d.weight:g}" for d in self.data)
        rewards = ", ".join(f"{k} x{v:g}" for k, v in self.reward_weights.items())
        rules = ", ".join(f"{r.kind} x{r.weight:g}" for r in self.reward_rules)
        system = {"fold": "folded into the first user turn (Gemma)", "drop": "ignored"}[self.system_handling]
        return {
            "chat template": self.chat_template,
            "system instruction": system,
            "default system prompt": self.system_prompt or "none",
            "RL prompt mixture": mixture + marked if mixture else "n/a",
            "reward weights": rewards + marked if rewards else "n/a",
            "reward rules": rules + marked if rules else "n/a",
        }


@dataclasses.dataclass(frozen=True)
class VariantsConfig:
    variants: tuple[VariantSpec, ...] = ()

    def __post_init__(self):
        names = [v.name for v in self.variants]
        if len(set(names)) != len(names):
            raise ValueError(f"variant names must be unique, got {names}")

    def get(self, name: str) -> VariantSpec:
        for v in self.variants:
            if v.name == name:
                return v
        raise KeyError(f"no variant {name!r}; configured: {[v.name for v in self.variants]}")


def load_variants(path: str | Path, overrides: Sequence[str] = ()) -> VariantsConfig:
    return load_config(VariantsConfig, path, overrides)


def chat_template(spec: VariantSpec) -> str | None:
    """The variant's jinja chat template: Gemma 3's, with its system-message policy put in front."""
    if spec.chat_template == "none":
        return None
    if spec.system_handling == "drop":
        prefix = (
            "{%- if messages[0]['role'] == 'system' -%}{%- set messages = messages[1:] -%}{%- endif -%}\n"
        )
    elif spec.system_prompt:
        default = json.dumps(spec.system_prompt)  # a valid jinja string literal
        prefix = (
            "{%- if messages[0]['role'] != 'system' -%}{%- set messages = [{'role': 'system', 'content': "
            + default
            + "}] + messages -%}{%- endif -%}\n"
        )
    else:
        prefix = ""
    return prefix + GEMMA3_CHAT_TEMPLATE


def generation_config(spec: VariantSpec, tokenizer) -> dict:
    """generation_config.json: the variant's sampling defaults and its stop ids (<eos>, <end_of_turn>)."""
    g = spec.generation
    out = {
        "bos_token_id": tokenizer.bos_id,
        "eos_token_id": list(tokenizer.stop_ids),
        "pad_token_id": tokenizer.pad_id,
        "max_new_tokens": g.max_new_tokens,
        "do_sample": g.temperature > 0,
    }
    if g.temperature > 0:
        out["temperature"] = g.temperature
        # Written even when off: transformers fills an absent top_k with 50; 0 and 1.0 disable the filters.
        out["top_k"] = g.top_k if g.top_k is not None else 0
        out["top_p"] = g.top_p if g.top_p is not None else 1.0
    return out


def weighted_reward(reward: RewardOptions, spec: VariantSpec) -> RewardOptions:
    """`reward` with each reward model's weight replaced by the variant's weight for its name, and the
    variant's reward rules added to its own."""
    names = [m.name for m in reward.models]
    unknown = sorted(set(spec.reward_weights) - set(names))
    if unknown:
        raise InvalidInput(
            f"variant {spec.name!r}: reward_weights names {unknown} match no reward model "
            f"(reward models: {names}); add them to the pipeline's reward_models or drop them from the "
            "variant's reward_weights"
        )
    models = tuple(
        dataclasses.replace(m, weight=spec.reward_weights.get(m.name, m.weight)) for m in reward.models
    )
    return dataclasses.replace(reward, models=models, rules=reward.rules + spec.reward_rules)


def export_variant(
    model,
    tokenizer,
    spec: VariantSpec,
    out_dir: str | Path,
    *,
    base_model: str,
    stages: Sequence[StageRecord] = (),
    results=None,
    reward_mixture: Sequence[Mapping] = (),
    rl_applied: bool = True,
    comparison: Mapping | None = None,
    verdicts: Mapping[str, Mapping] | None = None,
) -> Path:
    """Write the variant as a Hugging Face directory with its model card; returns the directory.

    model: an align Decoder (LoRA adapters merged first); tokenizer: align.data.Tokenizer;
    results: a safety_evals.review.documents.Results of this variant, or None;
    rl_applied: False when the weights come from one RL run shared by all variants (the card then says
    that the variant's own RL prompt mixture and reward weights were not used);
    comparison / verdicts: the run's before/after document and gate verdicts (model_card.render_card).
    """
    from align import distributed
    from align.model.hf_io import save_hf_dir
    from align.training.lora import LoRADecoder, merge_lora

    if isinstance(model, LoRADecoder):
        model = merge_lora(model)
    out = Path(out_dir)
    hf = tokenizer.hf
    previous = hf.chat_template
    hf.chat_template = chat_template(spec)
    try:
        save_hf_dir(
            model, out, tokenizer=hf, generation_config=generation_config(spec, tokenizer), dtype=spec.dtype
        )
    finally:
        hf.chat_template = previous
    card = render_card(
        name=f"{Path(base_model).name}-{spec.name}",
        variant=spec.name,
        description=spec.description,
        base_model=base_model,
        differences=spec.differences(rl_applied),
        caveat=None if rl_applied else SHARED_RL_CAVEAT,
        generation=generation_config(spec, tokenizer),
        stages=stages,
        results=results,
        reward_mixture=reward_mixture,
        comparison=comparison,
        verdicts=verdicts,
        export_dtype=spec.dtype,
    )
    if distributed.is_primary():  # save_hf_dir ran on every process (it gathers the weights)
        (out / "README.md").write_text(card)
    distributed.barrier("model-card")
    return out
