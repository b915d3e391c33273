"""The whole recipe in one command: `align pipeline configs/quickstart.yaml [key=value ...]`.

    sft  ->  reward model(s)  ->  [instruction prompts]  ->  PPO (shared, or one per variant)
         ->  safety evals of base, SFT and each variant  ->  comparison + release gate  ->  variants

Every stage writes into `output_dir/<stage>` and is skipped when its finished output is there
(summary.json, a results file, a model card), so re-running after a crash continues where it stopped,
and a stage that stopped mid-way resumes from its own checkpoints. Each stage's config is the
mapping its own command takes (`align sft`, `align rm`, `align rlhf`), with output_dir, the model to
start from and the reward models filled in here. With `rl_per_variant: true` each variant's RL run
takes its prompt mixture, system prompt, reward weights and reward rules (pipelines/release/variants.py).
An RL run that reads the verifiable-instruction prompt file without naming one (an `instructions` rule
without path, a mixture entry `pipeline:instructions`) gets output_dir/instructions/prompts.jsonl,
which the `instructions` stage writes first (pipelines/stages/instructions.py). The eval, comparison
and gate stages are pipelines/stages/evaluate.py and pipelines/stages/gate.py; `align pipeline` exits
1 when a variant fails its release gate. This module is the plan (the stages, their configs and
output paths); the loop that runs it is pipelines/stage_runner.py.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import logging
import sys
from pathlib import Path
from typing import Any

from align.errors import InvalidInput, MissingInput
from align.hub import ModelOptions, load_model
from align.training.rundir import SUMMARY, read_json
from align.config_aliases import build_stage
from align.config_io import load_config, to_dict
from pipelines.commands.config import device_count
from pipelines.stage_runner import Stage, print_report, run_stages
from pipelines.stages.evaluate import EvalStage
from pipelines.stages.gate import GateSection
from pipelines.stages.rewards import RewardModelSpec, RewardOptions
from pipelines.stages.training_data import check_eval_split
from reward_models.train import warn_if_heldout_overlaps

log = logging.getLogger("align.pipeline")


@dataclasses.dataclass(frozen=True)
class RewardModelStage:
    name: str  # e.g. helpfulness / harmlessness: what the variants' reward_weights refer to
    config: dict[str, Any] = dataclasses.field(default_factory=dict)  # `align rm` config keys
    weight: float = 1.0  # its weight in the shared PPO stage's reward


@dataclasses.dataclass(frozen=True)
class QuickstartConfig:
    output_dir: str = "runs/quickstart"
    model: ModelOptions = ModelOptions(spec="gemma3-270m")
    sft: dict[str, Any] = dataclasses.field(default_factory=dict)  # `align sft` config keys
    reward_models: tuple[RewardModelStage, ...] = ()
    rlhf: dict[str, Any] = dataclasses.field(default_factory=dict)  # `align rlhf` config keys
    rl_per_variant: bool = False  # one RL run per variant (its prompt mixture, reward weights, system prompt)
    variants: str = "configs/variants/gemma3_270m.yaml"
    eval: EvalStage = EvalStage()
    gate: GateSection = GateSection()  # release policy per variant, baseline the base model's results
    distill: dict[str, Any] = dataclasses.field(default_factory=dict)  # nano: pipelines/stages/distill.py


def _sub_config(cls, mapping: dict, source: str, **fixed):
    """A stage's config from its mapping (TRL names accepted), with the pipeline's `fixed` values."""
    return build_stage(cls, mapping, source, device_count, **fixed)


def _model(spec: str, base: ModelOptions) -> dict:
    return to_dict(dataclasses.replace(base, spec=spec, tokenizer=None))


class Pipeline:
    """The stage list of one quickstart config, and where every output goes."""

    def __init__(self, config: QuickstartConfig, source: str = "<quickstart>"):
        from pipelines.release.variants import load_variants
        from pipelines.stages.distill import with_nano

        self.config, self.source = config, source
        self.out = Path(config.output_dir)
        if not Path(config.variants).exists():
            # Paths in a quickstart config are read from the working directory (the shipped configs
            # name repo files): say so, rather than only that a file is missing.
            raise MissingInput(
                f"{source}: variants: file {config.variants} does not exist (relative paths "
                f"are read from the working directory, {Path.cwd()}: run from the "
                "repository root or pass variants=<absolute path>)"
            )
        self.variants = with_nano(load_variants(config.variants).variants, config.distill, source)
        self.rl_variants = [v for v in self.variants if v.source != "distill"]  # nano learns from one
        self.card_inputs: dict = {}  # the comparison and gate verdicts, for the cards (stages/gate.py)
        if not self.variants:
            raise InvalidInput(f"{config.variants}: no variants configured")

    def check(self) -> None:
        """Build every stage's config now, so that a typo fails before hours of training, not after."""
        sft = self.sft_config().data
        for rm in self.config.reward_models:
            warn_if_heldout_overlaps(sft, self.rm_config(rm).data, rm.name)
        trained = list(sft.sources)
        for rl in self.rl_configs():
            trained += [s.source() for s in rl.data.mixture]
        from pipelines.stages import evaluate, gate

        evaluate.check(self)
        gate.check(self)
        if self.config.eval.enabled:
            for target in evaluate.targets(self):
                o = evaluate.eval_options(self, target)
                check_eval_split(trained, o.suites, o.heldout_seed, f"{self.source}: eval")

    # ---- paths ------------------------------------------------------------------------------
    def sft_dir(self) -> Path:
        return self.out / "sft"

    def rm_dir(self, rm: RewardModelStage) -> Path:
        return self.out / f"rm_{rm.name}"

    def instructions_file(self) -> Path:
        from pipelines.stages.instructions import RUN_FILE

        return self.out / RUN_FILE

    def rl_dir(self, variant: str | None) -> Path:
        return self.out / ("rl" if variant is None or not self.config.rl_per_variant else f"rl_{variant}")

    def results_file(self, variant: str) -> Path:
        return self.out / "evals" / f"{variant}.json"

    def base_results(self, group: str) -> Path:
        return self.out / "evals" / f"base.{group}.json"

    def sft_results(self, group: str) -> Path:
        return self.out / "evals" / f"sft.{group}.json"

    def group_of(self, variant: str) -> str:
        from pipelines.stages.evaluate import group_of

        return group_of(self.variants, variant)

    def variant_dir(self, variant: str) -> Path:
        return self.out / "variants" / variant

    # ---- stage configs ----------------------------------------------------------------------
    def sft_config(self):
        from pipelines.stages.sft import SFTConfig

        return _sub_config(
            SFTConfig,
            self.config.sft,
            f"{self.source}: sft",
            output_dir=str(self.sft_dir()),
            model=to_dict(self.config.model),
        )

    def rm_config(self, rm: RewardModelStage):
        from reward_models.train import RMConfig

        return _sub_config(
            RMConfig,
            rm.config,
            f"{self.source}: reward_models.{rm.name}",
            output_dir=str(self.rm_dir(rm)),
            model=_model(str(self.sft_dir() / "export"), self.config.model),
        )

    def reward(self, variant=None) -> RewardOptions:
        """Every trained reward model, standardised by its held-out reward mean and std (so that the
        variants' weights mix comparable scales), plus the rlhf section's own rewards and, per variant,
        the variant's rules; an instructions rule without path reads the pipeline's prompt file."""
        from pipelines.stages.instructions import fill_rules

        models = tuple(self._reward_spec(rm) for rm in self.config.reward_models)
        base = _sub_config(RewardOptions, self.config.rlhf.get("reward", {}), f"{self.source}: rlhf.reward")
        reward = dataclasses.replace(base, models=models + base.models)
        if variant is not None and self.config.rl_per_variant:
            from pipelines.release.variants import weighted_reward

            try:
                reward = weighted_reward(reward, variant)
            except InvalidInput as e:
                raise InvalidInput(f"{self.config.variants}: {e} (rl_per_variant is true)") from None
        return dataclasses.replace(reward, rules=fill_rules(reward.rules, self.instructions_file()))

    def _reward_spec(self, rm: RewardModelStage) -> RewardModelSpec:
        stats = (read_json(self.rm_dir(rm) / SUMMARY) or {}).get("eval_after") or {}
        shift, scale = stats.get("reward_mean"), stats.get("reward_std")
        ok = isinstance(shift, float) and isinstance(scale, float) and scale > 0
        return RewardModelSpec(
            path=str(self.rm_dir(rm) / "export"),
            weight=rm.weight,
            name=rm.name,
            shift=shift if ok else 0.0,
            scale=scale if ok else 1.0,
        )

    def rl_runs(self) -> list:
        """The variant of each RL stage; [None]: one run shared by all variants."""
        return self.rl_variants if self.config.rl_per_variant else [None]

    def rl_configs(self) -> list:
        return [self.rlhf_config(v) for v in self.rl_runs()]

    def rlhf_config(self, variant=None):
        from pipelines.stages.instructions import fill_sources
        from pipelines.stages.rlhf import RLHFConfig

        mapping = dict(self.config.rlhf)
        config = _sub_config(
            RLHFConfig,
            {k: v for k, v in mapping.items() if k != "reward"},
            f"{self.source}: rlhf",
            output_dir=str(self.rl_dir(variant and variant.name)),
            model=_model(str(self.sft_dir() / "export"), self.config.model),
        )
        data, own = config.data, variant is not None and self.config.rl_per_variant
        if own:
            data = dataclasses.replace(
                data,
                mixture=variant.data or data.mixture,
                system_prompt=variant.system_prompt,
                system_handling=variant.system_handling,
            )
        data = dataclasses.replace(data, mixture=fill_sources(data.mixture, self.instructions_file()))
        reward = self.reward(variant)
        try:  # one replace: the reward's rules are checked against the prompts they score
            return dataclasses.replace(config, reward=reward, data=data)
        except InvalidInput as e:
            where = f"variant {variant.name} ({self.config.variants})" if own else "rlhf"
            raise InvalidInput(f"{self.source}: {where}: {e}") from None

    # ---- stages -----------------------------------------------------------------------------
    def stages(self) -> list[Stage]:
        from pipelines.stages import instructions
        from pipelines.stages.distill import pipeline_stages
        from pipelines.stages.rlhf import run_rlhf
        from pipelines.stages.sft import run_sft
        from reward_models.train import run_rm_training

        out = [Stage("sft", self.sft_dir() / "summary.json", lambda: run_sft(self.sft_config()), "SFT")]
        for rm in self.config.reward_models:
            run = lambda rm=rm: run_rm_training(self.rm_config(rm))
            out.append(Stage(f"rm:{rm.name}", self.rm_dir(rm) / "summary.json", run, "reward model"))
        out += instructions.pipeline_stages(self)  # the prompt file the RL runs read, when they need it
        for v in self.rl_runs():
            run = lambda v=v: run_rlhf(self.rlhf_config(v))
            algorithm = self.config.rlhf.get("algorithm", "ppo")
            name, done = "rl" if v is None else f"rl:{v.name}", self.rl_dir(v and v.name) / "summary.json"
            out.append(Stage(name, done, run, algorithm))
        out += pipeline_stages(self)  # the nano variant's weights, before the evals that read them
        out += self.eval_stages()
        for v in self.variants:
            export = lambda v=v: self.export(v)
            out.append(
                Stage(f"variant:{v.name}", self.variant_dir(v.name) / "README.md", export, "HF export + card")
            )
        return out

    def policy_dir(self, variant) -> Path:
        if variant.source == "distill":
            return self.out / "distill" / "export"
        return self.rl_dir(variant.name) / "export"

    def eval_stages(self) -> list[Stage]:
        """One stage per results document (pipelines/stages/evaluate.py), then comparison and gate."""
        from pipelines.stages import evaluate, gate

        if not self.config.eval.enabled:
            return []
        suites = f"safety evals ({self.config.eval.suites})"
        out = [
            Stage(f"eval:{t.file.stem}", t.file, lambda t=t: evaluate.run_eval(self, t), suites)
            for t in evaluate.targets(self)
        ]
        run = lambda: gate.compare_and_gate(self)  # noqa: E731
        what = "before/after comparison, release gate"
        return out + [Stage("compare", self.out / "gate" / "verdicts.json", run, what, always=True)]

    def eval_options(self, variant):
        """The eval stage's safety_evals.api.EvalOptions for one variant's policy."""
        from pipelines.stages import evaluate

        return evaluate.eval_options(self, self._target(variant.name))

    def run_eval(self, variant) -> dict | None:
        from pipelines.stages.evaluate import run_eval

        return run_eval(self, self._target(variant.name))

    def _target(self, variant: str):
        from pipelines.stages.evaluate import targets

        return next(t for t in targets(self) if t.recorded_variant == variant)

    def export(self, variant) -> None:
        from pipelines.release.model_card import stage_records
        from pipelines.release.variants import export_variant
        from safety_evals.review.documents import load_results

        model, tokenizer = load_model(ModelOptions(spec=str(self.policy_dir(variant))))
        results_file = self.results_file(variant.name)
        results = load_results(results_file) if results_file.exists() else None
        export_variant(
            model,
            tokenizer,
            variant,
            self.variant_dir(variant.name),
            base_model=self.config.model.spec,
            stages=stage_records(self, variant),
            results=results,
            reward_mixture=self.reward(variant).describe(),
            rl_applied=self.config.rl_per_variant,  # False: one RL run shared by all variants
            # only this variant's verdict: the card states its own release decision
            comparison=self.card_inputs.get("comparisons", {}).get(variant.name),
            verdicts={k: v for k, v in self.card_inputs.get("verdicts", {}).items() if k == variant.name},
        )


