"""The `reward` section of an RL config: reward models and rules, mixed into one align.rl RewardFn.

The reward model is align.reward's; its adapter to `RewardFn(prompt, prompt_mask, response,
response_mask) -> [B]` is align.rl.reward_model.ScoreModelReward. This module only reads the options,
loads each model once and weighs them.

    reward:
      models:                              # weighted sum, e.g. the chat variant's mixture
        - {path: runs/rm_helpful/export, weight: 1.0, name: helpfulness}
        - {path: runs/rm_harmless/export, weight: 0.5, name: harmlessness}
      rules:                               # rule rewards (tests, toy tasks, shaping, verifiable)
        - {kind: token_fraction, token: "a", weight: 1.0}
        - {kind: instructions, path: runs/instructions.jsonl}   # verifiable instructions (instructions.py;
                                             # no path: `align pipeline` writes the file and fills it in)
        - {kind: verifiable_qa, path: ".../selfaware/SelfAware.json", seed: 7, weight: 1.0}

verifiable_qa is align.rl.verifiable's: gold answer 1.0 > hedge on an unanswerable question 0.8 >
hedge on an answerable one -0.1 > wrong -1.0, on the train part of SelfAware's split with `seed`
(0 on any other prompt).
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Sequence
from pathlib import Path

from flax import nnx

from align.data import Tokenizer
from align.errors import InvalidInput
from align.model.heads import ScoreModel
from align.model.sharding import shard_model
from align.reward import load_reward_model
from align.rl.reward_model import ResponseEnding, ScoreModelReward
from align.rl.rewards import LengthReward, Mixture, RewardFn, TokenFraction
from align.rl.verifiable import VerifiableQAReward
from pipelines.stages.instructions import PIPELINE_PROMPTS, InstructionReward

RULES = ("token_fraction", "length", "instructions", "verifiable_qa")
# rules that score only the prompts of their own file (0 on any other prompt)
PROMPT_FILE_RULES = ("instructions", "verifiable_qa")


@dataclasses.dataclass(frozen=True)
class RewardModelSpec:
    path: str  # a reward model saved by `align rm` (its export directory)
    weight: float = 1.0
    name: str = ""  # e.g. helpfulness / harmlessness, for logs and model cards
    shift: float = 0.0  # r = (score - shift) / scale: centre and scale each model before mixing
    scale: float = 1.0
    close_turn: bool = True  # end responses as the RM's training rows ended (see ResponseEnding)


@dataclasses.dataclass(frozen=True)
class RuleSpec:
    kind: str  # token_fraction | length | instructions | verifiable_qa
    token: str = ""  # token_fraction: text that encodes to exactly one token
    target: int = 0  # length: preferred response length in tokens
    weight: float = 1.0
    path: str = ""  # instructions: pipelines.stages.instructions' prompt file; verifiable_qa: SelfAware.json
    seed: int = 0  # verifiable_qa: the split's seed (the SFT source's and the eval's heldout_seed)

    def __post_init__(self):
        if self.kind not in RULES:
            raise ValueError(f"reward rule kind={self.kind!r}: expected one of {RULES}")
        if self.kind == "verifiable_qa" and not self.path:
            raise ValueError("reward rule verifiable_qa needs path: the SelfAware.json file")


@dataclasses.dataclass(frozen=True)
class RewardOptions:
    models: tuple[RewardModelSpec, ...] = ()
    rules: tuple[RuleSpec, ...] = ()

    def describe(self) -> list[dict]:
        """[{name, weight, source}] for logs and model cards."""
        out = [
            {"name": m.name or _short_name(m.path), "weight": m.weight, "source": m.path} for m in self.models
        ]
        return out + [
            {"name": f"rule:{r.kind}", "weight": r.weight, "source": r.token or r.path or r.target}
            for r in self.rules
        ]


def _short_name(path: str) -> str:
    """runs/rm_helpful/export -> rm_helpful."""
    p = Path(path)
    return p.parent.name if p.name == "export" else p.name


@functools.lru_cache(maxsize=4)
def cached_reward_model(path: str, mesh=None) -> ScoreModel:
    """align.reward.load_reward_model(path) without its tokenizer, loaded once per path (and mesh) per
    process, sharded over `mesh` by the rules table (None: where it loads, as the policy's stages do).

    The reward and PPO's critic start from the same model, and a 270M model is a gigabyte. The module
    is shared, never trained in place (RL train states own copies of their weights).
    """
    model, _ = load_reward_model(path, with_tokenizer=False)
    return model if mesh is None else shard_model(model, mesh)


def single_token(tokenizer: Tokenizer, text: str) -> int:
    ids = tokenizer.encode(text)
    if len(ids) != 1:
        raise InvalidInput(
            f"reward rule token {text!r} encodes to {len(ids)} tokens {ids}; it must be exactly one"
        )
    return ids[0]


def build_reward(
    options: RewardOptions, tokenizer: Tokenizer, models: list | None = None, mesh=None
) -> RewardFn:
    """The weighted mixture of every reward model and rule of `options` (at least one).

    models: the loaded reward models, one per options.models entry (default: load them, on `mesh`).
    """
    fns, weights = [], []
    ending = ResponseEnding.of(tokenizer)
    if models is None:
        models = [cached_reward_model(spec.path, mesh) for spec in options.models]
    for spec, model in zip(options.models, models, strict=True):
        fns.append(
            ScoreModelReward(
                model, shift=spec.shift, scale=spec.scale, ending=ending if spec.close_turn else None
            )
        )
        weights.append(spec.weight)
    for rule in options.rules:
        if rule.kind == "token_fraction":
            fns.append(TokenFraction(single_token(tokenizer, rule.token), exclude=tokenizer.stop_ids))
        elif rule.kind == "instructions":
            fns.append(InstructionReward.from_file(rule.path, tokenizer))
        elif rule.kind == "verifiable_qa":
            fns.append(VerifiableQAReward(train_questions(rule.path, rule.seed), tokenizer))
        else:
            fns.append(LengthReward(rule.target))
        weights.append(rule.weight)
    if not fns:
        raise InvalidInput("reward: no reward model and no rule; set reward.models or reward.rules")
    return fns[0] if len(fns) == 1 and weights[0] == 1.0 else Mixture(fns, weights)


def train_questions(path: str, seed: int) -> list:
    """The SelfAware questions RL may reward: the train part of the split with `seed`."""
    from align.data.selfaware import read_selfaware, split_selfaware

    return split_selfaware(read_selfaware(path)[0], seed)[0]


def load_value_model(value_init: str, reward: RewardOptions, policy, mesh=None) -> ScoreModel:
    """PPO's critic: a copy of the first reward model ("reward", TRL's default) or of the policy's
    backbone with a fresh scalar head ("policy")."""
    if value_init == "reward":
        if not reward.models:
            raise InvalidInput("train.value_init='reward' needs a reward model (reward.models); use 'policy'")
        return cached_reward_model(reward.models[0].path, mesh)
    if value_init == "policy":
        return ScoreModel(nnx.clone(policy), rngs=nnx.Rngs(0))
    raise InvalidInput(f"train.value_init={value_init!r}: expected 'reward' or 'policy'")


def check_rules(rules: Sequence[RuleSpec], data) -> None:
    """InvalidInput unless every rule of PROMPT_FILE_RULES names a prompt file that the RL prompts
    (`data`, a PromptDataOptions) read: on any other prompt it scores 0, and would teach nothing (e.g.
    a variant whose own prompt mixture replaces the SelfAware prompts of a verifiable_qa rule)."""
    read = [s.path for s in data.mixture] if data.mixture else [data.path]
    read = {os.path.realpath(p) for p in read if p and p != PIPELINE_PROMPTS}
    for i, rule in enumerate(rules):
        if rule.kind not in PROMPT_FILE_RULES:
            continue
        if not rule.path:  # verifiable_qa refuses an empty path itself
            raise InvalidInput(
                f"reward.rules[{i}]: kind 'instructions' needs path, the prompt file (python -m "
                "pipelines.stages.instructions OUT); `align pipeline` writes one when path is left out"
            )
        if os.path.realpath(rule.path) not in read:
            raise InvalidInput(
                f"reward.rules[{i}]: the RL prompts (data.path / data.mixture) do not read its prompt file "
                f"{rule.path}: it would score 0 on every prompt"
            )
