"""Decoder guards: float32 logits under bf16 compute, cache writes that would overflow fail loudly, and the
forward and its gradient the same op by op as under jit (the other model tests jit their forwards: run op
by op, every primitive compiles per shape)."""

import jax
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


def test_eager_and_jitted_forward_and_gradient_agree():
    """Packed rows (two segments), a sliding window shorter than a segment, chunked attention (the dense
    path is the chunked one's reference in test_attention.py). Op by op is the slow part: one case."""
    config = ModelConfig.tiny(vocab_size=96).replace(sliding_window=3)
    model = Decoder(config, rngs=nnx.Rngs(3), attn_chunk=4)
    tokens, _, _ = _inputs(T=8)
    positions = jnp.asarray([[0, 1, 2, 3, 4, 0, 1, 2], list(range(8))], jnp.int32)
    segments = jnp.asarray([[1, 1, 1, 1, 1, 2, 2, 2], [1] * 6 + [0] * 2], jnp.int32)

    def loss(m):
        logits = m(tokens, positions, segments).logits
        return jnp.sum(jax.nn.log_softmax(logits)[..., 7] * (segments > 0)), logits

    (eager_loss, eager_logits), eager_grad = nnx.value_and_grad(loss, has_aux=True)(model)
    (jit_loss, jit_logits), jit_grad = nnx.jit(nnx.value_and_grad(loss, has_aux=True))(model)
    np.testing.assert_allclose(jit_logits, eager_logits, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(float(jit_loss), float(eager_loss), rtol=1e-5)
    for (path, a), (_, b) in zip(nnx.to_flat_state(eager_grad), nnx.to_flat_state(jit_grad)):
        np.testing.assert_allclose(b[...], a[...], rtol=1e-4, atol=1e-6, err_msg=str(path))
    assert all(float(jnp.abs(g[...]).max()) > 0 for _, g in nnx.to_flat_state(eager_grad))  # none vacuous