STAGE_SECTIONS = ("sft", "rlhf", "distill")  # free-form mappings, checked when their stage config is built


def load_quickstart(path: str, overrides=()) -> QuickstartConfig:
    """load_config, except that `sft.x.y=v` / `rlhf.x.y=v` overrides go into those stage mappings."""
    from align.config_io import ConfigError, expand_tree, parse_override

    def into_section(text: str) -> bool:
        key = text.split("=", 1)[0]
        return "." in key and key.split(".")[0] in STAGE_SECTIONS

    config = load_config(QuickstartConfig, path, [o for o in overrides if not into_section(o)])
    for text in filter(into_section, overrides):
        keys, value = parse_override(text)
        section = copy.deepcopy(getattr(config, keys[0]))
        node = section
        for key in keys[1:-1]:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {text!r}: {key} is a value, not a section")
        node[keys[-1]] = expand_tree(value)
        config = dataclasses.replace(config, **{keys[0]: section})
    return config


def run_pipeline(config: QuickstartConfig, source: str = "<quickstart>", *, stream=sys.stderr) -> dict:
    """Check the whole plan, then run every unfinished stage in order (pipelines/stage_runner.py);
    returns {stage: {"output", "status", "seconds"}}."""
    pipeline = Pipeline(config, source)
    pipeline.check()
    return run_stages(pipeline.stages(), pipeline.out, stream=stream)


# ---- CLI -------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="YAML file (configs/quickstart.yaml)")
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="dotted overrides, e.g. output_dir=runs/qs2 eval.limit=50",
    )


def run(args) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    config = load_quickstart(args.config, args.overrides)
    report = run_pipeline(config, args.config)
    print_report(report, Path(config.output_dir))
    failed = [name for name, v in report.get("gate", {}).items() if not v["passed"]]
    return 1 if failed else 0
