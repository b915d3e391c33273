"""Knowledge distillation from a frozen teacher: the model pair, the student's initialisation, the loss
function for align.training's step, and on-policy batches (GKD, Agarwal et al. 2024).

    pair = Distiller(student, teacher)                       # one nnx module: one state, one mesh
    run = prepare_run(pair, optimizer, distill_loss_fn(DistillLoss()), trainable=student_only(...), ...)
    run.step_fn = with_on_policy(run.step_fn, OnPolicy(fraction=0.5, ...), seed)

The teacher lives in the train state's frozen part: it is sharded by the same rules table on the same
mesh as the student, never differentiated or updated, and saved in each checkpoint with the student
(a resumed run needs no other file to find it). Its forward pass runs inside the jitted step, so its
[B, T, D] hidden states and the student's meet tile by tile in `chunked_weighted_divergence` (training
over the whole vocabulary) or `chunked_token_divergence` (vocabulary slices, evaluation).

On-policy steps. With probability `fraction` (GKD's lambda) a step replaces its batch's responses by
the student's own samples for the same prompts, scored by the teacher in the same loss. The choice and
the sampling key depend only on (seed, step), so a resumed run makes the same choices.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from align import checks, distributed
from align.model import Decoder
from align.model.sharding import shard_rows
from align.rl.rollout import RolloutConfig, sample_rollout
from align.sampling import SamplingConfig
from align.training.distill import chunked_token_divergence, masked_mean, sparse_topk_kl, teacher_topk
from align.training.fused_divergence import chunked_weighted_divergence
from align.training.logprobs import chunked_token_logprobs
from align.training.optim import trainable_filter


class Distiller(nnx.Module):
    """A student and its frozen teacher as one module (the teacher's Params are excluded from training
    by `student_only`)."""

    def __init__(self, student: Decoder, teacher: Decoder):
        if student.config.vocab_size != teacher.config.vocab_size:
            v_s, v_t = student.config.vocab_size, teacher.config.vocab_size
            raise ValueError(f"student vocabulary {v_s} != teacher vocabulary {v_t}")
        self.student, self.teacher = student, teacher


def student_only(kind: str = "all"):
    """The trainable filter: `trainable_filter(kind)` restricted to the student's Variables."""
    return nnx.All(trainable_filter(kind), nnx.PathContains("student"))


def kept_layers(num_layers: int, keep: str, n: int = 0) -> list[int]:
    """Teacher layer indices a student keeps: every_other (0, 2, 4, ...) or first_n (0 .. n-1)."""
    if keep == "every_other":
        return list(range(0, num_layers, 2))
    if keep == "first_n":
        if not 1 <= n <= num_layers:
            raise ValueError(f"first_n: num_layers={n} must lie in [1, {num_layers}]")
        return list(range(n))
    raise ValueError(f"keep={keep!r}: expected every_other or first_n")


def student_from_teacher(teacher: Decoder, keep: list[int]) -> Decoder:
    """A copy of `teacher` with only the layers `keep` (embedding and final norm copied too).

    Own buffers: the teacher stays intact however the student trains. Each kept block keeps its
    attention type (local / global), so a Gemma 3 student keeps the sliding-window pattern it had.
    """
    graphdef, state = nnx.split(teacher)
    student = nnx.merge(graphdef, jax.tree.map(jnp.copy, state))
    student.layers = nnx.List([student.layers[i] for i in keep])
    types = tuple(teacher.config.layer_types[i] for i in keep)
    student.config = teacher.config.replace(num_layers=len(keep), layer_types=types)
    return student


@dataclasses.dataclass(frozen=True)
class DistillLoss:
    """The divergence of align.training.distill and how it is tiled."""

    beta: float = 0.0  # 0 forward KL(teacher || student) (Gemma 2), 1 reverse KL, between: GKD's JSD
    temperature: float = 1.0
    chunk_size: int = 256  # tokens per logits tile
    vocab_chunk: int | None = None  # vocabulary rows per slice (None: the whole vocabulary, fused gradient)

    def __post_init__(self):
        checks.at_least(self, 1, "chunk_size")
        checks.at_least(self, 1, "vocab_chunk", optional=True)
        if not 0.0 <= self.beta <= 1.0:
            raise ValueError(f"beta must lie in [0, 1], got {self.beta}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")


def _pair_inputs(model: Distiller, batch):
    """(student hidden [B, T, D_s], student table [V, D_s], teacher hidden [B, T, D_t], teacher table
    [V, D_t]), the teacher's behind stop_gradient."""
    args = (batch["tokens"], batch["positions"], batch["segment_ids"])
    h_s = model.student.hidden(*args)
    h_t = jax.lax.stop_gradient(model.teacher.hidden(*args))
    return h_s, model.student.unembed_matrix(), h_t, jax.lax.stop_gradient(model.teacher.unembed_matrix())


