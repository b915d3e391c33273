"""Decoder.for_decoding (weights [out, in] if asked) and vocab-major next-token logits: the same numbers."""

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from align.model import Decoder, ModelConfig, init_cache
from align.model.layers import Projections, apply_rope, rope_table
from tests.jitted import forward


def _model():
    return Decoder(ModelConfig.tiny(vocab_size=96), rngs=nnx.Rngs(3))


def _inputs(B=2, T=6):
    tokens = jnp.asarray(np.random.default_rng(0).integers(1, 96, (B, T)), jnp.int32)
    return tokens, jnp.broadcast_to(jnp.arange(T), (B, T)), jnp.ones((B, T), jnp.int32)


def test_for_decoding_shares_the_weights_unless_out_first():
    model = _model()
    dec = model.for_decoding(n_positions=8)
    assert not any(m.out_first for _, m in nnx.iter_modules(dec) if isinstance(m, Projections))
    params = lambda m: [v[...] for _, v in nnx.to_flat_state(nnx.state(m, nnx.Param))]  # noqa: E731
    assert all(a is b for a, b in zip(params(dec), params(model), strict=True))  # the same arrays
    assert dec.layers[0].attn.per_query_dots and not model.layers[0].attn.per_query_dots


def test_for_decoding_out_first_transposes_every_projection_and_leaves_the_original():
    model = _model()
    before = {k: np.asarray(v[...]) for k, v in nnx.to_flat_state(nnx.state(model, nnx.Param))}
    dec = model.for_decoding(out_first=True)
    attn, dec_attn = model.layers[0].attn, dec.layers[0].attn
    assert dec_attn.q.shape == (attn.q.shape[1], attn.q.shape[2], attn.q.shape[0])  # [D,N,H] -> [N,H,D]
    assert dec_attn.o.shape == (attn.o.shape[2], attn.o.shape[0], attn.o.shape[1])  # [N,H,D] -> [D,N,H]
    assert dec.layers[0].mlp.down.shape == model.layers[0].mlp.down.shape[::-1]
    np.testing.assert_array_equal(dec_attn.q[...], jnp.transpose(attn.q[...], (1, 2, 0)))
    assert dec_attn.o.get_metadata()["axes"] == (
        attn.o.get_metadata()["axes"][2],
        *attn.o.get_metadata()["axes"][:2],
    )
    assert dec_attn.per_query_dots and not attn.per_query_dots
    transposed = [m for _, m in nnx.iter_modules(dec) if isinstance(m, Projections)]
    assert transposed and all(m.out_first for m in transposed)
    assert not any(m.out_first for _, m in nnx.iter_modules(model) if isinstance(m, Projections))
    after = {k: np.asarray(v[...]) for k, v in nnx.to_flat_state(nnx.state(model, nnx.Param))}
    assert before.keys() == after.keys() and all((before[k] == after[k]).all() for k in before)


@pytest.mark.parametrize("out_first", [False, True])
def test_decode_layout_forward_equals_the_plain_forward(out_first):
    model = _model()
    tokens, positions, segments = _inputs()
    want = forward(model, tokens, positions, segments)
    got = forward(model.for_decoding(out_first=out_first), tokens, positions, segments)
    np.testing.assert_allclose(got.logits, want.logits, rtol=1e-5, atol=1e-5)
    # one cached decode step, the case it is made for
    cache = init_cache(model.config, 2, 8)
    step = lambda m: forward(m, tokens[:, :1], positions[:, :1], segments[:, :1], cache).hidden  # noqa: E731
    np.testing.assert_allclose(
        step(model.for_decoding(out_first=out_first)), step(model), rtol=1e-5, atol=1e-5
    )


def test_vocab_major_next_token_logits_are_the_transposed_logits():
    model = _model()
    tokens, positions, segments = _inputs()
    out = forward(model, tokens, positions, segments)
    last = out.hidden[:, -1]
    np.testing.assert_allclose(model.next_token_logits(last), out.logits[:, -1], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        model.next_token_logits(last, vocab_major=True), out.logits[:, -1].T, rtol=1e-5, atol=1e-5
    )


