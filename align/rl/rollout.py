"""Rollouts: sample completions, then score them in one jitted pass -> a Rollout pytree.

    prompts [B, P] (right-padded) --generate--> response [B, M]
    prompt + response, contiguous per row --> tokens [B, L = P + M]
    one jitted pass: policy log-probs + entropy, reference log-probs, values  (all [B, M])
    host: reward_fn(prompt, response, masks) -> scores [B]

Response token j of row b sits at column prompt_length[b] + j of `tokens`; the hidden state that
predicts it is the one at column prompt_length[b] - 1 + j (`response_index`). Only those M columns
go through the unembedding, which matters with a 262k vocabulary: the logits of the prompt are
never formed.

PPO, GRPO and the pipelines share `response_logprobs` / `response_values`, so the training forward
is the very function that scored the rollout (ratio == 1 before the first update, exactly).

Shapes: B batch, P prompt, M response, L = P + M sequence, D model dim, V vocab.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Mapping

import flax.struct
import jax
import jax.numpy as jnp
from flax import nnx

from align import checks, distributed
from align.model import Decoder
from align.model.heads import ScoreModel
from align.rl.advantages import masked_mean
from align.rl.rewards import RewardFn, check_rewards
from align.sampling import SamplingConfig, generate
from align.training.logprobs import chunked_token_logprobs


@flax.struct.dataclass
class Rollout:
    """One batch of sampled experience; every field is an array so slices and jit just work."""

    tokens: jax.Array  # [B, L] prompt + response, right-padded
    positions: jax.Array  # [B, L]
    segment_ids: jax.Array  # [B, L] 1 on prompt and response tokens, 0 on padding
    prompt_lengths: jax.Array  # [B]
    response: jax.Array  # [B, M] sampled tokens, pad after the stop token
    response_mask: jax.Array  # [B, M] float32, 1 up to and including the stop token
    has_eos: jax.Array  # [B] bool: the response ended with a stop token
    logprobs: jax.Array  # [B, M] policy log-probs at sampling time (pi_old), under softmax(z / T)
    ref_logprobs: jax.Array  # [B, M] frozen reference log-probs, same temperature
    values: jax.Array  # [B, M] critic estimates V(s_t) (zeros without a critic)
    entropy: jax.Array  # [B, M] policy entropy of each next-token distribution
    scores: jax.Array  # [B] reward_fn scores (before any KL or EOS shaping)

    @property
    def batch_size(self) -> int:
        return self.response.shape[0]

    def as_batch(self) -> dict[str, jax.Array]:
        """The fields as a plain dict (what align.training's step and loss functions take)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


@dataclasses.dataclass(frozen=True)
class RolloutConfig:
    """How to sample and score. `logprob_chunk` tokens share one [C, V] logits tile."""

    sampling: SamplingConfig = SamplingConfig(max_new_tokens=32, temperature=1.0)
    logprob_chunk: int = 256

    def __post_init__(self):
        checks.at_least(self, 1, "logprob_chunk")

    @property
    def temperature(self) -> float:
        """Scoring temperature: the sampler's, or 1 for greedy (whose log-probs are unscaled)."""
        return self.sampling.temperature if self.sampling.temperature > 0 else 1.0


def join_prompt_response(
    prompt: jax.Array, prompt_lengths: jax.Array, response: jax.Array, response_lengths: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(tokens, positions, segment_ids) [B, P + M]: each row's response right after its prompt."""
    B, P = prompt.shape
    M = response.shape[1]
    col = jnp.arange(P + M)[None, :]  # [1, L]
    in_prompt = col < prompt_lengths[:, None]
    r_idx = jnp.clip(col - prompt_lengths[:, None], 0, M - 1)  # [B, L]
    from_response = jnp.take_along_axis(response, r_idx, axis=1)
    from_prompt = jnp.take_along_axis(prompt, jnp.broadcast_to(jnp.clip(col, 0, P - 1), (B, P + M)), axis=1)
    real = col < (prompt_lengths + response_lengths)[:, None]
    tokens = jnp.where(in_prompt, from_prompt, jnp.where(real, from_response, 0)).astype(jnp.int32)
    positions = jnp.where(real, col, 0).astype(jnp.int32)
    return tokens, positions, real.astype(jnp.int32)


def response_index(prompt_lengths: jax.Array, M: int) -> jax.Array:
    """[B, M] column of the hidden state that predicts response token j: prompt_length - 1 + j."""
    return prompt_lengths[:, None] - 1 + jnp.arange(M)[None, :]


def _gather(x: jax.Array, index: jax.Array) -> jax.Array:
    """x [B, L, ...] at columns index [B, M] -> [B, M, ...]."""
    idx = index.reshape(index.shape + (1,) * (x.ndim - 2))
    return jnp.take_along_axis(x, idx, axis=1)


def response_logprobs(
    model: Decoder,
    batch: Mapping[str, jax.Array],
    *,
    temperature: float,
    chunk_size: int,
    with_entropy: bool = False,
) -> jax.Array | tuple[jax.Array, jax.Array]:
    """log pi(response_t | prefix) [B, M] under softmax(logits / temperature), float32 (and entropy).

    `batch` holds a rollout's tokens, positions, segment_ids, prompt_lengths and response
    (`Rollout.as_batch()` or a minibatch of it). Works for any decoder with `hidden` and
    `unembed_matrix` (a LoRADecoder too).
    """
    hidden = model.hidden(batch["tokens"], batch["positions"], batch["segment_ids"])  # [B, L, D]
    h = _gather(hidden, response_index(batch["prompt_lengths"], batch["response"].shape[1]))  # [B, M, D]
    return chunked_token_logprobs(
        h,
        model.unembed_matrix(),
        batch["response"],
        chunk_size=chunk_size,
        final_softcap=model.config.final_logit_softcap,
        temperature=temperature,
        return_entropy=with_entropy,
    )


def response_values(value_model: ScoreModel, batch: Mapping[str, jax.Array]) -> jax.Array:
    """V(s_t) [B, M]: the critic's score of the prefix that precedes response token t."""
    scores = value_model.token_scores(batch["tokens"], batch["positions"], batch["segment_ids"])  # [B, L]
    return _gather(scores, response_index(batch["prompt_lengths"], batch["response"].shape[1]))


def _score(
    policy_def,
    policy_state,
    ref_def,
    ref_state,
    value_def,
    value_state,
    rollout: Rollout,
    temperature: float,
    chunk_size: int,
) -> Rollout:
    """The jitted scoring pass: fills logprobs, entropy, ref_logprobs and values of `rollout`."""
    policy = nnx.merge(policy_def, policy_state)
    batch = rollout.as_batch()
    logp, entropy = response_logprobs(
        policy, batch, temperature=temperature, chunk_size=chunk_size, with_entropy=True
    )
    ref = nnx.merge(ref_def, ref_state)
    ref_logp = response_logprobs(ref, batch, temperature=temperature, chunk_size=chunk_size)
    if value_def is None:
        values = jnp.zeros_like(logp)
    else:
        values = response_values(nnx.merge(value_def, value_state), batch)
    m = rollout.response_mask
    return rollout.replace(
        logprobs=logp * m, ref_logprobs=ref_logp * m, values=values * m, entropy=entropy * m
    )


_score_jit = jax.jit(
    _score, static_argnames=("policy_def", "ref_def", "value_def", "temperature", "chunk_size")
)


def score_rollout(
    policy: Decoder,
    reference: Decoder,
    value_model: ScoreModel | None,
    rollout: Rollout,
    config: RolloutConfig,
) -> Rollout:
    """Policy / reference log-probs, entropy and values of a sampled rollout (one jit, no recompiles)."""
    policy_def, policy_state = nnx.split(policy)
    ref_def, ref_state = nnx.split(reference)
    value_def, value_state = nnx.split(value_model) if value_model is not None else (None, None)
    return _score_jit(
        policy_def,
        policy_state,
        ref_def,
        ref_state,
        value_def,
        value_state,
        rollout,
        temperature=config.temperature,
        chunk_size=config.logprob_chunk,
    )


def sample_rollout(policy: Decoder, prompt, prompt_lengths, config: RolloutConfig, rng) -> Rollout:
    """Sample one response per prompt row; scores and log-prob fields are left at zero."""
    prompt = jnp.asarray(prompt, jnp.int32)
    prompt_lengths = jnp.asarray(prompt_lengths, jnp.int32)
    if int(jnp.min(prompt_lengths)) < 1:
        raise ValueError("sample_rollout: every prompt row needs at least one token (got a length-0 row)")
    res = generate(policy, prompt, prompt_lengths, config.sampling, rng)
    return _sampled_rollout(
        prompt, prompt_lengths, res.tokens, res.lengths, config.sampling.stop_ids or (-1,)
    )


@functools.partial(jax.jit, static_argnames=("stop_ids",))
def _sampled_rollout(prompt, prompt_lengths, response, lengths, stop_ids: tuple[int, ...]) -> Rollout:
    # One program, not one eager op per field: on several CPU processes independent programs in flight
    # at once can deadlock in their collectives (align.distributed.one_program_at_a_time).
    M = response.shape[1]
    mask = (jnp.arange(M)[None, :] < lengths[:, None]).astype(jnp.float32)
    is_stop = jnp.any(response[..., None] == jnp.asarray(stop_ids, jnp.int32), axis=-1) & (mask > 0)
    tokens, positions, segments = join_prompt_response(prompt, prompt_lengths, response, lengths)
    zeros = jnp.zeros(response.shape, jnp.float32)
    return Rollout(
        tokens=tokens,
        positions=positions,
        segment_ids=segments,
        prompt_lengths=prompt_lengths,
        response=response,
        response_mask=mask,
        has_eos=jnp.any(is_stop, axis=-1),
        logprobs=zeros,
        ref_logprobs=zeros,
        values=zeros,
        entropy=zeros,
        scores=jnp.zeros(response.shape[:1], jnp.float32),
    )


def reward_rollout(rollout: Rollout, prompt, reward_fn: RewardFn) -> Rollout:
    """Fill `scores` with reward_fn(prompt, prompt_mask, response, response_mask)."""
    prompt, B = jnp.asarray(prompt, jnp.int32), rollout.batch_size
    prompt_mask = (jnp.arange(prompt.shape[1])[None, :] < rollout.prompt_lengths[:, None]).astype(jnp.int32)
    scores = check_rewards(reward_fn(prompt, prompt_mask, rollout.response, rollout.response_mask), B)
    rows = rollout.prompt_lengths.sharding
    if not rows.is_fully_addressable and scores.sharding != rows:
        # a host reward's scores (the same on every process) joins the rollout's rows on the mesh
        scores = jax.device_put(distributed.host_array(scores), rows)
    return rollout.replace(scores=scores)


def make_rollout(
    policy: Decoder,
    reference: Decoder,
    value_model: ScoreModel | None,
    reward_fn: RewardFn,
    prompt,
    prompt_lengths,
    config: RolloutConfig,
    rng,
) -> tuple[Rollout, dict[str, float]]:
    """Sample, reward and score one batch of prompts -> (Rollout, host metrics)."""
    start = time.perf_counter()
    rollout = sample_rollout(policy, prompt, prompt_lengths, config, rng)
    rollout = reward_rollout(rollout, prompt, reward_fn)
    rollout = score_rollout(policy, reference, value_model, rollout, config)
    seconds = time.perf_counter() - start
    return rollout, rollout_metrics(rollout, seconds)


def rollout_metrics(rollout: Rollout, seconds: float | None = None) -> dict[str, float]:
    """Reward mean/std, KL to the reference (sum of k1 per response), entropy, length, EOS rate."""
    m = rollout.response_mask
    lengths = jnp.sum(m, axis=-1)
    out = {
        "reward/mean": jnp.mean(rollout.scores),
        "reward/std": jnp.std(rollout.scores),
        "kl/ref": jnp.mean(jnp.sum((rollout.logprobs - rollout.ref_logprobs) * m, axis=-1)),
        "entropy": masked_mean(rollout.entropy, m),
        "response/length": jnp.mean(lengths),
        "response/eos_frac": jnp.mean(rollout.has_eos.astype(jnp.float32)),
    }
    out = {k: float(v) for k, v in out.items()}
    if seconds is not None:
        out["rollout/tokens_per_s"] = float(jnp.sum(lengths)) / max(seconds, 1e-9)
        out["rollout/seconds"] = seconds
    return out