def _options(model: Distiller, loss: DistillLoss) -> dict:
    return {
        "beta": loss.beta,
        "temperature": loss.temperature,
        "chunk_size": loss.chunk_size,
        "student_softcap": model.student.config.final_logit_softcap,
        "teacher_softcap": model.teacher.config.final_logit_softcap,
    }


def _divergence(model: Distiller, batch, loss: DistillLoss):
    inputs = _pair_inputs(model, batch)
    div = chunked_token_divergence(*inputs, vocab_chunk=loss.vocab_chunk, **_options(model, loss))
    return div, inputs[0]


def _token_mean(model: Distiller, batch, loss: DistillLoss):
    """(masked token mean of the divergence, token count). Over the whole vocabulary the fused form
    (its gradient formed in the forward pass: two unembedding matmuls per tile fewer under jax.grad);
    with vocabulary slices the per-token divergences, averaged."""
    if loss.vocab_chunk is not None:
        div, _ = _divergence(model, batch, loss)
        return masked_mean(div, batch["loss_mask"])
    mask = batch["loss_mask"].astype(jnp.float32)
    n = jnp.sum(mask)
    weights = mask / jnp.maximum(n, 1.0)  # masked_mean's token mean, as weights known up front
    return chunked_weighted_divergence(*_pair_inputs(model, batch), weights, **_options(model, loss)), n


def distill_loss_fn(loss: DistillLoss):
    """loss_fn(pair, batch, rng): the token mean over batch["loss_mask"] of the per-token divergence
    (TRL's batchmean), weight = token count."""

    def loss_fn(model: Distiller, batch, rng):
        del rng
        value, n = _token_mean(model, batch, loss)
        return value, {"loss": value, "n_tokens": n, "weight": n}

    return loss_fn


def distill_eval_fn(loss: DistillLoss):
    """As `distill_loss_fn`, plus `nll`: the student's token-mean NLL of the batch's own targets (on
    teacher samples, how well the student predicts the teacher's text)."""

    def loss_fn(model: Distiller, batch, rng):
        del rng
        div, h_s = _divergence(model, batch, loss)
        value, n = masked_mean(div, batch["loss_mask"])
        lp = chunked_token_logprobs(
            h_s,
            model.student.unembed_matrix(),
            batch["targets"],
            chunk_size=loss.chunk_size,
            final_softcap=model.student.config.final_logit_softcap,
        )
        nll, _ = masked_mean(-lp, batch["loss_mask"])
        return value, {"loss": value, "nll": nll, "n_tokens": n, "weight": n}

    return loss_fn


def sparse_loss_fn(loss: DistillLoss):
    """loss_fn(student, batch, rng): token mean of `sparse_topk_kl` to the batch's stored teacher top-k
    (batch["topk_ids"], batch["topk_logps"], [B, T, K]); the teacher is not needed at train time."""

    def loss_fn(model: Decoder, batch, rng):
        del rng
        h = model.hidden(batch["tokens"], batch["positions"], batch["segment_ids"])  # [B, T, D]
        kl = sparse_topk_kl(
            h,
            model.unembed_matrix(),
            batch["topk_ids"],
            batch["topk_logps"],
            temperature=loss.temperature,
            chunk_size=loss.chunk_size,
            vocab_chunk=loss.vocab_chunk,
            student_softcap=model.config.final_logit_softcap,
        )
        value, n = masked_mean(kl, batch["loss_mask"])
        return value, {"loss": value, "n_tokens": n, "weight": n}

    return loss_fn


@functools.partial(nnx.jit, static_argnames=("k", "chunk_size"))
def _topk(teacher: Decoder, tokens, positions, segment_ids, *, k: int, chunk_size: int):
    h = teacher.hidden(tokens, positions, segment_ids)
    cap = teacher.config.final_logit_softcap
    return teacher_topk(h, teacher.unembed_matrix(), k=k, chunk_size=chunk_size, final_softcap=cap)


def topk_targets(teacher: Decoder, batch: Mapping, k: int, chunk_size: int) -> tuple[np.ndarray, np.ndarray]:
    """The teacher's top-k (ids, log-probs), each [B, T, K], on a batch: the sparse targets to store
    (every row, on every process: host_array gathers the rows other hosts' devices hold)."""
    args = (batch["tokens"], batch["positions"], batch["segment_ids"])
    ids, lps = _topk(teacher, *args, k=k, chunk_size=chunk_size)
    return distributed.host_array(ids), distributed.host_array(lps)


