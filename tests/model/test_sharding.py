"""Sharded forward on 8 fake CPU devices equals the unsharded forward; every weight names its axes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from align.model import Decoder, ModelConfig
from align.model.sharding import (
    MeshConfig,
    batch_sharding,
    make_mesh,
    shard_model,
    sharded_init,
    state_shardings,
)

pytestmark = pytest.mark.skipif(jax.device_count() < 8,
                                reason="needs XLA_FLAGS=--xla_force_host_platform_device_count=8")


def _inputs(B=8, T=12, vocab=512):
    tokens = jnp.asarray(np.random.default_rng(0).integers(0, vocab, (B, T)), jnp.int32)
    return tokens, jnp.broadcast_to(jnp.arange(T), (B, T)), jnp.ones((B, T), jnp.int32)


def test_every_param_has_logical_axes():
    model = Decoder(ModelConfig.tiny(), rngs=nnx.Rngs(0))
    for path, var in nnx.to_flat_state(nnx.state(model, nnx.Param)):
        axes = var.get_metadata().get("axes")
        assert axes is not None and len(axes) == var.ndim, path


@pytest.mark.parametrize("mesh_cfg", [MeshConfig(data=2, fsdp=2, tensor=2),
                                      MeshConfig(data=1, fsdp=4, tensor=2)])
def test_sharded_forward_equals_unsharded(mesh_cfg):
    cfg = ModelConfig.tiny()
    ref_model = Decoder(cfg, rngs=nnx.Rngs(0))
    tokens, positions, segments = _inputs()
    ref = ref_model(tokens, positions, segments).logits

    mesh = make_mesh(mesh_cfg)
    model = shard_model(Decoder(cfg, rngs=nnx.Rngs(0)), mesh)
    q = model.layers[0].attn.q[...]
    assert q.sharding.spec == jax.sharding.PartitionSpec("fsdp", "tensor", None)  # [D, N, H]
    bs = batch_sharding(mesh)
    out = nnx.jit(lambda m, t, p, s: m(t, p, s).logits)(
        model, *(jax.device_put(x, bs) for x in (tokens, positions, segments)))
    np.testing.assert_allclose(out, ref, atol=1e-5, rtol=1e-5)


def test_sharded_init_never_builds_unsharded_and_matches():
    cfg = ModelConfig.tiny()
    mesh = make_mesh(MeshConfig(data=2, fsdp=2, tensor=2))
    model = sharded_init(lambda: Decoder(cfg, rngs=nnx.Rngs(0)), mesh)
    ref = Decoder(cfg, rngs=nnx.Rngs(0))
    np.testing.assert_allclose(model.embedder.table[...], ref.embedder.table[...])
    expected = state_shardings(nnx.state(model), mesh)
    got = jax.tree.map(lambda v: v.sharding, nnx.state(model))
    assert jax.tree.leaves(got) == jax.tree.leaves(expected)


def test_sharded_generate_in_cpu_layout_equals_unsharded():
    from align.sampling import SamplingConfig, generate

    cfg = ModelConfig.tiny()
    tokens, _, _ = _inputs(T=5)
    lengths = jnp.full((8,), 5, jnp.int32)
    sampling = SamplingConfig(max_new_tokens=6)
    want = generate(Decoder(cfg, rngs=nnx.Rngs(0)), tokens, lengths, sampling, cpu_layout=False)
    mesh = make_mesh(MeshConfig(data=2, fsdp=2, tensor=2))
    model = shard_model(Decoder(cfg, rngs=nnx.Rngs(0)), mesh)
    bs = batch_sharding(mesh)
    rows = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(*bs.spec[:1]))
    got = generate(model, jax.device_put(tokens, bs), jax.device_put(lengths, rows), sampling,
                   cpu_layout=True)
    np.testing.assert_array_equal(got.tokens, want.tokens)
    np.testing.assert_allclose(got.logprobs, want.logprobs, atol=1e-5)
