"""OptimConfig -> optax: schedule values by hand, clipping, weight-decay mask, trainable filters/masks."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from align.model import Decoder, ModelConfig
from align.training import OptimConfig, learning_rate_schedule, make_optimizer, split_model, trainable_filter
from align.training.lora import LoRAConfig, add_lora
from align.training.optim import excluding


def test_warmup_cosine_schedule_by_hand():
    lr = learning_rate_schedule(
        OptimConfig(learning_rate=1.0, warmup_steps=2, total_steps=6, schedule="cosine")
    )
    expected = [0.0, 0.5, 1.0] + [0.5 * (1 + math.cos(math.pi * k / 4)) for k in (1, 2, 3, 4)]
    np.testing.assert_allclose([float(lr(i)) for i in range(7)], expected, atol=1e-6)


def test_linear_and_constant_schedules_with_floor():
    lin = learning_rate_schedule(
        OptimConfig(learning_rate=2.0, warmup_steps=0, total_steps=4, schedule="linear", min_lr_ratio=0.25)
    )
    np.testing.assert_allclose([float(lin(i)) for i in range(5)], [2.0, 1.625, 1.25, 0.875, 0.5], atol=1e-6)
    const = learning_rate_schedule(
        OptimConfig(learning_rate=0.3, warmup_steps=3, total_steps=9, schedule="constant")
    )
    np.testing.assert_allclose([float(const(i)) for i in (0, 3, 8)], [0.0, 0.3, 0.3], atol=1e-7)


def test_bad_config_is_rejected():
    with pytest.raises(ValueError, match="schedule"):
        OptimConfig(schedule="exp")
    with pytest.raises(ValueError, match="warmup_steps"):
        OptimConfig(warmup_steps=10, total_steps=5)


def test_global_norm_clipping_scales_the_update():
    # A huge eps makes Adam's first update linear in the gradient (g / (|g| + eps) ~ g / eps), so the
    # clipping factor shows up directly: global norm 10 clipped to 1 -> update 10x smaller.
    params = {"w": jnp.zeros((2,))}
    grads = {"w": jnp.array([6.0, 8.0])}  # norm 10
    cfg = {"learning_rate": 1.0, "total_steps": 10, "schedule": "constant", "eps": 1e6, "b1": 0.0, "b2": 0.0}
    upd_clip, _ = make_optimizer(OptimConfig(clip_norm=1.0, **cfg)).update(
        grads, make_optimizer(OptimConfig(clip_norm=1.0, **cfg)).init(params), params
    )
    upd_free, _ = make_optimizer(OptimConfig(clip_norm=None, **cfg)).update(
        grads, make_optimizer(OptimConfig(clip_norm=None, **cfg)).init(params), params
    )
    np.testing.assert_allclose(np.asarray(upd_free["w"]), [-6e-6, -8e-6], rtol=1e-4)
    np.testing.assert_allclose(np.asarray(upd_clip["w"]), np.asarray(upd_free["w"]) / 10, rtol=1e-4)


def test_weight_decay_skips_vectors():
    params = {"matrix": jnp.ones((2, 2)), "scale": jnp.ones((2,))}
    zero = jax.tree.map(jnp.zeros_like, params)
    opt = make_optimizer(
        OptimConfig(learning_rate=0.1, weight_decay=0.5, total_steps=10, schedule="constant")
    )
    updates, _ = opt.update(zero, opt.init(params), params)
    np.testing.assert_allclose(np.asarray(updates["matrix"]), -0.1 * 0.5 * np.ones((2, 2)), rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(updates["scale"]), np.zeros(2))


def test_trainable_mask_freezes_leaves_in_the_optimizer():
    params = {"a": jnp.ones(3), "b": jnp.ones(3)}
    opt = make_optimizer(
        OptimConfig(learning_rate=0.1, total_steps=5, schedule="constant"),
        trainable_mask={"a": True, "b": False},
    )
    updates, _ = opt.update({"a": jnp.ones(3), "b": jnp.ones(3)}, opt.init(params), params)
    assert float(jnp.abs(updates["a"]).min()) > 0.05
    np.testing.assert_array_equal(np.asarray(updates["b"]), np.zeros(3))


def test_trainable_filters_select_the_right_parameters():
    model = Decoder(ModelConfig.tiny(64), rngs=nnx.Rngs(0))
    _, params, frozen = split_model(model, trainable_filter("no_embeddings"))
    names = {".".join(map(str, p)) for p, _ in nnx.to_flat_state(params)}
    assert "embedder.table" not in names and "layers.0.attn.q" in names
    assert {".".join(map(str, p)) for p, _ in nnx.to_flat_state(frozen)} == {"embedder.table"}
    _, params, _ = split_model(model, excluding(nnx.Param, ("final_norm", "scale")))
    assert "final_norm.scale" not in {".".join(map(str, p)) for p, _ in nnx.to_flat_state(params)}
    lora = add_lora(model, LoRAConfig(rank=2, targets=("attn.q",)))
    _, params, _ = split_model(lora, trainable_filter("lora"))
    assert {".".join(map(str, p)) for p, _ in nnx.to_flat_state(params)} == {
        "adapters.0.a",
        "adapters.0.b",
        "adapters.1.a",
        "adapters.1.b",
    }
    with pytest.raises(ValueError, match="selects no parameter"):
        split_model(model, trainable_filter("lora"))
