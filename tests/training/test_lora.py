"""LoRA: zero delta at init, the [I, O] view of each weight, merged == unmerged, only adapters train;
adapters on the activations: equal to the merge in float32, better than it in bfloat16, no [I, O] dW."""

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from align.model import Decoder, ModelConfig
from align.training import create_train_state, make_train_step, trainable_filter
from align.training.state import split_model
from align.training.lora import LoRA, LoRAConfig, add_lora, matrix_split, merge_lora
from pipelines.stages.sft import sft_loss
from tests.jitted import forward

CONFIG = ModelConfig.tiny(64).replace(num_layers=1, layer_types=("global",))


def inputs():
    tokens = jnp.array([[5, 9, 11, 3, 7, 2]], jnp.int32)
    return tokens, jnp.arange(6, dtype=jnp.int32)[None], jnp.ones((1, 6), jnp.int32)


def test_matrix_view_puts_the_model_dim_on_the_right_side():
    assert matrix_split((64, 4, 16), ("embed", "heads", "head_dim")) == 1  # q: D -> (N, H)
    assert matrix_split((4, 16, 64), ("heads", "head_dim", "embed")) == 2  # o: (N, H) -> D
    assert matrix_split((128, 64), ("mlp", "embed")) == 1  # down: F -> D
    lora = LoRA((4, 16, 64), 2, LoRAConfig(rank=3, alpha=6.0), rngs=nnx.Rngs(0))
    assert lora.a.shape == (64, 3) and lora.b.shape == (3, 64)
    lora.b[...] = jnp.ones((3, 64))
    expected = 2.0 * (np.asarray(lora.a[...]) @ np.ones((3, 64))).reshape(4, 16, 64)
    np.testing.assert_allclose(np.asarray(lora.delta()), expected, rtol=1e-6)


def test_fresh_adapters_change_nothing_and_unmerged_equals_merged():
    base = Decoder(CONFIG, rngs=nnx.Rngs(0))
    model = add_lora(base, LoRAConfig(rank=4, alpha=8.0))
    assert len(model.adapters) == 7  # q k v o gate up down of the one layer
    np.testing.assert_array_equal(
        np.asarray(forward(model, *inputs()).logits), np.asarray(forward(base, *inputs()).logits)
    )
    for i, adapter in enumerate(model.adapters):
        adapter.b[...] = 0.05 * jax.random.normal(jax.random.PRNGKey(i), adapter.b.shape)
    lora_logits = np.asarray(forward(model, *inputs()).logits)
    merged = merge_lora(model)
    assert isinstance(merged, Decoder)
    np.testing.assert_allclose(np.asarray(forward(merged, *inputs()).logits), lora_logits, atol=1e-5)
    assert np.abs(lora_logits - np.asarray(forward(base, *inputs()).logits)).max() > 1e-3
    # unmerged by hand on the query projection: x (W + s A B) == x W + s (x A) B
    q, ad = base.layers[0].attn.q[...], model.adapters[model.paths.index("layers.0.attn.q")]
    x = jax.random.normal(jax.random.PRNGKey(9), (2, 3, 64))
    merged_q = jnp.einsum("BTD,DNH->BTNH", x, merged.layers[0].attn.q[...])
    unmerged = jnp.einsum("BTD,DNH->BTNH", x, q) + (ad.scale * (x @ ad.a[...]) @ ad.b[...]).reshape(
        2, 3, 4, 16
    )
    np.testing.assert_allclose(np.asarray(merged_q), np.asarray(unmerged), atol=1e-5)


