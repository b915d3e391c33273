"""Attention properties: hand-written masks, causality through gradients, chunked == dense
(values and grads)."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from align.model import Decoder, ModelConfig
from align.model.attention import attention_mask
from tests.jitted import forward


def test_mask_written_out_by_hand():
    # one row, two packed documents [a a a | b b], window 2 on positions
    pos = jnp.array([[0, 1, 2, 0, 1]])
    seg = jnp.array([[1, 1, 1, 2, 2]])
    m = np.asarray(attention_mask(jnp.arange(5), pos, seg, pos, seg, window=2)[0]).astype(int)
    expected = np.array(
        [
            [1, 0, 0, 0, 0],
            [1, 1, 0, 0, 0],
            [0, 1, 1, 0, 0],  # position 2 - 0 = 2 is outside a window of 2
            [0, 0, 0, 1, 0],  # document b never sees document a
            [0, 0, 0, 1, 1],
        ]
    )
    np.testing.assert_array_equal(m, expected)
    # padding (segment 0) is never attended
    seg_pad = jnp.array([[1, 1, 1, 0, 0]])
    m = np.asarray(attention_mask(jnp.arange(5), pos, seg_pad, pos, seg_pad, window=None)[0])
    assert not m[:, 3:].any()


def _run(model, tokens, seg=None):
    B, T = tokens.shape
    seg = jnp.ones((B, T), jnp.int32) if seg is None else seg
    return forward(model, tokens, jnp.broadcast_to(jnp.arange(T), (B, T)), seg).logits


def test_causality_through_gradients():
    model = Decoder(ModelConfig.tiny(), rngs=nnx.Rngs(0))
    tokens = jnp.arange(12)[None] % 50
    x = model.embedder.encode(tokens, jnp.float32)
    pos, seg = jnp.arange(12)[None], jnp.ones((1, 12), jnp.int32)

    def out_at(model, x, t):
        for block in model.layers:
            x, _ = block(x, pos, seg)
        return x[0, t].sum()

    g = nnx.jit(nnx.grad(out_at, argnums=1), static_argnums=2)(model, x, 6)
    assert float(jnp.abs(g[0, 7:]).max()) == 0.0 and float(jnp.abs(g[0, :7]).max()) > 0


def test_chunked_attention_equals_dense_with_windows_and_packing():
    cfg = ModelConfig.tiny().replace(sliding_window=6)
    dense = Decoder(cfg, rngs=nnx.Rngs(0), attn_chunk=None)
    chunked = Decoder(cfg, rngs=nnx.Rngs(0), attn_chunk=8)
    T = 32
    tokens = jnp.asarray(np.random.default_rng(0).integers(0, cfg.vocab_size, (2, T)), jnp.int32)
    seg = jnp.asarray([[1] * 20 + [2] * 12, [1] * 28 + [0] * 4], jnp.int32)
    positions = jnp.broadcast_to(jnp.arange(T), (2, T))

    @nnx.jit  # one compile per model for the logits and their gradient
    def logits_and_grad(model):
        def loss(model):
            logits = model(tokens, positions, seg).logits
            return jnp.mean(jax.nn.log_softmax(logits)[..., 0]), logits

        (_, logits), grads = nnx.value_and_grad(loss, has_aux=True)(model)
        return logits, grads

    logits_dense, g_dense = logits_and_grad(dense)
    logits_chunk, g_chunk = logits_and_grad(chunked)
    np.testing.assert_allclose(logits_chunk, logits_dense, atol=1e-5, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(g_dense), jax.tree.leaves(g_chunk)):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-4)


def test_an_explicit_mask_scores_a_prefix_tree_as_separate_rows_dense_and_chunked():
    """One row holding context c (8 tokens), then branches b1 (5) and b2 (6) that each see c and
    themselves only, positions continuing from c, gives each branch the logits of row c+b alone;
    the sliding window (6) still applies by position."""
    cfg = ModelConfig.tiny().replace(sliding_window=6)
    rng = np.random.default_rng(1)
    c, b1, b2 = (rng.integers(0, cfg.vocab_size, n).tolist() for n in (8, 5, 6))
    T = 24  # 19 tokens and 5 of padding; a multiple of the chunk below
    tokens = jnp.asarray([c + b1 + b2 + [0] * 5], jnp.int32)
    positions = jnp.asarray([list(range(8)) + list(range(8, 13)) + list(range(8, 14)) + [0] * 5], jnp.int32)
    segments = jnp.asarray([[1] * 19 + [0] * 5], jnp.int32)
    branch = np.array([0] * 8 + [1] * 5 + [2] * 6 + [0] * 5)
    slot = np.arange(T)
    mask = (slot[None, :] <= slot[:, None]) & ((branch[None, :] == 0) | (branch[None, :] == branch[:, None]))
    mask &= (np.asarray(segments[0])[None, :] != 0) & (np.asarray(segments[0])[:, None] != 0)
    for chunk in (None, 8):
        model = Decoder(cfg, rngs=nnx.Rngs(0), attn_chunk=chunk)
        tree = forward(model, tokens, positions, segments, attn_mask=jnp.asarray(mask)[None]).logits[0]
        alone1 = _run(model, jnp.asarray([c + b1], jnp.int32))[0]
        alone2 = _run(model, jnp.asarray([c + b2], jnp.int32))[0]
        np.testing.assert_allclose(tree[:13], alone1, atol=1e-5, rtol=1e-5)
        np.testing.assert_allclose(tree[13:19], alone2[8:], atol=1e-5, rtol=1e-5)
        # and the mask matters: without it b2 would read b1
        plain = forward(model, tokens, positions, segments).logits[0]
        assert float(jnp.abs(plain[13:19] - alone2[8:]).max()) > 1e-3
