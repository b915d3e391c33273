"""Model FLOPs for MFU: a hand count on the tiny config, and XLA's own count of a forward pass."""

import jax
import jax.numpy as jnp
import pytest
from flax import nnx

from align.model import Decoder, ModelConfig
from align.model.flops import forward_flops_per_token, mean_visible_keys, train_flops_per_token


def test_mean_visible_keys_by_hand():
    assert mean_visible_keys(8, None) == 4.5  # (1 + ... + 8) / 8
    assert mean_visible_keys(8, 4) == (1 + 2 + 3 + 4 + 4 + 4 + 4 + 4) / 8
    assert mean_visible_keys(3, 4) == 2.0  # window longer than the sequence: plain causal


def test_tiny_config_by_hand():
    c = ModelConfig.tiny()  # D 64, N 4, K 2, H 16, F 128, V 512, layers (local W=4, global)
    f = forward_flops_per_token(c, 8)
    assert f["matmul"] == 2 * 2 * (64 * 64 + 64 * 32 + 64 * 32 + 64 * 64 + 3 * 64 * 128)  # 147456
    assert f["unembed"] == 2 * 64 * 512
    assert f["attention"] == 4 * 4 * 16 * (26 / 8) + 4 * 4 * 16 * 4.5  # local + global layer
    assert f["total"] == 147456 + 65536 + 832 + 1152
    assert train_flops_per_token(c, 8) == 3 * f["total"]


def test_matches_xla_cost_analysis_of_a_forward_pass():
    """XLA counts what the dense path computes: every [T, S] score, masked or not, plus elementwise
    work. With all-global layers that is the count above with T keys per query instead of (T+1)/2."""
    c = ModelConfig.tiny(vocab_size=2048).replace(
        embed_dim=256, hidden_dim=1024, head_dim=64, layer_types=("global", "global"), sliding_window=None
    )
    B, T = 2, 64
    model = Decoder(c, rngs=nnx.Rngs(0), attn_chunk=None)
    graphdef, state = nnx.split(model)
    tokens = jnp.zeros((B, T), jnp.int32)
    positions = jnp.broadcast_to(jnp.arange(T), (B, T))

    def forward(state):
        return nnx.merge(graphdef, state)(tokens, positions, jnp.ones((B, T), jnp.int32)).logits

    xla = jax.jit(forward).lower(state).compile().cost_analysis()
    xla = xla[0] if isinstance(xla, list) else xla
    f = forward_flops_per_token(c, T)
    dense_attention = 4 * c.num_heads * c.head_dim * T * c.num_layers
    ours = B * T * (f["matmul"] + f["unembed"] + dense_attention)
    assert f["attention"] == pytest.approx(dense_attention * (T + 1) / (2 * T))
    assert ours <= xla["flops"] <= 1.05 * ours, (xla["flops"], ours)
