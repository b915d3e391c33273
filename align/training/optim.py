"""Optimizer from a small frozen config: AdamW + warmup/decay schedule + global-norm clipping.

Which parameters train is decided in two ways, pick one per run:
  * by splitting the model (align.training.state): only the `trainable` filter's Variables are in the
    optimizer at all, so frozen weights cost no gradient or Adam memory (the default);
  * by an optax mask (`make_optimizer(..., trainable_mask=...)`): every parameter is in the state,
    the frozen ones get zero updates (optax.multi_transform). Handy when the tree is fixed already.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import optax
from flax import nnx

from align import checks

SCHEDULES = ("cosine", "linear", "constant")


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    """AdamW hyper-parameters; `total_steps` counts optimizer updates (after gradient accumulation)."""

    learning_rate: float = 1e-5
    warmup_steps: int = 0
    total_steps: int = 1000
    weight_decay: float = 0.0
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    clip_norm: float | None = 1.0  # None: no clipping
    schedule: str = "cosine"  # cosine | linear | constant (after the linear warmup)
    min_lr_ratio: float = 0.0  # the decay ends at learning_rate * min_lr_ratio

    def __post_init__(self):
        # a negative learning rate trains by gradient ascent, a negative clip norm flips gradients
        checks.positive_number(self, "learning_rate", "eps")
        checks.positive_number(self, "clip_norm", optional=True)
        checks.at_least(self, 1, "total_steps")
        checks.at_least(self, 0, "warmup_steps")
        checks.non_negative(self, "weight_decay")
        checks.fraction(self, "b1", "b2")
        checks.fraction(self, "min_lr_ratio", closed=True)
        if self.schedule not in SCHEDULES:
            raise ValueError(f"OptimConfig.schedule={self.schedule!r}: expected one of {SCHEDULES}")
        if not 0 <= self.warmup_steps <= self.total_steps:
            raise ValueError(
                f"OptimConfig: warmup_steps={self.warmup_steps} must lie in [0, total_steps="
                f"{self.total_steps}]"
            )


def learning_rate_schedule(config: OptimConfig) -> optax.Schedule:
    """lr(count): linear 0 -> peak over warmup_steps, then cosine / linear decay or constant.

    optax evaluates the schedule at the update count *before* the update, so with warmup the first
    update uses lr(0) = 0, as transformers' get_cosine_schedule_with_warmup does.
    """
    c = config
    peak, end = c.learning_rate, c.learning_rate * c.min_lr_ratio
    decay_steps = max(c.total_steps - c.warmup_steps, 1)
    if c.schedule == "cosine":
        decay = optax.cosine_decay_schedule(peak, decay_steps, alpha=c.min_lr_ratio)
    elif c.schedule == "linear":
        decay = optax.linear_schedule(peak, end, decay_steps)
    else:
        decay = optax.constant_schedule(peak)
    if c.warmup_steps == 0:
        return decay
    warmup = optax.linear_schedule(0.0, peak, c.warmup_steps)
    return optax.join_schedules([warmup, decay], [c.warmup_steps])


def decay_mask(params: Any) -> Any:
    """True for matrices only: no weight decay on norm scales and biases (the usual AdamW practice)."""
    return jax.tree.map(lambda p: p.ndim >= 2, params)


def make_optimizer(config: OptimConfig, *, trainable_mask: Any = None) -> optax.GradientTransformation:
    """clip_by_global_norm -> AdamW(schedule); with `trainable_mask` (a pytree of bools shaped like the
    params) the False leaves get zero updates and keep no Adam moments."""
    parts = []
    if config.clip_norm is not None:
        # Clip the global norm before Adam: the norm is of the raw (accumulated) gradient.
        parts.append(optax.clip_by_global_norm(config.clip_norm))
    parts.append(
        optax.adamw(
            learning_rate_schedule(config),
            b1=config.b1,
            b2=config.b2,
            eps=config.eps,
            weight_decay=config.weight_decay,
            mask=decay_mask,
        )
    )
    tx = optax.chain(*parts)
    if trainable_mask is None:
        return tx
    labels = jax.tree.map(lambda t: "train" if t else "freeze", trainable_mask)
    return optax.multi_transform({"train": tx, "freeze": optax.set_to_zero()}, labels)


# ---- trainable filters (nnx filters for align.training.state.split_model) ---------------------


def trainable_filter(kind: str = "all"):
    """An nnx filter for the trainable Variables.

    all            every nnx.Param
    no_embeddings  every nnx.Param except the embedding table (Gemma's tied [V, D] table is most of a
                   small model: freezing it saves its gradient and 2 Adam moments)
    lora           only LoRA adapters (align.training.lora)
    """
    if kind == "all":
        return nnx.Param
    if kind == "no_embeddings":
        return nnx.All(nnx.Param, nnx.Not(nnx.PathContains("embedder")))
    if kind == "lora":
        return nnx.LoRAParam
    raise ValueError(f"trainable={kind!r}: expected one of all, no_embeddings, lora")


def excluding(filter_, *path_suffixes: tuple[str, ...]):
    """`filter_` minus Variables whose path ends with any of `path_suffixes` (e.g. ("head", "b"))."""
    suffixes = tuple(tuple(s) for s in path_suffixes)

    def ends_with(path, _value) -> bool:
        names = tuple(str(p) for p in path)
        return any(names[-len(s) :] == s for s in suffixes)

    return nnx.All(filter_, nnx.Not(ends_with))
