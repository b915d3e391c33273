"""TrainState: everything a step reads and writes, as one pytree; split/merge of an nnx model.

A model is split into (graphdef, trainable params, frozen rest). Only the trainable part is
differentiated and seen by the optimizer; the graphdef is static (part of the jit cache key) and
never checkpointed; everything else is arrays, so the whole state checkpoints and shards as a tree.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from align.model.sharding import LOGICAL_RULES, place, state_shardings


@flax.struct.dataclass
class TrainState:
    step: jax.Array  # int32 []: optimizer updates applied so far
    params: nnx.State  # trainable Variables: differentiated and updated
    opt_state: optax.OptState
    rng: jax.Array  # uint32 [2] (raw key, so it checkpoints as plain data): split once per step
    frozen: nnx.State  # every other Variable (frozen weights): carried along, never updated
    graphdef: nnx.GraphDef = flax.struct.field(pytree_node=False)

    def model(self) -> nnx.Module:
        """A module view of the current weights (shares no mutable state with the TrainState)."""
        return nnx.merge(self.graphdef, self.params, self.frozen)


def split_model(model: nnx.Module, trainable=nnx.Param) -> tuple[nnx.GraphDef, nnx.State, nnx.State]:
    """(graphdef, trainable state, frozen state); `trainable` is an nnx filter
    (see optim.trainable_filter)."""
    graphdef, params, frozen = nnx.split(model, trainable, ...)
    if not jax.tree.leaves(params):
        raise ValueError(f"the trainable filter {trainable!r} selects no parameter of {type(model).__name__}")
    return graphdef, params, frozen


def create_train_state(
    model: nnx.Module, optimizer: optax.GradientTransformation, *, seed: int = 0, trainable=nnx.Param
) -> TrainState:
    """A fresh state at step 0 around an existing (e.g. pretrained) model."""
    graphdef, params, frozen = split_model(model, trainable)
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state=optimizer.init(params),
        rng=jax.random.PRNGKey(seed),
        frozen=frozen,
        graphdef=graphdef,
    )


def abstract_train_state(
    make_model: Callable[[], nnx.Module], optimizer: optax.GradientTransformation, *, trainable=nnx.Param
) -> TrainState:
    """The state's shapes and dtypes (jax.ShapeDtypeStruct leaves) without allocating anything."""
    abstract_model = nnx.eval_shape(make_model)
    graphdef, params, frozen = split_model(abstract_model, trainable)
    opt_state = jax.eval_shape(optimizer.init, params)
    return TrainState(
        step=jax.ShapeDtypeStruct((), jnp.int32),
        params=params,
        opt_state=opt_state,
        rng=jax.ShapeDtypeStruct((2,), jnp.uint32),
        frozen=frozen,
        graphdef=graphdef,
    )


def _is_variable(x) -> bool:
    return isinstance(x, nnx.Variable)


def tree_shardings(tree: Any, mesh: Mesh, rules=LOGICAL_RULES) -> Any:
    """A sharding per leaf: Variables from their logical `axes` (the rules table), anything else replicated.

    Adam's moments are trees of the same Variables as the params (optax maps over them, which keeps
    the axes metadata), so they shard exactly like the parameter they belong to.
    """
    replicated = NamedSharding(mesh, PartitionSpec())

    def one(x):
        if _is_variable(x):
            return x.replace(state_shardings(x, mesh, rules))
        return replicated

    return jax.tree.map(one, tree, is_leaf=_is_variable)


def train_state_shardings(state: TrainState, mesh: Mesh, rules=LOGICAL_RULES) -> TrainState:
    """A TrainState of NamedShardings (leaf for leaf) for jit in/out_shardings and restores."""
    return tree_shardings(state, mesh, rules)


def shard_train_state(state: TrainState, mesh: Mesh, rules=LOGICAL_RULES) -> TrainState:
    """Place an existing state on `mesh` (e.g. after loading a pretrained model on the host)."""
    return place(state, train_state_shardings(state, mesh, rules))


def sharded_train_state(
    make_model: Callable[[], nnx.Module],
    optimizer: optax.GradientTransformation,
    mesh: Mesh,
    *,
    seed: int = 0,
    trainable=nnx.Param,
    rules=LOGICAL_RULES,
) -> TrainState:
    """Initialise directly sharded: eval_shape -> shardings -> jit(init, out_shardings).

    The full model is never materialised on one device (nanodo's _init_train_state, in NNX form).
    """
    abstract = abstract_train_state(make_model, optimizer, trainable=trainable)
    shardings = train_state_shardings(abstract, mesh, rules)

    def init():
        return create_train_state(make_model(), optimizer, seed=seed, trainable=trainable)

    return jax.jit(init, out_shardings=shardings)()


def with_shardings(abstract: Any, shardings: Any) -> Any:
    """ShapeDtypeStructs that carry target shardings (what Orbax restores into)."""
    return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, shardings)