def test_training_changes_only_the_adapters():
    base = Decoder(CONFIG, rngs=nnx.Rngs(0))
    model = add_lora(base, LoRAConfig(rank=2, targets=("attn.q", "mlp.down")))
    opt = optax.adam(1e-2)
    state = create_train_state(model, opt, trainable=trainable_filter("lora"))
    frozen_before = jax.tree.map(np.asarray, state.frozen)
    params_before = jax.tree.map(np.asarray, state.params)
    tokens, positions, seg = (np.asarray(x) for x in inputs())
    batch = {
        "tokens": tokens,
        "positions": positions,
        "segment_ids": seg,
        "targets": np.roll(tokens, -1, 1),
        "loss_mask": np.ones_like(tokens, np.float32),
    }
    step = make_train_step(sft_loss(chunk_size=8), opt)
    for _ in range(2):
        state, metrics = step(state, batch)
    assert bool(metrics["finite"])
    for a, b in zip(jax.tree.leaves(frozen_before), jax.tree.leaves(state.frozen)):
        np.testing.assert_array_equal(a, np.asarray(b))  # base weights bit-for-bit untouched
    changed = [
        not np.array_equal(a, np.asarray(b))
        for a, b in zip(jax.tree.leaves(params_before), jax.tree.leaves(state.params))
    ]
    assert all(changed) and len(changed) == 4  # A and B of both adapters moved


def test_setting_only_lora_trains_only_the_adapters(tmp_path, caplog):
    """train.lora alone (in code or in a YAML config) means LoRA, not full fine-tuning plus adapters."""
    from align.training import make_optimizer
    from align.training.optim import OptimConfig
    from align.training.options import MeshOptions, TrainOptions, make_run_mesh
    from align.training.run import prepare_run, with_lora
    from align.config_io import load_config
    from pipelines.stages.dpo import DPORunConfig

    train = TrainOptions(batch_size=2, lora=LoRAConfig(rank=2, targets=("attn.q",)), progress=False)
    assert train.trainable == "lora" and TrainOptions().trainable == "all"
    run = prepare_run(
        with_lora(Decoder(CONFIG, rngs=nnx.Rngs(0)), train),
        make_optimizer(OptimConfig()),
        sft_loss(chunk_size=8),
        run_dir=tmp_path,
        train=train,
        mesh=make_run_mesh(MeshOptions(devices=1)),
    )
    leaves = nnx.to_flat_state(run.state.params)
    assert len(leaves) == 2 and all(isinstance(v, nnx.LoRAParam) for _, v in leaves)  # A and B of attn.q
    config = load_config(DPORunConfig, None, ["output_dir=x", "train.lora={rank: 2}"])
    assert config.train.trainable == "lora"
    explicit = load_config(
        DPORunConfig, None, ["output_dir=x", "train.lora={rank: 2}", "train.trainable=all"]
    )
    assert explicit.train.trainable == "all"
    with caplog.at_level("WARNING", logger="align.training"):
        with_lora(Decoder(CONFIG, rngs=nnx.Rngs(0)), explicit.train)
    assert "base weights train too" in caplog.text


def test_bfloat16_base_keeps_float32_adapters_and_merges_once():
    base = Decoder(CONFIG, rngs=nnx.Rngs(0), param_dtype=jnp.bfloat16, dtype=jnp.bfloat16)
    model = add_lora(base, LoRAConfig(rank=2, targets=("attn.q",)))
    ad = model.adapters[0]
    assert ad.a[...].dtype == ad.b[...].dtype == jnp.float32
    ad.b[...] = jnp.full(ad.b.shape, 1.0 + 1e-3)  # an update bfloat16 would round away (1.001 -> 1.0)
    assert float(ad.b[0, 0]) - 1.0 == np.float32(1.0 + 1e-3) - 1.0
    q = base.layers[0].attn.q[...]
    merged = merge_lora(model).layers[0].attn.q[...]
    assert merged.dtype == jnp.bfloat16
    expected = (q.astype(jnp.float32) + ad.delta()).astype(jnp.bfloat16)  # one rounding, from float32
    np.testing.assert_array_equal(np.asarray(merged, np.float32), np.asarray(expected, np.float32))
    assert forward(model, *inputs()).logits.dtype == jnp.float32


# --- adapters on the activations (training forwards) vs merged into the weights -------------------------


def _batch(B=2, T=8, vocab=64, seed=0):
    tokens = np.random.default_rng(seed).integers(0, vocab, (B, T)).astype(np.int32)
    return {
        "tokens": tokens,
        "positions": np.tile(np.arange(T, dtype=np.int32), (B, 1)),
        "segment_ids": np.ones((B, T), np.int32),
        "targets": np.roll(tokens, -1, 1),
        "loss_mask": np.ones((B, T), np.float32),
    }


