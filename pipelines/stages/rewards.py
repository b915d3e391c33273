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
from align.data.chat import END_OF_TURN, START_OF_TURN
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
    close_turn: bool = True  # end responses as the RM's training rows ended (see ResponseEnding)


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

    A truncated response is closed as if it had ended there.
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


def ends_with(prompt, prompt_lengths, suffix) -> jax.Array:
    """bool [B]: each right-padded prompt's last len(suffix) tokens are `suffix`."""
    S = len(suffix)
    idx = prompt_lengths[:, None] - S + jnp.arange(S)[None, :]  # [B, S]
    tail = jnp.take_along_axis(prompt, jnp.clip(idx, 0, prompt.shape[1] - 1), axis=1)
    return (prompt_lengths >= S) & jnp.all(tail == jnp.asarray(suffix)[None, :], axis=-1)


@dataclasses.dataclass(frozen=True)
class ResponseEnding:
    """How a sampled response is ended before a reward model scores it: as the RM's training rows were.

    A reward model reads its reward at the last token, so that token must be the one it was trained on
    (align.data.preference; reward_models.score.RewardScorer does the same at evaluation):
      chat prompt (ends with the generation header `<start_of_turn>model\n`)  ... <end_of_turn>\n
      string prompt (`<bos> prompt`)                                          ... <eos>
    The sampler's stop token (<eos> or <end_of_turn>) is replaced by that ending, and a response cut
    at the length limit gets it too. Decided per row from the prompt's tokens.
    """

    stop_ids: tuple[int, ...]
    eos: tuple[int, ...]
    header: tuple[int, ...] = ()  # empty: the tokenizer has no chat format
    turn_end: tuple[int, ...] = ()

    @classmethod
    def of(cls, tokenizer: Tokenizer) -> ResponseEnding:
        chat = tokenizer.start_of_turn_id is not None and tokenizer.end_of_turn_id is not None
        return cls(
            stop_ids=tuple(tokenizer.stop_ids),
            eos=(tokenizer.eos_id,),
            header=tuple(tokenizer.encode(f"{START_OF_TURN}model\n")) if chat else (),
            turn_end=tuple(tokenizer.encode(f"{END_OF_TURN}\n")) if chat else (),
        )

    def apply(self, prompt, prompt_lengths, response, response_mask) -> tuple[jax.Array, jax.Array]:
        """(tokens [B, M + S], lengths [B]) of the ended responses."""
        plain, plain_len = close_turn(response, response_mask, self.stop_ids, self.eos)
        if not self.header:
            return plain, plain_len
        chat, chat_len = close_turn(response, response_mask, self.stop_ids, self.turn_end)
        width = max(plain.shape[1], chat.shape[1])
        plain, chat = (jnp.pad(x, ((0, 0), (0, width - x.shape[1]))) for x in (plain, chat))
        is_chat = ends_with(prompt, prompt_lengths, self.header)  # [B]
        return jnp.where(is_chat[:, None], chat, plain), jnp.where(is_chat, chat_len, plain_len)


class ScoreModelReward:
    """RewardFn from a reward model: its score of prompt + response (one jit per shape).

    With `ending`, each response is first ended as the reward model's training rows were (see
    ResponseEnding); without it, it is scored as sampled.
    """

    def __init__(
        self,
        model: ScoreModel,
        *,
        shift: float = 0.0,
        scale: float = 1.0,
        ending: ResponseEnding | None = None,
    ):
        self.graphdef, self.state = nnx.split(model)
        self.shift, self.scale, self.ending = shift, scale, ending

    def __call__(self, prompt, prompt_mask, response, response_mask) -> jax.Array:
        prompt = jnp.asarray(prompt)
        plen = jnp.sum(prompt_mask > 0, axis=-1).astype(jnp.int32)
        response = jnp.asarray(response)
        if self.ending is not None:
            response, rlen = self.ending.apply(prompt, plen, response, response_mask)
        else:
            rlen = jnp.sum(response_mask > 0, axis=-1).astype(jnp.int32)
        tokens, positions, segments = join_prompt_response(prompt, plen, response, rlen)
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
    ending = ResponseEnding.of(tokenizer)
    models = [load_reward_model(spec.path) for spec in options.models] if models is None else models
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
