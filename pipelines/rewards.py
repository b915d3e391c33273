"""Reward functions for RL pipelines: reward models (and their mixtures) adapted to align.rl's RewardFn.

align never imports reward_models, so the adapter from a trained reward model to
`RewardFn(prompt, prompt_mask, response, response_mask) -> [B]` lives here, in the composition root.

    reward:
      models:                              # weighted sum, e.g. the chat variant's mixture
        - {path: runs/rm_helpful/export, weight: 1.0, name: helpfulness}
        - {path: runs/rm_harmless/export, weight: 0.5, name: harmlessness}
      rules:                               # rule rewards (tests, toy tasks, shaping)
        - {kind: token_fraction, token: "a", weight: 1.0}
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import jax
import jax.numpy as jnp
from flax import nnx

from align.data import Tokenizer
from align.errors import InvalidInput
from align.model.heads import ScoreModel
from align.rl.rewards import LengthReward, Mixture, RewardFn, TokenFraction
from align.rl.rollout import join_prompt_response

RULES = ("token_fraction", "length")


@dataclasses.dataclass(frozen=True)
class RewardModelSpec:
    path: str  # a reward model saved by `align rm` (its export directory)
    weight: float = 1.0
    name: str = ""  # e.g. helpfulness / harmlessness, for logs and model cards
    shift: float = 0.0  # r = (score - shift) / scale: centre and scale each model before mixing
    scale: float = 1.0
    close_turn: bool = True  # score responses as finished chat turns (see close_turn)


@dataclasses.dataclass(frozen=True)
class RuleSpec:
    kind: str  # token_fraction | length
    token: str = ""  # token_fraction: text that encodes to exactly one token
    target: int = 0  # length: preferred response length in tokens
    weight: float = 1.0

    def __post_init__(self):
        if self.kind not in RULES:
            raise ValueError(f"reward rule kind={self.kind!r}: expected one of {RULES}")


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
            {"name": f"rule:{r.kind}", "weight": r.weight, "source": r.token or r.target} for r in self.rules
        ]


def _short_name(path: str) -> str:
    """runs/rm_helpful/export -> rm_helpful."""
    p = Path(path)
    return p.parent.name if p.name == "export" else p.name


@functools.partial(jax.jit, static_argnames=("graphdef",))
def _score(graphdef, state, tokens, positions, segment_ids):
    return nnx.merge(graphdef, state)(tokens, positions, segment_ids)


def close_turn(response, response_mask, stop_ids, suffix) -> tuple[jax.Array, jax.Array]:
    """(tokens [B, M + S], lengths [B]): each response without its stop token, then `suffix` [S].

    A chat reward model was trained on assistant turns that end with "<end_of_turn>\n" and reads its
    reward at that last token; scoring a sampled response the same way (a truncated one as if it
    had ended there) keeps the reward model on its training distribution.
    """
    M = response.shape[1]
    n = jnp.sum(response_mask > 0, axis=-1).astype(jnp.int32)
    last = jnp.take_along_axis(response, jnp.maximum(n - 1, 0)[:, None], axis=1)[:, 0]
    ends_with_stop = (n > 0) & jnp.any(last[:, None] == jnp.asarray(stop_ids)[None, :], axis=-1)
    content = n - ends_with_stop.astype(jnp.int32)  # [B]
    S = len(suffix)
    col = jnp.arange(M + S)[None, :]  # [1, M + S]
    padded = jnp.pad(response, ((0, 0), (0, S)))
    from_suffix = jnp.asarray(suffix, jnp.int32)[jnp.clip(col - content[:, None], 0, S - 1)]
    tokens = jnp.where(
        col < content[:, None], padded, jnp.where(col < (content + S)[:, None], from_suffix, 0)
    )
    return tokens.astype(jnp.int32), content + S


class ScoreModelReward:
    """RewardFn from a reward model: its score of prompt + response (one jit per shape).

    With `turn_end` (the token ids of "<end_of_turn>\n"), the response is closed as a chat turn
    first (see `close_turn`); `stop_ids` are the sampler's stop tokens.
    """

    def __init__(
        self,
        model: ScoreModel,
        *,
        shift: float = 0.0,
        scale: float = 1.0,
        turn_end: tuple[int, ...] = (),
        stop_ids: tuple[int, ...] = (),
    ):
        self.graphdef, self.state = nnx.split(model)
        self.shift, self.scale, self.turn_end, self.stop_ids = shift, scale, tuple(turn_end), tuple(stop_ids)

    def __call__(self, prompt, prompt_mask, response, response_mask) -> jax.Array:
        plen = jnp.sum(prompt_mask > 0, axis=-1).astype(jnp.int32)
        response = jnp.asarray(response)
        if self.turn_end:
            response, rlen = close_turn(response, response_mask, self.stop_ids or (-1,), self.turn_end)
        else:
            rlen = jnp.sum(response_mask > 0, axis=-1).astype(jnp.int32)
        tokens, positions, segments = join_prompt_response(jnp.asarray(prompt), plen, response, rlen)
        scores = _score(self.graphdef, self.state, tokens, positions, segments)
        return (scores - self.shift) / self.scale


@functools.lru_cache(maxsize=4)
def load_reward_model(path: str) -> ScoreModel:
    """A reward model (decoder + scalar head) saved by `align rm` (reward_models.model).

    Cached: the reward and PPO's critic start from the same model, and a 270M model is a gigabyte.
    The module is shared, never trained in place (RL train states own copies of their weights).
    """
    from reward_models.model import load_reward_model as load

    model, _ = load(path, with_tokenizer=False)
    return model


def single_token(tokenizer: Tokenizer, text: str) -> int:
    ids = tokenizer.encode(text)
    if len(ids) != 1:
        raise InvalidInput(
            f"reward rule token {text!r} encodes to {len(ids)} tokens {ids}; it must be exactly one"
        )
    return ids[0]


def build_reward(options: RewardOptions, tokenizer: Tokenizer, models: list | None = None) -> RewardFn:
    """The weighted mixture of every reward model and rule of `options` (at least one).

    models: the loaded reward models, one per options.models entry (default: load them).
    """
    fns, weights = [], []
    turn_end = tuple(tokenizer.encode("<end_of_turn>\n")) if tokenizer.end_of_turn_id is not None else ()
    models = [load_reward_model(spec.path) for spec in options.models] if models is None else models
    for spec, model in zip(options.models, models, strict=True):
        fns.append(
            ScoreModelReward(
                model,
                shift=spec.shift,
                scale=spec.scale,
                stop_ids=tokenizer.stop_ids,
                turn_end=turn_end if spec.close_turn else (),
            )
        )
        weights.append(spec.weight)
    for rule in options.rules:
        if rule.kind == "token_fraction":
            fns.append(TokenFraction(single_token(tokenizer, rule.token), exclude=tokenizer.stop_ids))
        else:
            fns.append(LengthReward(rule.target))
        weights.append(rule.weight)
    if not fns:
        raise InvalidInput("reward: no reward model and no rule; set reward.models or reward.rules")
    return fns[0] if len(fns) == 1 and weights[0] == 1.0 else Mixture(fns, weights)


def load_value_model(value_init: str, reward: RewardOptions, policy) -> ScoreModel:
    """PPO's critic: a copy of the first reward model ("reward", TRL's default) or of the policy's
    backbone with a fresh scalar head ("policy")."""
    if value_init == "reward":
        if not reward.models:
            raise InvalidInput("train.value_init='reward' needs a reward model (reward.models); use 'policy'")
        return load_reward_model(reward.models[0].path)
    if value_init == "policy":
        return ScoreModel(nnx.clone(policy), rngs=nnx.Rngs(0))
    raise InvalidInput(f"train.value_init={value_init!r}: expected 'reward' or 'policy'")
