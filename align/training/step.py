"""make_train_step: one pure, jitted `(state, batch) -> (state, metrics)` for any loss.

    loss_fn(model, batch, rng) -> (loss, metrics)

`model` is the nnx module merged from the state (trainable params + frozen rest); `loss` is the
micro-batch mean and `metrics["weight"]` (optional, default 1) its weight (see align.training.metrics).
With gradient accumulation the step computes

    g = sum_i w_i grad L_i / sum_i w_i        metrics = sum_i w_i m_i / sum_i w_i

over A micro-batches in a lax.scan, which equals the gradient of the whole batch's weighted mean: k
micro-batches give the update of one batch of k (up to float summation order).

Micro-batch i takes rows i, i+A, i+2A, ... of the [B, ...] batch: with B sharded in contiguous blocks
over the data-parallel devices, every device then holds an equal slice of every micro-batch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from align.model.sharding import mesh_of, mesh_scope
from align.training.metrics import WEIGHT, finalize, weighted_sums
from align.training.state import TrainState

LossFn = Callable[[nnx.Module, Mapping[str, jax.Array], jax.Array], tuple[jax.Array, dict[str, jax.Array]]]


def split_micro_batches(batch: Mapping[str, jax.Array], grad_accum: int) -> dict[str, jax.Array]:
    """[B, ...] -> [A, B/A, ...] with micro-batch i = rows i, i+A, i+2A, ..."""

    def one(x):
        if x.shape[0] % grad_accum:
            raise ValueError(
                f"batch of {x.shape[0]} rows does not split into grad_accum={grad_accum} micro-batches"
            )
        x = x.reshape((x.shape[0] // grad_accum, grad_accum) + x.shape[1:])  # [B/A, A, ...]
        return jnp.swapaxes(x, 0, 1)  # [A, B/A, ...]

    return jax.tree.map(one, dict(batch))


def _micro_grads(loss_fn: LossFn, state: TrainState, batch, rng):
    """(weighted gradient sums, weighted metric sums) of one micro-batch."""

    def weighted_loss(params):
        loss, metrics = loss_fn(nnx.merge(state.graphdef, params, state.frozen), batch, rng)
        # The weight is data (a token count), not a function of the params.
        w = jax.lax.stop_gradient(jnp.asarray(metrics.get(WEIGHT, 1.0), jnp.float32))
        sums = weighted_sums({"loss": loss, **{k: v for k, v in metrics.items() if k != "loss"}}, w)
        return loss.astype(jnp.float32) * w, sums

    grads, sums = jax.grad(weighted_loss, has_aux=True)(state.params)
    return grads, jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), sums)


def accumulate_gradients(loss_fn: LossFn, state: TrainState, batch, rng, grad_accum: int = 1):
    """(mean gradient, mean metrics) over `grad_accum` micro-batches of `batch` (see the module docstring)."""
    if grad_accum == 1:
        grads, sums = _micro_grads(loss_fn, state, batch, rng)
    else:
        micro = split_micro_batches(batch, grad_accum)
        rngs = jax.random.split(rng, grad_accum)
        first = jax.tree.map(lambda x: x[0], micro)
        # Shapes of one micro-batch's outputs, to start the carry at zero.
        zeros = jax.tree.map(
            jnp.zeros_like, jax.eval_shape(lambda b, r: _micro_grads(loss_fn, state, b, r), first, rngs[0])
        )

        def body(carry, xs):
            g, s = _micro_grads(loss_fn, state, *xs)
            return jax.tree.map(jnp.add, carry, (g, s)), None

        (grads, sums), _ = jax.lax.scan(body, zeros, (micro, rngs))
    total = jnp.where(sums[WEIGHT] > 0, sums[WEIGHT], 1.0)
    # Back to each parameter's dtype: a float32 quotient would turn bfloat16 Adam moments into float32
    # after the first step (a second compile, twice their memory).
    grads = jax.tree.map(lambda g: (g / total).astype(g.dtype), grads)
    return grads, finalize(sums)


def _select(pred, new, old):
    return jax.tree.map(lambda a, b: jnp.where(pred, a, b), new, old)


def make_train_step(
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    *,
    grad_accum: int = 1,
    shardings: tuple[Any, Any] | None = None,
    learning_rate: optax.Schedule | None = None,
    donate: bool = True,
):
    """The jitted step. Built once; donated state; compiled once per batch shape.

    Args:
      loss_fn: see the module docstring.
      optimizer: the optax transformation whose state is `state.opt_state`.
      grad_accum: micro-batches per step (the batch's leading dim must divide by it).
      shardings: (state shardings, batch sharding) for jit's in/out_shardings, e.g.
        (train_state_shardings(state, mesh), batch_sharding(mesh, ndim=1)); None lets jit follow inputs.
      learning_rate: the schedule, only to report `lr` in the metrics.

    The returned metrics add `grad_norm` (before clipping), `lr` and `finite`. A step whose loss or
    gradient is not finite leaves params and optimizer state unchanged (only `step` advances), so the
    caller can stop with the last good weights still in memory.
    """
    if grad_accum < 1:
        raise ValueError(f"grad_accum must be >= 1, got {grad_accum}")

    mesh = None if shardings is None else mesh_of(shardings)

    def step(state: TrainState, batch):
        with mesh_scope(mesh, tracing=True):  # the model's activation constraints see the mesh
            return _step(state, batch)

    def _step(state: TrainState, batch):
        rng, step_rng = jax.random.split(state.rng)
        grads, metrics = accumulate_gradients(loss_fn, state, batch, step_rng, grad_accum)
        grad_norm = optax.global_norm(grads)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        finite = jnp.isfinite(metrics["loss"]) & jnp.isfinite(grad_norm)
        params, opt_state = _select(finite, (params, opt_state), (state.params, state.opt_state))
        metrics = {**metrics, "grad_norm": grad_norm, "finite": finite}
        if learning_rate is not None:
            metrics["lr"] = jnp.asarray(learning_rate(state.step), jnp.float32)
        new = state.replace(step=state.step + 1, params=params, opt_state=opt_state, rng=rng)
        return new, metrics

    kwargs = {"donate_argnums": 0} if donate else {}
    if shardings is not None:
        state_sh, batch_sh = shardings
        kwargs.update(in_shardings=(state_sh, batch_sh), out_shardings=(state_sh, None))
    return jax.jit(step, **kwargs)


def make_eval_step(loss_fn: LossFn):
    """jit(state, batch) -> metric sums (weighted, see align.training.metrics) with rng fixed at 0."""

    @jax.jit
    def evaluate(state: TrainState, batch):
        _, metrics = loss_fn(state.model(), batch, jax.random.PRNGKey(0))
        w = jnp.asarray(metrics.get(WEIGHT, 1.0), jnp.float32)
        return jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), weighted_sums(metrics, w))

    return evaluate
