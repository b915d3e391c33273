"""The RL host loop, shared by PPO and GRPO: prompt batches -> iteration -> log -> checkpoint.

One iteration = one rollout plus the optimizer updates on it (an algorithm's `iterate` function).
`state.step` counts optimizer updates; the loop counts iterations. A checkpoint holds the TrainState
(weights, Adam moments, rng) through align.training's Checkpointer, and its manifest the
data position, the iteration and the KL coefficient (the controller's whole state), so a resumed run
continues with exactly the rollouts and updates the uninterrupted run would have made.

    iterate(state, prompts, kl_coef) -> (state, kl_coef, metrics)
      prompts: {"tokens" [B, P] right-padded, "lengths" [B], ...} from align.data.prompt_batch
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding

from align import checks, distributed
from align.model.sharding import batch_sharding, mesh_scope
from align.training.checkpoint import Checkpointer
from align.training.loop import STOP, NonFiniteLoss, next_batch, sigterm_flag
from align.training.metrics import MetricsWriter
from align.training.state import TrainState, create_train_state, shard_train_state, train_state_shardings

Iterate = Callable[[TrainState, Mapping[str, Any], jax.Array], tuple[TrainState, jax.Array, dict]]


@dataclasses.dataclass(frozen=True)
class RLLoopConfig:
    iterations: int
    checkpoint_every: int = 0  # iterations between checkpoints; 0: only at the end
    progress: bool = True

    def __post_init__(self):
        checks.at_least(self, 0, "iterations", "checkpoint_every")


@dataclasses.dataclass
class RLResult:
    state: TrainState
    iteration: int
    kl_coef: float
    stopped: str  # done | sigterm | data_exhausted
    logs: list[dict]
    data_position: Mapping | None


@dataclasses.dataclass(frozen=True)
class Resumed:
    state: TrainState
    iteration: int
    kl_coef: float
    data_position: Mapping | None


def owned_train_state(
    model, optimizer, *, seed: int = 0, trainable=None, mesh: Mesh | None = None
) -> TrainState:
    """A TrainState holding its own copy of `model`'s weights, sharded over `mesh` by the rules table
    (align.model.sharding), or on the first device without a mesh.

    The jitted step donates the state's buffers, and in RL the model passed here is usually also the
    frozen reference: without the copy, the first update would free the reference's weights.
    """
    trainable = nnx.Param if trainable is None else trainable
    state = jax.tree.map(jnp.copy, create_train_state(model, optimizer, seed=seed, trainable=trainable))
    if mesh is not None:
        return shard_train_state(state, mesh)
    # Committed to the default device like a restored checkpoint's arrays, so that a resumed run
    # hits the same compiled programs (jit keys on whether an input is committed).
    return jax.device_put(state, jax.devices()[0])


def rl_shardings(state: TrainState, mesh: Mesh) -> tuple[TrainState, NamedSharding]:
    """(state shardings, row sharding) for make_ppo_iteration / make_grpo_iteration on `mesh`.

    The state shards by the rules table; the rollout's rows (prompts, sampled tokens, log-probs,
    advantages) split over the data-parallel axes (data x fsdp), as the other stages' batches do.
    """
    return train_state_shardings(state, mesh), batch_sharding(mesh, 1)


def placed(step: Callable, rows: NamedSharding | None) -> Callable:
    """step(state, batch) with `batch` first placed with `rows` (jit refuses a committed input whose
    sharding differs from its in_shardings, and a minibatch gathered from the rollout has its own)."""
    if rows is None:
        return step
    return lambda state, batch: step(state, jax.device_put(dict(batch), rows))


def in_mesh(iterate: Callable, rows: NamedSharding | None) -> Callable:
    """iterate(...) run with rows' mesh in context (jax.set_mesh), so the rollout's jitted decoding and
    scoring trace the model's activation constraints (align.model.sharding.constrain); as is without."""
    if rows is None:
        return iterate

    def run(*args, **kwargs):
        with mesh_scope(rows.mesh):
            return iterate(*args, **kwargs)

    return run


@dataclasses.dataclass(frozen=True)
class FromState:
    """A frozen model (or reward function) rebuilt from the train state at every iteration.

    See `shared_frozen`: it lets the reference reuse the train state's frozen arrays instead of
    holding its own copy of them.
    """

    build: Callable[[TrainState], Any]


def resolve(x, state: TrainState):
    """`x` itself, or x.build(state) for a FromState."""
    return x.build(state) if isinstance(x, FromState) else x


