"""Sampler properties: cached decoding equals the full forward, no recompiles, stops, filters."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from align.model import Decoder, ModelConfig
from align.sampling import SamplingConfig, compiled_count, generate
from align.sampling.methods import argmax_vocab_major, logsumexp_vocab_major, sample_next
from align.training.lora import LoRAConfig, add_lora, merge_lora


@pytest.fixture(scope="module")
def model():
    return Decoder(ModelConfig.tiny(vocab_size=64), rngs=nnx.Rngs(1))


def _prompts():
    tokens = np.array([[5, 9, 3, 7, 11, 2], [4, 8, 0, 0, 0, 0], [1, 2, 3, 4, 0, 0]], np.int32)
    return tokens, np.array([6, 2, 4], np.int32)


@nnx.jit
def _last_logprobs(model, tokens, length):
    """log-softmax of the logits at index length-1 of a right-padded [1, W] row
    (causal: padding is unseen)."""
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
    assert (row[first + 1 :] == 63).all() and (np.asarray(res.logprobs[0])[first + 1 :] == 0).all()


def test_top_k_one_is_greedy_and_top_p_tiny_is_greedy(model):
    tokens, lengths = _prompts()
    greedy = generate(model, tokens, lengths, SamplingConfig(max_new_tokens=6))
    for cfg in (
        SamplingConfig(max_new_tokens=6, temperature=1.3, top_k=1),
        SamplingConfig(max_new_tokens=6, temperature=1.3, top_p=1e-6),
    ):
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


# blocks of 512; gcd 8 -> plain argmax; one block
@pytest.mark.parametrize("V, B", [(4096, 3), (1000, 2), (64, 5)])
def test_argmax_vocab_major_is_argmax_down_axis_zero_first_occurrence(V, B):
    x = np.random.default_rng(V).normal(size=(V, B)).astype(np.float32)
    x[[7, V - 1], 0] = 9.0  # a tie across blocks: the first wins
    x[[V // 2, V // 2 + 1], 1] = 9.0  # a tie inside a block
    x[:, -1] = x[0, -1]  # all equal
    got = argmax_vocab_major(jnp.asarray(x))
    np.testing.assert_array_equal(got, np.argmax(x, axis=0))
    assert int(got[0]) == 7 and int(got[-1]) == 0


@pytest.mark.parametrize("V, B", [(4096, 3), (1000, 2)])
def test_logsumexp_vocab_major_is_logsumexp_down_axis_zero(V, B):
    x = np.random.default_rng(V).normal(size=(V, B)).astype(np.float32) * 30
    x[:, 1] = -np.inf  # an all -inf column: -inf, as jax.nn.logsumexp gives
    got = logsumexp_vocab_major(jnp.asarray(x))
    np.testing.assert_allclose(got, jax.nn.logsumexp(jnp.asarray(x), axis=0), rtol=1e-6)
    assert np.isneginf(got[1])


def _full_reductions(hlo: str, n: int) -> list[str]:
    """Names of the reduce instructions in compiled HLO whose operand has n elements."""
    shapes = dict(re.findall(r"%([\w.\-]+) = \w+\[([\d,]*)\]", hlo))
    size = lambda name: np.prod([int(d) for d in shapes.get(name, "0").split(",") if d])  # noqa: E731
    return [
        m.group(1)
        for m in re.finditer(r"%([\w.\-]+) = \S+ reduce\(%([\w.\-]+)", hlo)
        if size(m.group(2)) == n
    ]


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="pins XLA:CPU's program")
def test_greedy_vocab_major_sampling_reads_the_logits_twice():
    # the block maxima serve both the argmax and the logsumexp's shift: two passes over the [V, B]
    # logits (block maxima, sum of exponentials), not a third for a separate max
    V, B = 4096, 3
    step = jax.jit(lambda x: sample_next(x, jax.random.PRNGKey(0), SamplingConfig(), vocab_major=True))
    reductions = _full_reductions(step.lower(jnp.zeros((V, B))).compile().as_text(), V * B)
    assert len(reductions) == 2, reductions


def test_vocab_major_sampling_matches_distribution():
    logits = jnp.log(jnp.asarray([[0.7, 0.2, 0.1]])).T  # [V, B]
    keys = jax.random.split(jax.random.PRNGKey(0), 4000)
    draw = lambda cfg: jax.vmap(lambda k: sample_next(logits, k, cfg, vocab_major=True)[0][0])(keys)  # noqa: E731
    freq = np.bincount(np.asarray(draw(SamplingConfig(temperature=1.0))), minlength=3) / 4000
    np.testing.assert_allclose(freq, [0.7, 0.2, 0.1], atol=0.03)
    freq = np.bincount(np.asarray(draw(SamplingConfig(temperature=1.0, top_p=0.75))), minlength=3) / 4000
    assert freq[2] == 0 and abs(freq[0] - 0.7 / 0.9) < 0.03
    tok, lp = sample_next(logits, keys[0], SamplingConfig(temperature=2.0), vocab_major=True)
    np.testing.assert_allclose(lp, jax.nn.log_softmax(logits[:, 0] / 2.0)[tok], rtol=1e-6)


@pytest.mark.parametrize("vocab_major", [False, True])
@pytest.mark.parametrize(
    "cfg",
    [SamplingConfig(), SamplingConfig(temperature=0.7, top_k=5), SamplingConfig(temperature=1.5, top_p=0.9)],
)
def test_sampled_logprob_is_the_unfiltered_log_softmax_of_the_token(cfg, vocab_major):
    # the log-prob is formed as logit / T - logsumexp(logits / T), never from a materialised log-softmax
    logits = jnp.asarray(np.random.default_rng(0).normal(size=(3, 1000)).astype(np.float32) * 4)  # [B, V]
    x = logits.T if vocab_major else logits
    tok, lp = sample_next(x, jax.random.PRNGKey(1), cfg, vocab_major=vocab_major)
    ref = jax.nn.log_softmax(logits / (cfg.temperature or 1.0), axis=-1)
    np.testing.assert_allclose(lp, ref[jnp.arange(3), tok], rtol=1e-5, atol=1e-5)
    if cfg.greedy:
        np.testing.assert_array_equal(tok, jnp.argmax(logits, axis=-1))
    if cfg.top_k:
        assert all(int(t) in set(np.argsort(-np.asarray(logits[i]))[: cfg.top_k]) for i, t in enumerate(tok))


@pytest.mark.parametrize("out_first", [False, True])
@pytest.mark.parametrize("lora", [False, True])
def test_cpu_layout_decodes_the_same_tokens(model, lora, out_first):
    tokens, lengths = _prompts()
    m = add_lora(model, LoRAConfig(rank=2)) if lora else model
    if lora:  # a non-zero adapter, so folding it in matters
        m.adapters[0].b[...] = jnp.full(m.adapters[0].b.shape, 0.05)
    cfg = SamplingConfig(max_new_tokens=8)
    plain = generate(m, tokens, lengths, cfg, cpu_layout=False)
    fast = generate(m, tokens, lengths, cfg, cpu_layout=True, out_first_weights=out_first)
    np.testing.assert_array_equal(fast.tokens, plain.tokens)
    np.testing.assert_allclose(fast.logprobs, plain.logprobs, atol=1e-5)
    ref = generate(merge_lora(m) if lora else m, tokens, lengths, cfg, cpu_layout=False)
    np.testing.assert_array_equal(ref.tokens, fast.tokens)


def test_cpu_layout_samples_score_as_the_full_forward_scores_them(model):
    # Sampling draws other tokens than the plain layout (noise [V, B]), so check what was drawn: each
    # token is in the top 5 of the full forward's next-token distribution and its log-prob is that one's.
    tokens, lengths = _prompts()
    res = generate(
        model,
        tokens,
        lengths,
        SamplingConfig(max_new_tokens=6, temperature=1.0, top_k=5),
        jax.random.PRNGKey(1),
        cpu_layout=True,
    )
    for b in range(len(tokens)):
        n = int(lengths[b])
        buf = np.zeros((1, n + 6), np.int32)
        buf[0, :n], buf[0, n:] = tokens[b, :n], np.asarray(res.tokens[b])
        for i in range(6):
            logp = np.asarray(_last_logprobs(model, jnp.asarray(buf), n + i))
            tok = int(res.tokens[b, i])
            assert tok in np.argsort(-logp)[:5]
            np.testing.assert_allclose(float(res.logprobs[b, i]), logp[tok], atol=1e-4)


def test_cpu_layout_is_the_default_for_weights_on_cpu(model):
    # The two layouts draw different Gumbel noise from one rng, which shows which one ran.
    tokens, lengths = _prompts()
    hot = SamplingConfig(max_new_tokens=8, temperature=1.0)
    draw = lambda **kw: np.asarray(generate(model, tokens, lengths, hot, jax.random.PRNGKey(5), **kw).tokens)  # noqa: E731
    default = draw()
    np.testing.assert_array_equal(default, draw(cpu_layout=True))
    assert (default != draw(cpu_layout=False)).any()


@pytest.mark.parametrize("typed", [False, True], ids=["raw_keys", "typed_keys"])
@pytest.mark.parametrize("cpu_layout", [False, True])
def test_per_row_keys_make_a_rows_samples_independent_of_its_batch(model, cpu_layout, typed):
    tokens, lengths = _prompts()
    cfg = SamplingConfig(max_new_tokens=6, temperature=1.5)
    keys = jax.random.split(jax.random.key(7) if typed else jax.random.PRNGKey(7), 3)  # one per row
    batch = generate(model, tokens, lengths, cfg, keys, cpu_layout=cpu_layout)
    for b in range(3):
        alone = generate(
            model, tokens[b : b + 1], lengths[b : b + 1], cfg, keys[b : b + 1], cpu_layout=cpu_layout
        )
        np.testing.assert_array_equal(alone.tokens[0], batch.tokens[b])
    flip = np.arange(3)[::-1]  # the rows' order in the batch does not matter either
    flipped = generate(model, tokens[flip], lengths[flip], cfg, keys[flip], cpu_layout=cpu_layout)
    np.testing.assert_array_equal(flipped.tokens[flip], batch.tokens)
    greedy = generate(model, tokens, lengths, SamplingConfig(max_new_tokens=6))
    assert not np.array_equal(batch.tokens, greedy.tokens)  # sampling is on: the noise mattered
    with pytest.raises(ValueError, match="2 per-row keys for 3 rows"):
        generate(model, tokens, lengths, cfg, keys[:2])


@pytest.mark.parametrize("lengths, rows", [([0, 2, 4], [0]), ([6, 7, 0], [1, 2])])
def test_rejects_prompt_lengths_outside_one_to_p(model, lengths, rows):
    # 0 would sample after a padding slot, > P give a NaN log-prob: both were silent
    tokens, _ = _prompts()
    with pytest.raises(ValueError, match=re.escape(f"P=6]; rows {rows}")):
        generate(model, tokens, np.array(lengths, np.int32), SamplingConfig(max_new_tokens=2))


def test_rejects_generation_past_max_seq_len():
    model = Decoder(ModelConfig.tiny(vocab_size=64).replace(max_seq_len=10), rngs=nnx.Rngs(1))
    tokens, lengths = _prompts()  # lengths 6, 2, 4
    with pytest.raises(ValueError, match=r"max_seq_len=10 in rows \[0\]"):
        generate(model, tokens, lengths, SamplingConfig(max_new_tokens=5))
    assert generate(model, tokens, lengths, SamplingConfig(max_new_tokens=4)).tokens.shape == (3, 4)


@pytest.mark.parametrize("vocab_major", [False, True])
def test_top_k_beyond_the_vocab_keeps_every_token(vocab_major):
    logits = jnp.asarray(np.random.default_rng(0).normal(size=(3, 50)).astype(np.float32))
    x = logits.T if vocab_major else logits
    draw = lambda k: sample_next(
        x,
        jax.random.PRNGKey(2),
        SamplingConfig(temperature=1.0, top_k=k),  # noqa: E731
        vocab_major=vocab_major,
    )
    for a, b in zip(draw(1000), draw(None)):
        np.testing.assert_array_equal(a, b)


def test_stop_ids_as_a_list_are_normalised_to_a_hashable_tuple(model):
    cfg = SamplingConfig(max_new_tokens=3, stop_ids=[np.int64(5), 7])
    assert cfg.stop_ids == (5, 7) and cfg == SamplingConfig(max_new_tokens=3, stop_ids=(5, 7))
    hash(cfg)
    tokens, lengths = _prompts()
    assert generate(model, tokens, lengths, cfg).tokens.shape == (3, 3)