def _randomize_adapters(model, std=0.05):
    for i, adapter in enumerate(model.adapters):
        adapter.b[...] = std * jax.random.normal(jax.random.PRNGKey(i), adapter.b.shape)


def _lora_grad(model, batch, *, merged: bool):
    """(grad fn of the SFT loss w.r.t. the adapters, the adapters), split as the train step splits."""
    graphdef, params, frozen = split_model(model, trainable_filter("lora"))
    loss_fn = sft_loss(chunk_size=8)

    def loss(p):
        m = nnx.merge(graphdef, p, frozen)
        return loss_fn(m.merged() if merged else m, batch, None)[0]

    return jax.grad(loss), params


@pytest.mark.parametrize("remat", [False, True])
def test_activation_side_equals_merged_in_value_and_gradient(remat):
    """float32 base: x W + s (x A) B == x (W + s A B) for the logits and for dLoss/dA, dLoss/dB."""
    model = add_lora(Decoder(CONFIG, rngs=nnx.Rngs(0), remat=remat), LoRAConfig(rank=4, alpha=8.0))
    _randomize_adapters(model)
    batch = _batch()
    args = (batch["tokens"], batch["positions"], batch["segment_ids"])
    np.testing.assert_allclose(
        np.asarray(forward(model, *args).logits),
        np.asarray(forward(model.merged(), *args).logits),
        atol=1e-5,
        rtol=1e-5,
    )
    grad, params = _lora_grad(model, batch, merged=False)
    grad_merged, _ = _lora_grad(model, batch, merged=True)
    got, want = jax.jit(grad)(params), jax.jit(grad_merged)(params)
    for (path, g), (_, w) in zip(nnx.to_flat_state(got), nnx.to_flat_state(want)):
        assert np.abs(np.asarray(w[...])).max() > 0, path  # every A and B gets a gradient
        np.testing.assert_allclose(
            np.asarray(g[...]), np.asarray(w[...]), rtol=1e-4, atol=1e-7, err_msg=str(path)
        )


def test_bfloat16_base_keeps_a_delta_that_a_bfloat16_merge_rounds_away():
    """|W| in [2**-6, 2**-5): bf16 spacing 2**-13 there, so |delta| < 2**-14 never survives W + delta."""
    rng = np.random.default_rng(0)
    base = Decoder(CONFIG, rngs=nnx.Rngs(0), param_dtype=jnp.bfloat16, dtype=jnp.bfloat16)
    q = base.layers[0].attn.q
    q[...] = jnp.asarray(rng.uniform(0.016, 0.031, q.shape) * rng.choice([-1, 1], q.shape), jnp.bfloat16)
    lora = LoRAConfig(rank=2, alpha=4.0, targets=("attn.q",))
    model = add_lora(base, lora)
    ad = model.adapters[0]
    ad.b[...] = jnp.asarray(2e-5 * rng.standard_normal(ad.b.shape), jnp.float32)
    delta = np.asarray(ad.delta())
    assert 5e-6 < delta.std() and np.abs(delta).max() < 2.0**-14  # ~1e-5: below half of bf16's spacing
    merged = merge_lora(model)
    np.testing.assert_array_equal(
        np.asarray(merged.layers[0].attn.q[...], np.float32), np.asarray(q[...], np.float32)
    )  # the bf16 merge dropped all of it

    # the q projection: activation side == the float32 result rounded once; merged == the base's
    x = jnp.asarray(rng.standard_normal((2, 16, 64)), jnp.bfloat16)
    x32 = np.asarray(x, np.float32)
    ref = np.einsum("BTD,DNH->BTNH", x32, np.asarray(q[...], np.float32)) + (
        ad.scale * (x32 @ np.asarray(ad.a[...])) @ np.asarray(ad.b[...])
    ).reshape(2, 16, 4, 16)
    ref = np.asarray(jnp.asarray(ref).astype(jnp.bfloat16), np.float32)
    act = np.asarray(model.adapted().layers[0].attn.project("q", x), np.float32)
    plain = np.asarray(merged.layers[0].attn.project("q", x), np.float32)
    np.testing.assert_array_equal(plain, np.asarray(base.layers[0].attn.project("q", x), np.float32))
    assert (act == ref).mean() > 0.99  # all but summation-order ties
    assert (plain != ref).mean() > 0.05  # the merge misses the delta wherever it decides the rounding

    # the whole model: the adapter changes the logits, the bf16 merge does not
    batch = _batch(T=16)
    args = (batch["tokens"], batch["positions"], batch["segment_ids"])
    base_logits = np.asarray(forward(base, *args).logits)
    np.testing.assert_array_equal(np.asarray(forward(merged, *args).logits), base_logits)
    lora_logits = np.asarray(forward(model, *args).logits)
    assert np.abs(lora_logits - base_logits).max() > 1e-3
    # and matches a float32 model with the same (bf16-valued) weights and adapters within bf16 tolerance
    ref_model = add_lora(Decoder(CONFIG, rngs=nnx.Rngs(0)), lora)
    nnx.update(ref_model.base, jax.tree.map(lambda w: w.astype(jnp.float32), nnx.state(base)))
    nnx.update(ref_model.adapters, nnx.state(model.adapters))
    ref_logits = np.asarray(forward(ref_model, *args).logits)
    np.testing.assert_allclose(lora_logits, ref_logits, atol=0.02 * np.abs(ref_logits).max())


