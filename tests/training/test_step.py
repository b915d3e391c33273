"""The jitted train step: gradient accumulation, packing, sharding, compile-once, non-finite guard.

Compiles are the slow part on CPU, so each jitted function here is compiled once (module fixtures) and
the model has a single layer.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from align.data import Tokenized, pack_batch, pad_batch
from align.model import Decoder, ModelConfig
from align.model.sharding import MeshConfig, batch_sharding, make_mesh
from align.training import (
    accumulate_gradients,
    create_train_state,
    make_train_step,
    sharded_train_state,
    split_micro_batches,
    train_state_shardings,
)
from align.training.metrics import finalize, weighted_sums
from pipelines.stages.sft import sft_loss

V, B, T, LR = 64, 8, 16, 0.5
CONFIG = ModelConfig.tiny(V).replace(num_layers=1, layer_types=("global",))
LOSS = sft_loss(chunk_size=32)


def make_model():
    return Decoder(CONFIG, rngs=nnx.Rngs(0))


def random_batch(seed=0, rows=B):
    rs = np.random.default_rng(seed)
    tokens = rs.integers(3, V, (rows, T)).astype(np.int32)
    # Uneven supervised-token counts per row, so an unweighted mean of micro-batch losses would differ.
    mask = (rs.random((rows, T)) < np.linspace(0.05, 0.95, rows)[:, None]).astype(np.float32)
    return {
        "tokens": tokens,
        "positions": np.tile(np.arange(T, dtype=np.int32), (rows, 1)),
        "segment_ids": np.ones((rows, T), np.int32),
        "targets": np.roll(tokens, -1, 1),
        "loss_mask": mask,
    }


def max_diff(a, b):
    return max(jax.tree.leaves(jax.tree.map(lambda x, y: float(jnp.max(jnp.abs(x - y))), a, b)))


def sgd_update(params, grads):
    return jax.tree.map(lambda p, g: p - LR * g, params, grads)


@pytest.fixture(scope="module")
def reference():
    """Gradients of batch 0 with 1 and 4 micro-batches, jax.grad of the loss on the whole batch (the
    reference, independent of accumulate_gradients), and the 4 micro-batch losses, in one compile."""
    state = create_train_state(make_model(), optax.sgd(LR))
    batch = jax.tree.map(jnp.asarray, random_batch())

    @jax.jit
    def grads(state, batch):
        g1, m1 = accumulate_gradients(LOSS, state, batch, state.rng, 1)
        g4, m4 = accumulate_gradients(LOSS, state, batch, state.rng, 4)

        def full_loss(params):  # the loss of one forward pass over all B rows
            return LOSS(nnx.merge(state.graphdef, params, state.frozen), batch, None)[0]

        loss, direct = jax.value_and_grad(full_loss)(state.params)
        micro = split_micro_batches(batch, 4)
        plain = [LOSS(state.model(), jax.tree.map(lambda x, i=i: x[i], micro), None)[0] for i in range(4)]
        return g1, m1, g4, m4, jnp.stack(plain), loss, direct, micro["loss_mask"].sum(axis=(1, 2))

    g1, m1, g4, m4, plain, loss, direct, n_micro = grads(state, batch)
    return {
        "state": state,
        "batch": batch,
        "g1": g1,
        "m1": m1,
        "g4": g4,
        "m4": m4,
        "plain": plain,
        "loss": loss,
        "direct": direct,
        "n_micro": n_micro,
    }


def test_micro_batch_split_is_strided():
    x = {"a": np.arange(8)}
    np.testing.assert_array_equal(split_micro_batches(x, 2)["a"], [[0, 2, 4, 6], [1, 3, 5, 7]])
    with pytest.raises(ValueError, match="grad_accum=3"):
        split_micro_batches(x, 3)


def test_weighted_metric_reduction_by_hand():
    # micro-batch 1: loss 2 over 1 token; micro-batch 2: loss 4 over 3 tokens -> (2 + 12) / 4 = 3.5
    s1 = weighted_sums({"loss": 2.0, "n_tokens": 1.0}, 1.0)
    s2 = weighted_sums({"loss": 4.0, "n_tokens": 3.0}, 3.0)
    assert finalize({k: s1[k] + s2[k] for k in s1}) == {"loss": 3.5, "n_tokens": 4.0, "weight": 4.0}


def test_grad_accumulation_equals_one_big_batch(reference):
    r = reference
    assert float(r["m1"]["n_tokens"]) == float(r["m4"]["n_tokens"]) == float(r["batch"]["loss_mask"].sum())
    # the reported loss is the whole batch's token mean: sum_i loss_i n_i / sum_i n_i over micro-batches
    loss_i, n_i = np.asarray(r["plain"], np.float64), np.asarray(r["n_micro"], np.float64)
    assert n_i.sum() == float(r["batch"]["loss_mask"].sum()) and len(set(n_i.tolist())) > 1
    token_mean = float((loss_i * n_i).sum() / n_i.sum())
    for m in (r["m1"], r["m4"]):
        np.testing.assert_allclose(float(m["loss"]), token_mean, rtol=1e-6)
    np.testing.assert_allclose(float(r["loss"]), token_mean, rtol=1e-6)
    # both gradients equal jax.grad of the full-batch loss
    scale = max(jax.tree.leaves(jax.tree.map(lambda g: float(jnp.max(jnp.abs(g))), r["direct"])))
    assert scale > 0
    assert max_diff(r["g1"], r["direct"]) < 1e-5 * scale
    assert max_diff(r["g4"], r["direct"]) < 1e-5 * scale
    # The test can fail: an equal-weight mean of the micro-batch losses is a different number.
    assert abs(float(np.mean(loss_i)) - token_mean) > 1e-2


def test_step_compiles_once_donates_and_applies_the_accumulated_gradient(reference):
    opt = optax.sgd(LR)
    step = make_train_step(LOSS, opt, grad_accum=2)
    state = create_train_state(make_model(), opt)
    old_leaf = jax.tree.leaves(state.params)[0]
    state, metrics = step(state, random_batch(seed=0))
    assert old_leaf.is_deleted()  # donated: the step reused the input buffers
    assert max_diff(state.params, sgd_update(reference["state"].params, reference["direct"])) < 1e-5
    for i in (1, 2):
        state, metrics = step(state, random_batch(seed=i))
    assert step._cache_size() == 1
    assert int(state.step) == 3 and bool(metrics["finite"])
    assert set(metrics) >= {"loss", "n_tokens", "weight", "grad_norm", "finite"}


def test_bfloat16_params_keep_their_dtype_and_the_step_compiles_once():
    opt = optax.adamw(1e-3)
    model = Decoder(CONFIG, rngs=nnx.Rngs(0), param_dtype=jnp.bfloat16, dtype=jnp.bfloat16)
    step = make_train_step(LOSS, opt, grad_accum=2)
    state = create_train_state(model, opt)
    dtypes = lambda tree: {str(x.dtype) for x in jax.tree.leaves(tree) if jnp.ndim(x) > 0}  # noqa: E731
    for i in range(3):
        state, metrics = step(state, random_batch(seed=i))
    assert bool(metrics["finite"]) and step._cache_size() == 1
    assert dtypes(state.params) == {"bfloat16"}
    assert dtypes(state.opt_state) == {"bfloat16"}  # Adam's moments follow the params


def test_packed_batch_gives_the_same_loss_and_gradient_as_padded():
    rs = np.random.default_rng(1)
    docs = [Tokenized(rs.integers(3, V, n).astype(np.int32), rs.random(n) < 0.7) for n in (5, 9, 4, 7, 3, 6)]
    padded = jax.tree.map(jnp.asarray, pad_batch(docs, 12, rows=6))
    packed = jax.tree.map(jnp.asarray, pack_batch(docs, 16, rows=3))
    assert packed["segment_ids"].max() > 1  # really packed
    state = create_train_state(make_model(), optax.sgd(0.1))
    both = jax.jit(
        lambda s, a, b: (accumulate_gradients(LOSS, s, a, s.rng), accumulate_gradients(LOSS, s, b, s.rng))
    )
    (g_pad, m_pad), (g_pack, m_pack) = both(state, padded, packed)
    assert float(m_pad["n_tokens"]) == float(m_pack["n_tokens"]) > 0
    np.testing.assert_allclose(float(m_pack["loss"]), float(m_pad["loss"]), rtol=1e-5)
    assert max_diff(g_pad, g_pack) < 1e-5


def test_sharded_step_equals_unsharded(reference):
    assert len(jax.devices()) == 8, "conftest sets 8 fake CPU devices"
    opt = optax.sgd(LR)
    mesh = make_mesh(MeshConfig(data=2, fsdp=2, tensor=2))
    state = sharded_train_state(make_model, opt, mesh)
    shardings = train_state_shardings(state, mesh)
    step = make_train_step(LOSS, opt, shardings=(shardings, batch_sharding(mesh, 1)))
    sharded, metrics = step(state, random_batch())
    q = sharded.params["layers"][0]["attn"]["q"][...]
    assert q.sharding.spec == jax.sharding.PartitionSpec("fsdp", "tensor", None)
    assert len(q.addressable_shards) == 8 and q.addressable_shards[0].data.shape == (32, 2, 16)
    np.testing.assert_allclose(float(metrics["loss"]), float(reference["loss"]), rtol=1e-6)
    assert max_diff(sharded.params, sgd_update(reference["state"].params, reference["direct"])) < 1e-5
    assert int(sharded.step) == 1


def test_non_finite_loss_leaves_params_and_optimizer_unchanged():
    def nan_loss(model, batch, rng):
        loss, m = LOSS(model, batch, rng)
        return loss * jnp.nan, m

    opt = optax.adam(1e-3)
    state = create_train_state(make_model(), opt)
    new, metrics = make_train_step(nan_loss, opt, donate=False)(state, random_batch())
    assert not bool(metrics["finite"]) and int(new.step) == 1
    assert max_diff(state.params, new.params) == 0.0
    assert max_diff(state.opt_state, new.opt_state) == 0.0
