"""Decoder guards: float32 logits under bf16 compute, and cache writes that would overflow fail loudly."""

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from align.model import Decoder, ModelConfig, init_cache


def _inputs(B=2, T=6):
    tokens = jnp.asarray(np.random.default_rng(0).integers(1, 96, (B, T)), jnp.int32)
    return tokens, jnp.broadcast_to(jnp.arange(T), (B, T)), jnp.ones((B, T), jnp.int32)


def test_bf16_compute_gives_float32_accumulated_logits():
    model = Decoder(ModelConfig.tiny(vocab_size=96), rngs=nnx.Rngs(3), dtype=jnp.bfloat16)
    out = model(*_inputs())
    assert out.hidden.dtype == jnp.bfloat16 and out.logits.dtype == jnp.float32
    # reference: the same bf16 operands, multiplied in float64 on the host
    table = np.asarray(model.unembed_matrix().astype(jnp.bfloat16), np.float64)
    ref = np.asarray(out.hidden, np.float64) @ table.T  # [B, T, V]
    err = np.abs(np.asarray(out.logits) - ref).max()
    # what the old bf16 logits were off by: the rounding of the exact product to bf16
    rounded = np.abs(np.asarray(jnp.asarray(ref, jnp.bfloat16), np.float64) - ref).max()
    assert err < 1e-4 * np.abs(ref).max() and err < rounded / 10
    last = out.hidden[:, -1]
    for vocab_major in (False, True):
        got = model.next_token_logits(last, vocab_major=vocab_major)
        assert got.dtype == jnp.float32
        np.testing.assert_allclose(got.T if vocab_major else got, ref[:, -1], rtol=1e-4, atol=1e-4)


def test_cache_write_past_the_end_raises():
    model = Decoder(ModelConfig.tiny(vocab_size=96), rngs=nnx.Rngs(3))
    tokens, positions, segments = _inputs(T=3)
    cache = init_cache(model.config, 2, 4)
    with pytest.raises(ValueError, match="cache of 4 slots"):  # static: T > S
        model(*_inputs(T=5), init_cache(model.config, 2, 4))
    out = model(tokens, positions, segments, cache)  # slots 0..2
    out = model(tokens[:, :1], positions[:, :1] + 3, segments[:, :1], out.cache)  # slot 3: exactly fits
    with pytest.raises(ValueError, match="at slot 4 of a 4-slot cache"):  # concrete index: 4 + 1 > 4
        model(tokens[:, :1], positions[:, :1] + 4, segments[:, :1], out.cache)


def test_layer_states_taps_the_forward_pass_the_last_after_the_final_norm():
    model = Decoder(ModelConfig.tiny(vocab_size=96), rngs=nnx.Rngs(3))
    tokens, positions, segment_ids = _inputs()
    n = len(model.layers)
    embed, first, last = model.layer_states(tokens, positions, segment_ids, [0, 1, n])
    np.testing.assert_array_equal(embed, model.embedder.encode(tokens, model.dtype))
    np.testing.assert_array_equal(first, model.layers[0](embed, positions, segment_ids, None, None)[0])
    np.testing.assert_array_equal(last, model.hidden(tokens, positions, segment_ids))
    (again,) = model.layer_states(tokens, positions, segment_ids, [1])  # blocks past 1 not needed
    np.testing.assert_array_equal(again, first)
