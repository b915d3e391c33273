"""DPO / IPO training step on preference batches with a frozen reference.

A preference batch (align.data.preference_batch) holds [B, P=2, T] arrays, row 0 chosen, row 1
rejected, with next-token `targets`, a `loss_mask` on response targets and optionally a `pair_mask`
[B] (0 on padding rows, which then count in no mean). Each step computes

    log pi(y | x) = sum_t loss_mask * log pi(target_t | prefix)          -> [B, P]

for the policy, and takes the reference's from `batch["ref_logps"]` [B, P]: either precomputed once
for the whole dataset (`precompute_reference`, TRL's precompute_ref_log_probs) or computed on the fly
by `make_dpo_step(..., reference=...)`, which adds them before the jitted update. Both give the same
numbers. The loss is align.rl.losses.dpo_loss (sigmoid / IPO / cDPO label smoothing); at step 1,
pi == pi_ref and the sigmoid loss is exactly ln 2.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterable, Mapping
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from align import checks, distributed
from align.model import Decoder
from align.rl.losses import dpo_loss
from align.training.logprobs import chunked_token_logprobs, sequence_logprob
from align.training.state import TrainState
from align.training.step import make_train_step

PAIR_KEYS = ("tokens", "positions", "segment_ids", "targets", "loss_mask")


@dataclasses.dataclass(frozen=True)
class DPOConfig:
    beta: float = 0.1
    loss_type: Literal["sigmoid", "ipo"] = "sigmoid"
    label_smoothing: float = 0.0
    logprob_chunk: int = 256  # tokens per [C, V] logits tile

    def __post_init__(self):
        if self.loss_type not in ("sigmoid", "ipo"):
            raise ValueError(f"DPOConfig.loss_type={self.loss_type!r}: expected 'sigmoid' or 'ipo'")
        if self.beta <= 0:
            raise ValueError(f"DPOConfig.beta={self.beta} must be > 0")
        checks.fraction(self, "label_smoothing")
        if self.label_smoothing >= 0.5:  # at 0.5 the loss ignores the labels, above it flips them
            raise checks.FieldError("label_smoothing", f"must be < 0.5, got {self.label_smoothing}")
        checks.at_least(self, 1, "logprob_chunk")


def pair_logprobs(model: Decoder, batch: Mapping[str, jax.Array], chunk_size: int) -> jax.Array:
    """Sequence log-probs of the responses [B, P] (sum over `loss_mask` of the target log-probs)."""
    B, P, T = batch["tokens"].shape
    flat = {k: batch[k].reshape(B * P, T) for k in PAIR_KEYS}  # [B * P, T]
    hidden = model.hidden(flat["tokens"], flat["positions"], flat["segment_ids"])  # [B * P, T, D]
    lp = chunked_token_logprobs(
        hidden,
        model.unembed_matrix(),
        flat["targets"],
        chunk_size=chunk_size,
        final_softcap=model.config.final_logit_softcap,
    )
    return sequence_logprob(lp, flat["loss_mask"]).reshape(B, P)


def pair_mask(batch: Mapping[str, jax.Array]) -> jax.Array:
    """[B] 1.0 on real pairs, 0.0 on padding rows: batch["pair_mask"], else the pairs with response
    tokens on both sides (preference_batch's padding rows have none)."""
    if "pair_mask" in batch:
        return batch["pair_mask"].astype(jnp.float32)
    return jnp.all(jnp.any(batch["loss_mask"] > 0, axis=-1), axis=-1).astype(jnp.float32)


def dpo_loss_fn(model: Decoder, batch: Mapping[str, jax.Array], rng, *, config: DPOConfig):
    """dpo_loss on one batch (align.training's loss_fn signature); needs batch["ref_logps"] [B, P].

    Padding rows (pair_mask 0) are left out of every mean, so a short last batch scores like its real
    pairs alone:  L = sum_b m_b L_b / sum_b m_b, and the weight is sum_b m_b (real pairs).
    """
    del rng
    lp = pair_logprobs(model, batch, config.logprob_chunk)  # [B, P]
    ref = batch["ref_logps"]
    lengths = jnp.sum(batch["loss_mask"], axis=-1)  # [B, P] response tokens (IPO's normalisation)

    def one_pair(lp, ref, lengths):
        # dpo_loss on a batch of one pair: its loss and metrics are that pair's own values.
        return dpo_loss(
            lp[:1],
            lp[1:],
            ref[:1],
            ref[1:],
            config.beta,
            config.loss_type,
            config.label_smoothing,
            chosen_lengths=lengths[:1] if config.loss_type == "ipo" else None,
            rejected_lengths=lengths[1:] if config.loss_type == "ipo" else None,
        )

    losses, per_pair = jax.vmap(one_pair)(lp, ref, lengths)  # [B], {name: [B]}
    mask = pair_mask(batch)
    n = jnp.sum(mask)

    def mean(x):  # over real pairs; an all-padding micro-batch gives 0 with weight 0
        return jnp.sum(mask * x) / jnp.maximum(n, 1.0)

    metrics = {k: mean(v) for k, v in per_pair.items()}
    metrics["logps/chosen"] = mean(lp[:, 0])
    metrics["logps/rejected"] = mean(lp[:, 1])
    return mean(losses), {**metrics, "weight": n}


@functools.partial(jax.jit, static_argnames=("graphdef", "chunk_size"))
def _ref_logps(graphdef, state, batch, chunk_size: int) -> jax.Array:
    return pair_logprobs(nnx.merge(graphdef, state), batch, chunk_size)


def reference_logprobs(reference: Decoder, batch: Mapping[str, np.ndarray], chunk_size: int) -> jax.Array:
    """[B, P] reference sequence log-probs of a preference batch (one jit per batch shape)."""
    graphdef, state = nnx.split(reference)
    return _ref_logps(graphdef, state, {k: jnp.asarray(batch[k]) for k in PAIR_KEYS}, chunk_size=chunk_size)


def precompute_reference(
    reference: Decoder, batches: Iterable[Mapping[str, np.ndarray]], chunk_size: int
) -> np.ndarray:
    """[N, P] reference log-probs of every row of `batches`, in order (for a dataset-wide cache)."""
    # host_array: on several processes a batch's rows (and so its log-probs) live on every host
    out = [distributed.host_array(reference_logprobs(reference, b, chunk_size)) for b in batches]
    return np.concatenate(out, axis=0)


def make_dpo_step(
    config: DPOConfig,
    optimizer: optax.GradientTransformation,
    *,
    reference: Decoder | None = None,
    grad_accum: int = 1,
) -> Callable:
    """step(state, batch) -> (state, metrics), for align.training.loop.train_loop.

    Without `reference`, every batch must carry "ref_logps" [B, P] (precomputed); with it, they are
    computed on the fly from the frozen reference before the jitted update.
    """
    step = make_train_step(functools.partial(dpo_loss_fn, config=config), optimizer, grad_accum=grad_accum)
    return step if reference is None else with_reference(step, reference, config.logprob_chunk)


def with_reference(step: Callable, reference: Decoder, chunk_size: int) -> Callable:
    """step(state, batch) that first adds batch["ref_logps"] from the frozen `reference`."""

    def step_with_reference(state: TrainState, batch: Mapping[str, np.ndarray]):
        ref = reference_logprobs(reference, batch, chunk_size)
        keys = (*PAIR_KEYS, "pair_mask")
        return step(state, {**{k: batch[k] for k in keys if k in batch}, "ref_logps": ref})

    return step_with_reference
