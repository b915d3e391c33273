"""A reward model (align.reward) as an RL reward: `ScoreModelReward`, a RewardFn that scores prompt +
response, with each response first ended as the reward model's training rows were (`ResponseEnding`).

Shapes: B batch, P prompt length, M response length, S suffix length (all right-padded).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
from flax import nnx

from align.data import Tokenizer
from align.data.chat import END_OF_TURN, START_OF_TURN
from align.model.heads import ScoreModel
from align.rl.rollout import join_prompt_response


@functools.partial(jax.jit, static_argnames=("graphdef",))
def _score(graphdef, state, tokens, positions, segment_ids, response):
    return nnx.merge(graphdef, state)(tokens, positions, segment_ids, response)


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

    A reward model reads its reward at the last token (or averages it over the response, ending
    included), so the ending must be the one it was trained on (align.data.preference;
    align.reward.RewardScorer does the same at evaluation):
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
        # the response (with its ending) is every real column after the prompt, as in the RM's rows
        in_response = (segments > 0) & (jnp.arange(tokens.shape[1])[None, :] >= plen[:, None])  # [B, L]
        scores = _score(self.graphdef, self.state, tokens, positions, segments, in_response)
        return (scores - self.shift) / self.scale
