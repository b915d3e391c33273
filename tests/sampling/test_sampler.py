"""Sampler properties: cached decoding equals the full forward, no recompiles, stops, filters."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from align.model import Decoder, ModelConfig
from align.sampling import SamplingConfig, compiled_count, generate
from align.sampling.methods import sample_next


@pytest.fixture(scope="module")
def model():
    return Decoder(ModelConfig.tiny(vocab_size=64), rngs=nnx.Rngs(1))


def _prompts():
    tokens = np.array([[5, 9, 3, 7, 11, 2], [4, 8, 0, 0, 0, 0], [1, 2, 3, 4, 0, 0]], np.int32)
    return tokens, np.array([6, 2, 4], np.int32)


@nnx.jit
def _last_logprobs(model, tokens, length):
    """log-softmax of the logits at index length-1 of a right-padded [1, W] row (causal: padding is unseen)."""
    W = tokens.shape[1]
    out = model(tokens, jnp.arange(W)[None], (jnp.arange(W) < length)[None].astype(jnp.int32))
    return jax.nn.log_softmax(out.logits[0, length - 1])


def _full_forward_greedy(model, prompt, length, steps):
    """Reference: re-run the whole sequence for every new token, no cache."""
    buf = np.zeros((1, length + steps), np.int32)
    buf[0, :length] = prompt[:length]
    lps = []
    for i in range(steps):
        logp = _last_logprobs(model, jnp.asarray(buf), length + i)
        nxt = int(jnp.argmax(logp))
        lps.append(float(logp[nxt]))
        buf[0, length + i] = nxt
    return list(buf[0, length:]), lps


def test_greedy_with_cache_equals_full_forward(model):
    tokens, lengths = _prompts()
    res = generate(model, tokens, lengths, SamplingConfig(max_new_tokens=8))
    for b in range(len(tokens)):
        ref_tokens, ref_lps = _full_forward_greedy(model, tokens[b], lengths[b], 8)
        assert list(np.asarray(res.tokens[b])) == ref_tokens
        np.testing.assert_allclose(res.logprobs[b], ref_lps, atol=1e-4)
    assert list(np.asarray(res.lengths)) == [8, 8, 8]


def test_sliding_window_is_respected_when_decoding_past_it(model):
    # tiny() has a 4-token window on its local layer: decode well past it and compare with the full forward.
    tokens, lengths = _prompts()
    res = generate(model, tokens[:1], lengths[:1], SamplingConfig(max_new_tokens=12))
    ref, _ = _full_forward_greedy(model, tokens[0], lengths[0], 12)
    assert list(np.asarray(res.tokens[0])) == ref


def test_compiles_once_per_shape(model):
    tokens, lengths = _prompts()
    cfg = SamplingConfig(max_new_tokens=5, temperature=0.7, top_k=10)
    generate(model, tokens, lengths, cfg, jax.random.PRNGKey(0))
    before = compiled_count()
    for seed in range(3):
        generate(model, tokens, lengths[::-1].copy(), cfg, jax.random.PRNGKey(seed))
    assert compiled_count() == before


def test_stop_tokens_end_rows_and_pad_after(model):
    tokens, lengths = _prompts()
    free = generate(model, tokens, lengths, SamplingConfig(max_new_tokens=6))
    stop = int(free.tokens[0, 2])  # make row 0's third greedy token a stop token
    res = generate(model, tokens, lengths, SamplingConfig(max_new_tokens=6, stop_ids=(stop,), pad_id=63))
    row = np.asarray(res.tokens[0])
    first = int(np.argmax(row == stop))
    assert first <= 2 and int(res.lengths[0]) == first + 1
    assert (row[first + 1:] == 63).all() and (np.asarray(res.logprobs[0])[first + 1:] == 0).all()


def test_top_k_one_is_greedy_and_top_p_tiny_is_greedy(model):
    tokens, lengths = _prompts()
    greedy = generate(model, tokens, lengths, SamplingConfig(max_new_tokens=6))
    for cfg in (SamplingConfig(max_new_tokens=6, temperature=1.3, top_k=1),
                SamplingConfig(max_new_tokens=6, temperature=1.3, top_p=1e-6)):
        res = generate(model, tokens, lengths, cfg, jax.random.PRNGKey(3))
        np.testing.assert_array_equal(res.tokens, greedy.tokens)


def test_temperature_sampling_matches_distribution():
    logits = jnp.log(jnp.asarray([[0.7, 0.2, 0.1]]))
    keys = jax.random.split(jax.random.PRNGKey(0), 4000)
    toks = jax.vmap(lambda k: sample_next(logits, k, SamplingConfig(temperature=1.0))[0][0])(keys)
    freq = np.bincount(np.asarray(toks), minlength=3) / 4000
    np.testing.assert_allclose(freq, [0.7, 0.2, 0.1], atol=0.03)
    # top_p=0.75 keeps {0.7, 0.2}: renormalised 0.78 / 0.22, never token 2
    toks = jax.vmap(lambda k: sample_next(logits, k, SamplingConfig(temperature=1.0, top_p=0.75))[0][0])(keys)
    freq = np.bincount(np.asarray(toks), minlength=3) / 4000
    assert freq[2] == 0 and abs(freq[0] - 0.7 / 0.9) < 0.03