@dataclasses.dataclass(frozen=True)
class OnPolicy:
    """GKD's on-policy share: `fraction` of the steps train on the student's own samples."""

    fraction: float = 0.0  # lambda: 0 off-policy only, 1 on-policy only
    max_new_tokens: int = 32
    temperature: float = 1.0  # the student's sampling temperature
    stop_ids: tuple[int, ...] = ()
    pad_id: int = 0

    def __post_init__(self):
        if not 0.0 <= self.fraction <= 1.0:
            raise ValueError(f"on_policy fraction must lie in [0, 1], got {self.fraction}")
        checks.at_least(self, 1, "max_new_tokens")


def is_on_policy(seed: int, step: int, fraction: float) -> bool:
    """Whether optimizer step `step` (0-based) trains on-policy: a draw fixed by (seed, step)."""
    return fraction > 0 and np.random.default_rng([seed, step]).random() < fraction


def prompt_lengths(batch: Mapping[str, np.ndarray]) -> np.ndarray:
    """[B] prompt length of each row: up to and including the token before the first supervised
    target (loss_mask[t] supervises tokens[t + 1]); rows without one keep their whole length."""
    mask = np.asarray(batch["loss_mask"]) > 0
    seg = np.asarray(batch["segment_ids"])
    whole = np.maximum((seg != 0).sum(-1), 1)
    first = np.where(mask.any(-1), mask.argmax(-1) + 1, whole)
    return np.maximum(first, 1).astype(np.int32)


def on_policy_batch(
    student: Decoder, batch: Mapping, options: OnPolicy, rng, mesh=None
) -> dict[str, np.ndarray]:
    """The batch's prompts with the student's sampled responses, in the batch's own [B, T] layout.

    Prompts are cut to T - max_new_tokens tokens so every row fits T; the loss covers the response
    tokens, the stop token included. mesh: the student's; the prompt rows are split over its data axes,
    so each device samples its own rows.

    On several processes the batch's rows live on every host: they are gathered first (each process
    samples from the same global prompts) and the new batch is placed back on the mesh.
    """
    multi = mesh is not None and jax.process_count() > 1
    if multi:
        batch = {k: distributed.host_array(v) for k, v in batch.items()}
    T = np.asarray(batch["tokens"]).shape[1]
    P = T - options.max_new_tokens
    if P < 1:
        raise ValueError(f"max_new_tokens={options.max_new_tokens} leaves no room for a prompt in T={T}")
    lengths = np.minimum(prompt_lengths(batch), P)
    prompt = np.asarray(batch["tokens"])[:, :P]
    sampling = SamplingConfig(
        max_new_tokens=options.max_new_tokens,
        temperature=options.temperature,
        stop_ids=options.stop_ids,
        pad_id=options.pad_id,
    )
    if mesh is not None:
        prompt, lengths = shard_rows((prompt, lengths), mesh)
    roll = sample_rollout(student, prompt, lengths, RolloutConfig(sampling=sampling), rng)
    lengths = distributed.host_array(lengths)
    tokens = distributed.host_array(roll.tokens)  # [B, P + M] == [B, T]
    n_resp = distributed.host_array(roll.response_mask).sum(-1).astype(np.int32)
    col = np.arange(T)[None, :]
    start = lengths[:, None] - 1  # the column whose target is the first response token
    loss_mask = ((col >= start) & (col < start + n_resp[:, None])).astype(np.float32)
    targets = np.concatenate([tokens[:, 1:], np.full((len(tokens), 1), options.pad_id, np.int32)], axis=1)
    out = {
        "tokens": tokens,
        "positions": distributed.host_array(roll.positions),
        "segment_ids": distributed.host_array(roll.segment_ids),
        "targets": np.where(loss_mask > 0, targets, options.pad_id).astype(np.int32),
        "loss_mask": loss_mask,
    }
    return shard_rows(out, mesh) if multi else out


def with_on_policy(
    step: Callable, options: OnPolicy, seed: int, counts: dict | None = None, mesh=None
) -> Callable:
    """step(state, batch) that first swaps the batch for `on_policy_batch` on the on-policy steps.

    counts (optional): incremented under "on_policy" / "off_policy", for the run's summary.
    mesh: the train state's (the samples are drawn data-parallel).
    """
    if options.fraction == 0:
        return step

    def step_maybe_on_policy(state, batch):
        k = int(jax.device_get(state.step))
        on = is_on_policy(seed, k, options.fraction)
        if on:
            rng = jax.random.fold_in(jax.random.PRNGKey(seed), k)
            batch = on_policy_batch(state.model().student, batch, options, rng, mesh)
        if counts is not None:
            key = "on_policy" if on else "off_policy"
            counts[key] = counts.get(key, 0) + 1
        return step(state, batch)

    return step_maybe_on_policy
