"""LoRA: zero delta at init, the [I, O] view of each weight, merged == unmerged, only adapters train."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from align.model import Decoder, ModelConfig
from align.training import create_train_state, make_train_step, trainable_filter
from align.training.lora import LoRA, LoRAConfig, add_lora, matrix_split, merge_lora
from pipelines.sft import sft_loss

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
    np.testing.assert_array_equal(np.asarray(model(*inputs()).logits), np.asarray(base(*inputs()).logits))
    for i, adapter in enumerate(model.adapters):
        adapter.b[...] = 0.05 * jax.random.normal(jax.random.PRNGKey(i), adapter.b.shape)
    lora_logits = np.asarray(model(*inputs()).logits)
    merged = merge_lora(model)
    assert isinstance(merged, Decoder)
    np.testing.assert_allclose(np.asarray(merged(*inputs()).logits), lora_logits, atol=1e-5)
    assert np.abs(lora_logits - np.asarray(base(*inputs()).logits)).max() > 1e-3
    # unmerged by hand on the query projection: x (W + s A B) == x W + s (x A) B
    q, ad = base.layers[0].attn.q[...], model.adapters[model.paths.index("layers.0.attn.q")]
    x = jax.random.normal(jax.random.PRNGKey(9), (2, 3, 64))
    merged_q = jnp.einsum("BTD,DNH->BTNH", x, merged.layers[0].attn.q[...])
    unmerged = (jnp.einsum("BTD,DNH->BTNH", x, q)
                + (ad.scale * (x @ ad.a[...]) @ ad.b[...]).reshape(2, 3, 4, 16))
    np.testing.assert_allclose(np.asarray(merged_q), np.asarray(unmerged), atol=1e-5)


def test_training_changes_only_the_adapters():
    base = Decoder(CONFIG, rngs=nnx.Rngs(0))
    model = add_lora(base, LoRAConfig(rank=2, targets=("attn.q", "mlp.down")))
    opt = optax.adam(1e-2)
    state = create_train_state(model, opt, trainable=trainable_filter("lora"))
    frozen_before = jax.tree.map(np.asarray, state.frozen)
    params_before = jax.tree.map(np.asarray, state.params)
    tokens, positions, seg = (np.asarray(x) for x in inputs())
    batch = {"tokens": tokens, "positions": positions, "segment_ids": seg, "targets": np.roll(tokens, -1, 1),
             "loss_mask": np.ones_like(tokens, np.float32)}
    step = make_train_step(sft_loss(chunk_size=8), opt)
    for _ in range(2):
        state, metrics = step(state, batch)
    assert bool(metrics["finite"])
    for a, b in zip(jax.tree.leaves(frozen_before), jax.tree.leaves(state.frozen)):
        np.testing.assert_array_equal(a, np.asarray(b))  # base weights bit-for-bit untouched
    changed = [not np.array_equal(a, np.asarray(b)) for a, b in zip(jax.tree.leaves(params_before),
                                                                    jax.tree.leaves(state.params))]
    assert all(changed) and len(changed) == 4  # A and B of both adapters moved


def test_setting_only_lora_trains_only_the_adapters(tmp_path, caplog):
    """train.lora alone (in code or in a YAML config) means LoRA, not full fine-tuning plus adapters."""
    from align.training import make_optimizer
    from align.training.optim import OptimConfig
    from align.training.run import MeshOptions, TrainOptions, make_run_mesh, prepare_run, with_lora
    from pipelines.config_io import load_config
    from pipelines.dpo import DPORunConfig

    train = TrainOptions(batch_size=2, lora=LoRAConfig(rank=2, targets=("attn.q",)), progress=False)
    assert train.trainable == "lora" and TrainOptions().trainable == "all"
    run = prepare_run(with_lora(Decoder(CONFIG, rngs=nnx.Rngs(0)), train), make_optimizer(OptimConfig()),
                      sft_loss(chunk_size=8), run_dir=tmp_path, train=train,
                      mesh=make_run_mesh(MeshOptions(devices=1)))
    leaves = nnx.to_flat_state(run.state.params)
    assert len(leaves) == 2 and all(isinstance(v, nnx.LoRAParam) for _, v in leaves)  # A and B of attn.q
    config = load_config(DPORunConfig, None, ["output_dir=x", "train.lora={rank: 2}"])
    assert config.train.trainable == "lora"
    explicit = load_config(DPORunConfig, None,
                           ["output_dir=x", "train.lora={rank: 2}", "train.trainable=all"])
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
    np.testing.assert_array_equal(np.asarray(model(*inputs()).logits, np.float32),
                                  np.asarray(merge_lora(model)(*inputs()).logits, np.float32))