def test_next_token_logits_are_soft_capped_like_logits():
    model = Decoder(
        dataclasses.replace(ModelConfig.tiny(vocab_size=96), final_logit_softcap=0.5), rngs=nnx.Rngs(3)
    )
    tokens, positions, segments = _inputs()
    out = forward(model, tokens, positions, segments)
    got = model.next_token_logits(out.hidden[:, -1], vocab_major=True)
    assert float(jnp.abs(got).max()) <= 0.5
    np.testing.assert_allclose(got, out.logits[:, -1].T, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("out_first", [False, True])
def test_cached_steps_after_a_prefill_equal_the_plain_model(out_first):
    # 6 prompt tokens in the cache, then chunks of T = 1 and 4 (G * T = 2 and 8 queries a row: one
    # matrix-vector product per query) and T = 5 (10 queries: the batched dot) with for_decoding's
    # attention, against the plain model's; every key slot that matters is filled and attended.
    model = _model()
    tokens = jnp.asarray(np.random.default_rng(1).integers(1, 96, (2, 16)), jnp.int32)
    positions, segments = jnp.broadcast_to(jnp.arange(16), (2, 16)), jnp.ones((2, 16), jnp.int32)
    cache = init_cache(model.config, 2, 16)
    prefill = forward(model, tokens[:, :6], positions[:, :6], segments[:, :6], cache)
    dec = model.for_decoding(n_positions=16, out_first=out_first)  # rotary sin/cos from tables, too
    assert all(m.rope_lookup[...].shape == (16, 2, 8) for m in (dec.layers[0].attn, dec.layers[1].attn))
    start = 6
    for T in (1, 4, 5):
        sl = slice(start, start + T)
        want = forward(model, tokens[:, sl], positions[:, sl], segments[:, sl], prefill.cache)
        got = forward(dec, tokens[:, sl], positions[:, sl], segments[:, sl], prefill.cache)
        np.testing.assert_allclose(got.logits, want.logits, rtol=1e-5, atol=1e-5)
        full = forward(model, tokens[:, : start + T], positions[:, : start + T], segments[:, : start + T])
        np.testing.assert_allclose(got.logits, full.logits[:, start:], rtol=1e-4, atol=1e-4)
        prefill = want
        start += T


def test_rope_from_a_table_equals_rope_computed():
    x = jnp.asarray(np.random.default_rng(2).normal(size=(2, 3, 4, 16)), jnp.float32)  # [B, T, N, H]
    positions = jnp.asarray([[0, 5, 9], [3, 4, 11]])
    for base, scale in ((1e4, 1.0), (1e6, 8.0)):
        table = rope_table(12, 16, base, scale)
        np.testing.assert_array_equal(
            apply_rope(x, positions, base, scale, table), apply_rope(x, positions, base, scale)
        )
    # a rotation by the angle at each position: norms kept, position 0 untouched
    rotated = apply_rope(x, positions, 1e4, 1.0, rope_table(12, 16, 1e4))
    np.testing.assert_allclose(jnp.linalg.norm(rotated, axis=-1), jnp.linalg.norm(x, axis=-1), rtol=1e-6)
    np.testing.assert_array_equal(rotated[0, 0], x[0, 0])


def test_vocab_major_logits_of_bfloat16_hidden_are_summed_in_float32():
    # bf16 operands (the table rounded like the [B, V] dot's), products and sum in float32
    model = _model()
    tokens, positions, segments = _inputs()
    last = forward(model, tokens, positions, segments).hidden[:, -1].astype(jnp.bfloat16)
    table = np.asarray(model.unembed_matrix().astype(jnp.bfloat16), np.float64)
    want = np.asarray(last, np.float64) @ table.T  # [B, V]
    got = model.next_token_logits(last, vocab_major=True)
    assert got.dtype == jnp.float32
    np.testing.assert_allclose(got, want.T, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got.T, model.next_token_logits(last), rtol=1e-5, atol=1e-5)
