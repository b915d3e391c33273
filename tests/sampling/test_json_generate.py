"""JSON mode in the sampler: every output parses, and greedy output is unchanged where it was JSON."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from align.data import Tokenizer
from align.data.testing import TINY_VOCAB_SIZE, tiny_tokenizer
from align.data_dir import data_path
from align.model import Decoder, ModelConfig
from align.sampling import SamplingConfig, generate
from align.sampling.json_mode import json_tables
from align.sampling.text import encode_texts, generate_text, pad_prompts


@pytest.fixture(scope="module")
def tiny():
    config = ModelConfig.tiny(vocab_size=TINY_VOCAB_SIZE).replace(max_seq_len=1024)
    return Decoder(config, rngs=nnx.Rngs(3)), Tokenizer(tiny_tokenizer())


def ifeval_json_prompts() -> list[str]:
    """The IFEval prompts with the `detectable_format:json_format` instruction (17 of 541)."""
    with open(data_path("ifeval/input_data.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    return [r["prompt"] for r in rows if "detectable_format:json_format" in r["instruction_id_list"]]


# Sampled, under a tight budget and under the tightest one; each budget is one more compiled sampler
# (about 15 s of CI), so greedy JSON mode is left to the equality test below and, on these prompts,
# to the gemma3-270m integration test.
@pytest.mark.parametrize("temperature, max_new_tokens, top_k", [(1.5, 7, 50), (1.0, 1, None)])
def test_every_output_parses_on_the_ifeval_json_prompts(tiny, temperature, max_new_tokens, top_k):
    model, tok = tiny
    prompts = ifeval_json_prompts()
    assert len(prompts) == 17
    config = SamplingConfig(max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k)
    texts, res = generate_text(model, tok, prompts, config, chat=True, response_format="json")
    for text in texts:
        json.loads(text)  # raises on an invalid output
    assert (np.asarray(res.lengths) <= max_new_tokens).all()
    assert len(set(texts)) > 1  # a random model's samples: not all one token, not all stopped at once


def _scripted_logits(monkeypatch, model, rows: list[tuple[np.ndarray, list[int]]]):
    """Make greedy decoding after each prompt emit its script: a test-only logits processor that adds a
    large bias to script[i] when the hidden state is nearest the teacher-forced one before script[i]."""
    hidden, target = [], []
    for prompt, script in rows:
        tokens = jnp.asarray([list(prompt) + script[:-1]])
        T = tokens.shape[1]
        hidden.append(
            model.hidden(tokens, jnp.arange(T)[None], jnp.ones((1, T), jnp.int32))[0, len(prompt) - 1 :]
        )
        target.append(jax.nn.one_hot(jnp.asarray(script), model.config.vocab_size) * 100.0)  # [n, V]
    hidden, target = jnp.concatenate(hidden), jnp.concatenate(target)
    original = Decoder.next_token_logits

    def biased(self, h, *, vocab_major=False):
        logits = original(self, h, vocab_major=vocab_major)
        nearest = jnp.argmin(jnp.sum((h[:, None] - hidden[None]) ** 2, -1), axis=-1)  # [B]
        bias = target[nearest]  # [B, V]
        return logits + (bias.T if vocab_major else bias)

    monkeypatch.setattr(Decoder, "next_token_logits", biased)


def test_greedy_json_mode_equals_unconstrained_greedy_when_that_is_json(tiny, monkeypatch):
    model, tok = tiny
    texts = ['{"name": "ab", "n": [1, 2.5], "ok": true}', '{"a": 1,, "b"}']  # JSON, then not JSON
    prompts = encode_texts(tok, ["Reply in JSON.", "Answer with JSON."], chat=True)
    scripts = [tok.encode(t) + [tok.end_of_turn_id] for t in texts]
    jax.clear_caches()  # the patched method must be traced, not a program compiled before
    _scripted_logits(monkeypatch, model, list(zip(prompts, scripts)))
    tokens, lengths = pad_prompts(prompts, tok.pad_id)
    M = max(map(len, scripts)) + 3
    config = SamplingConfig(max_new_tokens=M, stop_ids=tok.stop_ids, pad_id=tok.pad_id)
    free = generate(model, tokens, lengths, config)
    forced = generate(model, tokens, lengths, config, json_tables=json_tables(tok, TINY_VOCAB_SIZE))
    monkeypatch.undo()
    jax.clear_caches()
    for i, script in enumerate(scripts):  # the processor does script the model
        assert np.asarray(free.tokens[i, : int(free.lengths[i])]).tolist() == script
    out = [tok.decode(np.asarray(forced.tokens[i, : int(forced.lengths[i])])) for i in range(2)]
    for text in out:
        json.loads(text)
    np.testing.assert_array_equal(forced.tokens[0], free.tokens[0])  # already JSON: unchanged
    assert forced.lengths[0] == free.lengths[0]
    assert out[1].startswith('{"a": 1,') and out[1] != texts[1]  # kept up to its first error


def test_generate_text_rejects_an_unknown_response_format(tiny):
    model, tok = tiny
    with pytest.raises(ValueError, match="response_format='xml'"):
        generate_text(model, tok, ["hi"], SamplingConfig(max_new_tokens=2), response_format="xml")


@pytest.mark.integration
def test_gemma_json_mode_parses_on_the_ifeval_json_prompts():
    import align

    loaded = align.load("gemma3-270m")
    tables = json_tables(loaded.tokenizer, loaded.config.vocab_size)
    assert tables.bracket_ids.shape[0] == 1606  # of 262144 tokens, run on device each step
    config = SamplingConfig(max_new_tokens=16)  # short of what most prompts ask for: every output must close
    texts, _ = generate_text(
        loaded.model, loaded.tokenizer, ifeval_json_prompts(), config, chat=True, response_format="json"
    )
    for text in texts:
        json.loads(text)
