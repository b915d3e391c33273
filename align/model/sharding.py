"""All partitioning decisions in one place: a mesh from a small config, and one logical-axis rules table.

Mesh axes: data (pure data parallel), fsdp (data parallel with sharded params/optimizer state: ZeRO-3),
tensor (Megatron-style within a layer). The model names only logical axes (align.model.axes).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools

import jax
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from align import distributed
from align.errors import InvalidInput
from align.model import axes as ax

# logical axis -> mesh axis (or tuple of mesh axes, or None = replicated)
LOGICAL_RULES: dict[str | None, str | tuple[str, ...] | None] = {
    ax.BATCH: ("data", "fsdp"),  # activations: the batch is split over every data-parallel axis
    ax.LENGTH: None,
    # Params: the model dim is split over fsdp (it appears in every weight, so all of them shard),
    # heads / mlp / vocab over tensor (the Megatron split: column-parallel in, row-parallel out).
    ax.EMBED: "fsdp",
    ax.VOCAB: "tensor",
    ax.HEADS: "tensor",
    ax.KV_HEADS: None,  # Gemma's K is 1..4: too few to split; kv projections are replicated over tensor
    ax.HEAD_DIM: None,
    ax.MLP: "tensor",
    # Activations between blocks: rows over every data-parallel axis, as the batch; without this the
    # partitioner may instead split the matmuls over the model dim and all-reduce whole-batch activations
    # (benchmarks/RESULTS.md, memory plan). Row-parallel outputs are summed over tensor, so D is whole.
    ax.ACT_BATCH: ("data", "fsdp"),
    ax.ACT_LENGTH: None,
    ax.ACT_EMBED: None,
    None: None,
}


@dataclasses.dataclass(frozen=True)
class MeshConfig:
    """Mesh shape; -1 on one axis takes the devices left over (default: everything data parallel)."""

    data: int = -1
    fsdp: int = 1
    tensor: int = 1

    def shape(self, n_devices: int) -> tuple[int, int, int]:
        dims = [self.data, self.fsdp, self.tensor]
        known = int(np.prod([d for d in dims if d != -1]))
        if dims.count(-1) > 1 or n_devices % known:
            raise InvalidInput(
                f"mesh (data, fsdp, tensor) = {tuple(dims)} does not fit the {n_devices} device(s) here: "
                f"the known axes' product must divide the device count and at most one axis be -1{_HINT}"
            )
        dims = [n_devices // known if d == -1 else d for d in dims]
        if int(np.prod(dims)) != n_devices:
            raise InvalidInput(
                f"mesh (data, fsdp, tensor) = {tuple(dims)} uses {int(np.prod(dims))} devices, "
                f"{n_devices} are here{_HINT}"
            )
        return tuple(dims)


_HINT = " (on a CPU, XLA_FLAGS=--xla_force_host_platform_device_count=N makes N devices)"


def make_mesh(config: MeshConfig = MeshConfig(), devices=None) -> Mesh:
    devices = jax.devices() if devices is None else devices
    shape = config.shape(len(devices))
    return Mesh(np.asarray(devices).reshape(shape), ("data", "fsdp", "tensor"))


def logical_to_spec(names, rules=LOGICAL_RULES) -> P:
    """PartitionSpec for a tuple of logical names; a mesh axis is used at most once per array."""
    used, spec = set(), []
    for name in names:
        target = rules.get(name)
        axes = (target,) if isinstance(target, str) else tuple(target or ())
        axes = tuple(a for a in axes if a not in used)
        used.update(axes)
        spec.append(None if not axes else axes[0] if len(axes) == 1 else axes)
    return P(*spec)


def _fits(spec: P, shape, mesh: Mesh) -> P:
    """Drop a split that does not divide the dimension (e.g. vocab 13 over 2): replicate it instead."""
    out = []
    for dim, axes in zip(shape, tuple(spec) + (None,) * (len(shape) - len(spec))):
        names = (axes,) if isinstance(axes, str) else tuple(axes or ())
        size = int(np.prod([mesh.shape[a] for a in names])) if names else 1
        out.append(axes if dim % size == 0 else None)
    return P(*out)


def constrain(x: jax.Array, names, rules=LOGICAL_RULES) -> jax.Array:
    """`x` constrained to the rules' sharding of its logical `names` when a mesh with the rules' axes is in
    context (`mesh_scope`, jax.set_mesh); otherwise `x` itself, so one-device code is untouched."""
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty or not {"data", "fsdp", "tensor"} <= set(mesh.axis_names):
        return x
    return jax.lax.with_sharding_constraint(x, _fits(logical_to_spec(names, rules), x.shape, mesh))


def mesh_scope(mesh: Mesh | None, *, tracing: bool = False):
    """Context in which `constrain` sees `mesh` (None: a no-op). Outside jit it is jax.set_mesh; inside a
    function being traced (tracing=True) only the abstract mesh is set, which jax allows there."""
    if mesh is None:
        return contextlib.nullcontext()
    return jax.sharding.use_abstract_mesh(mesh.abstract_mesh) if tracing else jax.set_mesh(mesh)


def jit_on_mesh(fn, mesh: Mesh | None, **jit_kwargs):
    """jax.jit(fn, **jit_kwargs) that traces `fn` under `mesh_scope(mesh, tracing=True)`, so the model's
    activation constraints (`constrain`) apply in a forward jitted outside any mesh context (evaluation,
    feature passes); mesh None: plain jax.jit(fn). One jitted function per (fn, mesh): build it once."""
    if mesh is None:
        return jax.jit(fn, **jit_kwargs)

    @functools.wraps(fn)  # keeps fn's signature, which static_argnames are looked up in
    def traced(*args, **kwargs):
        with mesh_scope(mesh, tracing=True):
            return fn(*args, **kwargs)

    return jax.jit(traced, **jit_kwargs)


def mesh_of(shardings) -> Mesh | None:
    """The mesh of the first NamedSharding in a tree of shardings (None when there is none)."""
    leaves = jax.tree.leaves(shardings, is_leaf=lambda s: isinstance(s, NamedSharding))
    return next((s.mesh for s in leaves if isinstance(s, NamedSharding)), None)


def state_shardings(state: nnx.State, mesh: Mesh, rules=LOGICAL_RULES):
    """NamedShardings for every Variable in `state`, from its `axes` metadata (replicated if none)."""

    def one(var):
        names = var.get_metadata().get("axes") or (None,) * len(var.shape)
        return NamedSharding(mesh, _fits(logical_to_spec(names, rules), var.shape, mesh))

    return jax.tree.map(one, state, is_leaf=lambda x: isinstance(x, nnx.Variable))


def batch_sharding(mesh: Mesh, ndim: int = 2, rules=LOGICAL_RULES) -> NamedSharding:
    """Sharding of a [B, ...] batch array: B over the data-parallel axes."""
    return NamedSharding(mesh, logical_to_spec((ax.BATCH,) + (None,) * (ndim - 1), rules))


def rows_sharding(mesh: Mesh, shape, rules=LOGICAL_RULES) -> NamedSharding:
    """Sharding of one [B, ...] array: B over the data-parallel axes, replicated when they do not divide B
    (an evaluation's last, padded batch may have any row count; a scalar is replicated)."""
    if not len(shape):
        return NamedSharding(mesh, P())
    spec = logical_to_spec((ax.BATCH,) + (None,) * (len(shape) - 1), rules)
    return NamedSharding(mesh, _fits(spec, shape, mesh))


def shard_rows(tree, mesh: Mesh, rules=LOGICAL_RULES):
    """Every array of `tree` (numpy or jax) placed with `rows_sharding`: a batch spread over the mesh.

    On several processes a host batch (numpy, or a jax.Array this process holds whole), the same on
    every process, becomes a global array from only the rows this process's devices hold
    (`distributed.process_rows`): jax.device_put would first gather the whole value from every process
    to check that they agree, a collective per array of every batch."""

    def place(x):
        sharding = rows_sharding(mesh, np.shape(x), rules)
        global_already = isinstance(x, jax.Array) and not x.is_fully_addressable
        if jax.process_count() == 1 or global_already or not np.ndim(x):
            return jax.device_put(x, sharding)
        x = np.asarray(x)
        return distributed.global_array(x[distributed.process_rows(sharding, len(x))], sharding, len(x))

    return jax.tree.map(place, tree)


def place(tree, shardings):
    """`tree` (values this process holds whole, the same on every process: loaded weights, a fresh
    train state) placed with `shardings` (NamedShardings leaf for leaf, or a prefix of `tree`).

    One process: jax.device_put. Several: each process builds only the shards its own devices hold,
    sliced from its copy (jax.make_array_from_callback). jax.device_put would first check that the
    processes agree by gathering every value from every process (multihost_utils.assert_equal): a
    collective per weight, and each process holding every process's copy of each weight meanwhile."""
    if distributed.process_count() == 1:
        return jax.device_put(tree, shardings)
    return jax.tree.map(lambda s, sub: jax.tree.map(lambda x: _own_shards(x, s), sub), shardings, tree)


def _own_shards(x, sharding: NamedSharding) -> jax.Array:
    """The global array of value `x` with `sharding`, from the shards this process's devices hold."""
    if isinstance(x, jax.Array) and (
        not x.is_fully_addressable or jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)
    ):
        return jax.device_put(x, sharding)  # already global (a reshard), or a PRNG key (no numpy view)
    host = np.asarray(x)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def shard_state(state: nnx.State, mesh: Mesh, rules=LOGICAL_RULES) -> nnx.State:
    """A model's state placed on `mesh` by the rules table (`place`: each process its own shards)."""
    return place(state, state_shardings(state, mesh, rules))


def shard_model(model: nnx.Module, mesh: Mesh, rules=LOGICAL_RULES) -> nnx.Module:
    """Place an existing model's variables according to the rules table (in place)."""
    nnx.update(model, shard_state(nnx.state(model), mesh, rules))
    return model


def sharded_init(make_model, mesh: Mesh, rules=LOGICAL_RULES) -> nnx.Module:
    """Build a model directly sharded: eval_shape -> shardings -> jit(init, out_shardings).

    A full-size model is never materialised on one device.
    """
    abstract = nnx.eval_shape(make_model)
    graphdef, abs_state = nnx.split(abstract)
    shardings = state_shardings(abs_state, mesh, rules)

    @jax.jit
    def init():
        return nnx.state(make_model())

    state = jax.jit(init, out_shardings=shardings)()
    return nnx.merge(graphdef, state)