def shared_frozen(
    model: nnx.Module, trainable, path: str | None = None
) -> Callable[[TrainState], nnx.Module]:
    """state -> a frozen copy of `model` (as it is now) that shares the state's frozen arrays.

    `model` must be the model the train state started from (its `path` sub-module, e.g. "policy" of
    a PolicyAndValue state), split with the same `trainable` filter. Only the trainable part is copied:
    the frozen part (e.g. Gemma's [V, D] embedding table under trainable="no_embeddings") is never
    updated, so the state's current frozen arrays are the model's own. They must be fetched anew from
    each state: the step donates them, so the arrays of a previous state are invalid.
    """
    graphdef, params, _ = nnx.split(model, trainable, ...)
    params = jax.tree.map(jnp.copy, params)

    def build(state: TrainState) -> nnx.Module:
        frozen = state.frozen
        if path is not None:  # a sub-module with nothing frozen has no entry at all
            frozen = frozen[path] if path in frozen else nnx.State({})
        return nnx.merge(graphdef, params, frozen)

    return build


def resume(checkpointer: Checkpointer, like: TrainState, shardings=None) -> Resumed | None:
    """The latest checkpoint of an RL run (restored into `like`'s tree, placed with `shardings`, e.g.
    rl_shardings(...)[0]; default the first device), or None when there is none."""
    restored = checkpointer.restore_latest(like, shardings)
    if restored is None:
        return None
    rl = restored.manifest.get("rl")
    if rl is None:
        raise ValueError(
            f"{checkpointer.directory}/{restored.step}: checkpoint manifest has no 'rl' section "
            "(iteration, kl_coef): it was not written by an RL run"
        )
    return Resumed(
        restored.state, int(rl["iteration"]), float(rl["kl_coef"]), restored.manifest["data_position"]
    )


def _bar(enabled: bool, start: int, total: int):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=start, desc="rl", unit="it", dynamic_ncols=True)


def _report(iteration: int, row: Mapping, writer: MetricsWriter | None, bar) -> None:
    """One iteration's metrics to the JSONL / TensorBoard writer and the progress bar."""
    if writer is not None:
        writer.write(iteration, row)
    if bar is not None:
        bar.update(1)
        nan = float("nan")
        bar.set_postfix(
            reward=f"{row.get('reward/mean', nan):.3f}", kl=f"{row.get('kl/ref', nan):.3f}", refresh=False
        )


def _check_finite(iteration: int, metrics: Mapping, checkpointer: Checkpointer | None) -> None:
    bad = {k: v for k, v in metrics.items() if not np.isfinite(v)}
    if bad:
        last = None if checkpointer is None else checkpointer.latest_step()
        raise NonFiniteLoss(
            f"non-finite RL metrics at iteration {iteration}: {bad}; the latest checkpoint "
            f"(optimizer step {last}) is the last good one: resume from it with a lower lr"
        )


def rl_loop(
    iterate: Iterate,
    state: TrainState,
    prompt_batches: Iterator,
    config: RLLoopConfig,
    *,
    kl_coef: float,
    start_iteration: int = 0,
    checkpointer: Checkpointer | None = None,
    writer: MetricsWriter | None = None,
    data_position: Mapping | None = None,
) -> RLResult:
    """Run iterations start_iteration .. config.iterations (see the module docstring)."""
    it, logs, stopped = start_iteration, [], "done"
    coef = jnp.asarray(kl_coef, jnp.float32)
    bar = _bar(config.progress, it, config.iterations)

    def save() -> None:
        if checkpointer is not None:
            checkpointer.save(
                state, data_position=data_position, extra={"rl": {"iteration": it, "kl_coef": float(coef)}}
            )

    with sigterm_flag() as term:
        try:
            while it < config.iterations:
                item = next_batch(prompt_batches, term)
                if item is STOP:
                    stopped = "sigterm"
                    break
                if item is None:
                    stopped = "data_exhausted"
                    break
                prompts, position = item
                t0 = time.perf_counter()
                state, coef, metrics = iterate(state, prompts, coef)
                metrics = {k: float(distributed.host_array(v)) for k, v in metrics.items()}
                it += 1
                _check_finite(it, metrics, checkpointer)
                data_position = position
                row = {**metrics, "kl_coef": float(coef), "iteration_seconds": time.perf_counter() - t0}
                logs.append({"iteration": it, **row})
                _report(it, row, writer, bar)
                if term["set"]:
                    stopped = "sigterm"
                    break
                if config.checkpoint_every and it % config.checkpoint_every == 0 and it < config.iterations:
                    save()
            save()
            if checkpointer is not None:
                checkpointer.wait()
        finally:
            if bar is not None:
                bar.close()
    return RLResult(state, it, float(coef), stopped, logs, data_position)