def _dot_output_shapes(jaxpr):
    """Output shapes of every dot_general in `jaxpr`, nested jaxprs (jit, remat, custom_vjp) included."""
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            yield tuple(eqn.outvars[0].aval.shape)
        for value in eqn.params.values():
            for sub in value if isinstance(value, (tuple, list)) else (value,):
                if isinstance(sub, jax.extend.core.ClosedJaxpr):
                    yield from _dot_output_shapes(sub.jaxpr)
                elif isinstance(sub, jax.extend.core.Jaxpr):
                    yield from _dot_output_shapes(sub)


def test_lora_gradient_has_no_weight_shaped_dot():
    """dA, dB cost [I, r] / [r, O] dots on the activations, not full fine-tuning's [I, O] dW = x^T dy."""
    model = add_lora(Decoder(CONFIG.replace(vocab_size=96), rngs=nnx.Rngs(0)), LoRAConfig(rank=4))
    weight_shapes = set()
    for adapter in model.adapters:
        i, o = adapter.a.shape[0], adapter.b.shape[1]
        weight_shapes |= {adapter.shape, (i, o), (o, i)}  # the weight, its [I, O] view, transposed
    batch = _batch(vocab=96)  # B T = 16 rows: no activation is [I, O]-shaped
    counts = {}
    for merged in (False, True):
        grad, params = _lora_grad(model, batch, merged=merged)
        shapes = list(_dot_output_shapes(jax.make_jaxpr(grad)(params).jaxpr))
        counts[merged] = sum(s in weight_shapes for s in shapes)
    assert counts[False] == 0, counts
    # the merged formulation: A @ B forwards and x^T dy backwards, for each of the 7 adapters
    assert counts[True] >= 2 * len(model.adapters), counts


def test_sharded_lora_forward_equals_unsharded():
    """Base weights keep their logical-axis shardings; the (small) adapters are replicated."""
    from align.model.sharding import MeshConfig, batch_sharding, make_mesh, shard_model

    cfg = ModelConfig.tiny()
    make = lambda: add_lora(Decoder(cfg, rngs=nnx.Rngs(0)), LoRAConfig(rank=4))  # noqa: E731
    ref_model = make()
    _randomize_adapters(ref_model)
    batch = _batch(B=8, T=12, vocab=cfg.vocab_size)
    args = (batch["tokens"], batch["positions"], batch["segment_ids"])
    ref = forward(ref_model, *args).logits
    mesh = make_mesh(MeshConfig(data=2, fsdp=2, tensor=2))
    model = make()
    _randomize_adapters(model)
    model = shard_model(model, mesh)
    P = jax.sharding.PartitionSpec
    assert model.base.layers[0].attn.q[...].sharding.spec == P("fsdp", "tensor", None)  # [D, N, H]
    assert model.adapters[0].a[...].sharding.spec == P(None, None)
    bs = batch_sharding(mesh)
    out = forward(model, *(jax.device_put(x, bs) for x in args)).logits
    np.testing.assert_allclose(np.asarray(out), np.asarray(ref), atol=1e-5, rtol=1e-5)
