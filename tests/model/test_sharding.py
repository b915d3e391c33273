"""Sharded forward on 8 fake CPU devices equals the unsharded forward; every weight names its axes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import NamedSharding

from align.model import Decoder, ModelConfig
from align.model.sharding import (
    MeshConfig,
    batch_sharding,
    make_mesh,
    shard_model,
    sharded_init,
)

P = jax.sharding.PartitionSpec


def setup_module():
    # tests/conftest.py always sets 8 fake CPU devices: fewer means the set-up broke, not "skip".
    assert jax.device_count() == 8, f"{jax.device_count()} devices: conftest.py sets XLA_FLAGS for 8"


def _inputs(B=8, T=12, vocab=512):
    tokens = jnp.asarray(np.random.default_rng(0).integers(0, vocab, (B, T)), jnp.int32)
    return tokens, jnp.broadcast_to(jnp.arange(T), (B, T)), jnp.ones((B, T), jnp.int32)


def test_every_param_has_logical_axes():
    model = Decoder(ModelConfig.tiny(), rngs=nnx.Rngs(0))
    for path, var in nnx.to_flat_state(nnx.state(model, nnx.Param)):
        axes = var.get_metadata().get("axes")
        assert axes is not None and len(axes) == var.ndim, path


@pytest.mark.parametrize(
    "mesh_cfg", [MeshConfig(data=2, fsdp=2, tensor=2), MeshConfig(data=1, fsdp=4, tensor=2)]
)
def test_sharded_forward_equals_unsharded(mesh_cfg):
    cfg = ModelConfig.tiny()
    ref_model = Decoder(cfg, rngs=nnx.Rngs(0))
    tokens, positions, segments = _inputs()
    ref = ref_model(tokens, positions, segments).logits

    mesh = make_mesh(mesh_cfg)
    model = shard_model(Decoder(cfg, rngs=nnx.Rngs(0)), mesh)
    q = model.layers[0].attn.q[...]
    assert q.sharding.spec == P("fsdp", "tensor", None)  # [D, N, H]
    bs = batch_sharding(mesh)
    out = nnx.jit(lambda m, t, p, s: m(t, p, s).logits)(
        model, *(jax.device_put(x, bs) for x in (tokens, positions, segments))
    )
    np.testing.assert_allclose(out, ref, atol=1e-5, rtol=1e-5)


# tiny(): V 512, D 64, N 4, K 2, H 16, F 128 on data=2 x fsdp=2 x tensor=2. Written out from the rules
# table in align/model/sharding.py (embed -> fsdp; vocab, heads, mlp -> tensor; kv heads replicated).
EXPECTED = {  # path -> (PartitionSpec, per-device shard shape)
    ("embedder", "table"): (P("tensor", "fsdp"), (256, 32)),  # [V, D]
    ("layers", 0, "attn", "q"): (P("fsdp", "tensor", None), (32, 2, 16)),  # [D, N, H]
    ("layers", 0, "attn", "k"): (P("fsdp", None, None), (32, 2, 16)),  # [D, K, H]
    ("layers", 1, "attn", "o"): (P("tensor", None, "fsdp"), (2, 16, 32)),  # [N, H, D]
    ("layers", 0, "mlp", "gate"): (P("fsdp", "tensor"), (32, 64)),  # [D, F]
    ("layers", 1, "mlp", "down"): (P("tensor", "fsdp"), (64, 32)),  # [F, D]
    ("final_norm", "scale"): (P(None), (64,)),  # [D] replicated
}


def test_sharded_init_never_builds_unsharded_and_matches(monkeypatch):
    cfg = ModelConfig.tiny()
    mesh = make_mesh(MeshConfig(data=2, fsdp=2, tensor=2))
    jitted, real_jit = [], jax.jit

    def spy(fn, **kwargs):  # records the jitted initialiser, to inspect the program it compiles
        out = real_jit(fn, **kwargs)
        jitted.append((out, kwargs))
        return out

    monkeypatch.setattr(jax, "jit", spy)
    model = sharded_init(lambda: Decoder(cfg, rngs=nnx.Rngs(0)), mesh)
    monkeypatch.undo()
    ref = Decoder(cfg, rngs=nnx.Rngs(0))
    state, ref_state = nnx.to_flat_state(nnx.state(model)), dict(nnx.to_flat_state(nnx.state(ref)))
    for path, var in state:  # the same numbers as an unsharded (eager) init, up to jit's float rounding
        np.testing.assert_allclose(
            np.asarray(var[...]), np.asarray(ref_state[path][...]), rtol=1e-6, atol=1e-7, err_msg=str(path)
        )
    params = dict(state)
    for path, (spec, shard) in EXPECTED.items():
        x = params[path][...]
        assert x.sharding.is_equivalent_to(NamedSharding(mesh, spec), x.ndim), (path, x.sharding.spec)
        assert len(x.addressable_shards) == 8, path
        assert {s.data.shape for s in x.addressable_shards} == {shard}, path
    # The initialiser is one program compiled with these output shardings, so XLA partitions it and no
    # device ever holds the whole model: its per-device output is its shards only, and output plus
    # scratch stay below the unsharded model's size (an init without out_shardings outputs all of it).
    ((init, kwargs),) = [(f, kw) for f, kw in jitted if "out_shardings" in kw]
    compiled = init.lower().compile()
    out = jax.tree.leaves(compiled.output_shardings)
    assert [s.spec for s in out] == [v[...].sharding.spec for _, v in state]
    whole = sum(v[...].nbytes for _, v in state)
    per_device = sum(v[...].addressable_shards[0].data.nbytes for _, v in state)
    assert per_device < whole / 3
    memory = compiled.memory_analysis()
    assert memory.output_size_in_bytes <= per_device + 1024  # + the rng key and counter
    assert memory.output_size_in_bytes + memory.temp_size_in_bytes < whole


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
    got = generate(
        model, jax.device_put(tokens, bs), jax.device_put(lengths, rows), sampling, cpu_layout=True
    )
    np.testing.assert_array_equal(got.tokens, want.tokens)
    np.testing.assert_allclose(got.logprobs, want.logprobs, atol=1e-5)


def test_rows_split_over_the_data_axes_or_replicate_when_they_do_not_divide():
    from align.model.sharding import shard_rows

    mesh = make_mesh(MeshConfig(data=2, fsdp=2, tensor=2))
    even, odd, scalar = shard_rows((np.zeros((8, 3)), np.zeros((6, 3)), np.float32(1)), mesh)
    assert even.sharding.spec == P(("data", "fsdp"), None) and even.addressable_shards[0].data.shape == (2, 3)
    assert odd.sharding.spec == P(None, None) and odd.addressable_shards[0].data.shape == (6, 3)
    assert scalar.sharding.spec == P() and float(scalar) == 1.0


def test_jit_on_mesh_traces_the_constraints_under_the_mesh_only():
    from align.model import axes as ax
    from align.model.sharding import constrain, jit_on_mesh

    def f(x, *, scale):
        return constrain(x * scale, ax.RESIDUAL)

    mesh = make_mesh(MeshConfig(data=2, fsdp=2), jax.devices()[:4])
    x = jnp.ones((4, 3, 2))
    text = jit_on_mesh(f, mesh, static_argnames="scale").lower(x, scale=2.0).as_text()
    assert text.count("sdy.sharding_constraint") == 1 and '[{"data", "fsdp"}, {}, {}]' in text
    assert (
        "sharding_constraint"
        not in jit_on_mesh(f, None, static_argnames="scale").lower(x, scale=2.0).as_text()
    )
    assert "sharding_constraint" not in jax.jit(f, static_argnames="scale").lower(x, scale=2.0).as_text()
    np.testing.assert_array_equal(jit_on_mesh(f, mesh, static_argnames="scale")(x, scale=2.0), 2 * x)


def test_several_processes_place_only_their_own_shards(monkeypatch):
    """`place` on several processes builds each weight from the shards this process's devices hold
    (make_array_from_callback, no cross-process check); on one process it is jax.device_put. Both give
    the same arrays with the same shardings (here the callback path is forced on one process)."""
    from align import distributed
    from align.model import sharding

    mesh = make_mesh(MeshConfig(data=2, fsdp=2, tensor=2))
    state = nnx.state(Decoder(ModelConfig.tiny(), rngs=nnx.Rngs(0)))
    shardings = sharding.state_shardings(state, mesh)
    direct = sharding.place(state, shardings)
    asked = []
    real = jax.make_array_from_callback

    def recording(shape, s, callback):
        asked.append(len(s.addressable_devices))
        return real(shape, s, callback)

    monkeypatch.setattr(distributed, "process_count", lambda: 2)
    monkeypatch.setattr(jax, "make_array_from_callback", recording)
    built = sharding.place(state, shardings)
    flat_direct, flat_built = nnx.to_flat_state(direct), nnx.to_flat_state(built)
    assert len(asked) == len(flat_built) > 10  # every weight through the callback
    for (path, a), (_, b) in zip(flat_direct, flat_built):
        assert b[...].sharding == a[...].sharding, path
        np.testing.assert_array_equal(np.asarray(b[...]), np.asarray(a[...]))
