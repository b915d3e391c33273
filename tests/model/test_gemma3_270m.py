"""Integration: the real gemma-3-270m GGUF against transformers' Gemma3ForCausalLM on the same file."""

from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.integration

# greedy tokens compared per prompt: logits already match to 1e-3, so more tokens buy CI time, not evidence
NEW_TOKENS = 16
PROMPTS = ["The capital of France is", "def fibonacci(n):", "Safety reviewers read the dashboard because"]


@pytest.fixture(scope="module")
def pair():
    import transformers

    import align
    from align.hub import embedded_gguf_path

    gguf = Path(embedded_gguf_path())
    ours = align.load(str(gguf), with_tokenizer=False)
    ref = transformers.AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, config=published_config(transformers), dtype=torch.float32
    )
    tokenizer = align.load("gemma3-270m").tokenizer  # the cached conversion: same vocab, loads fast
    return ours.model, ref.eval(), tokenizer


def published_config(transformers):
    """google/gemma-3-270m's config.json, by hand: the reference takes its hyperparameters from Google's
    release, not from the GGUF metadata our loader reads (and transformers skips its second pass over
    the GGUF's 262K-token vocabulary, half a minute)."""
    return transformers.Gemma3TextConfig(
        vocab_size=262144,
        hidden_size=640,
        intermediate_size=2048,
        num_hidden_layers=18,
        num_attention_heads=4,
        num_key_value_heads=1,
        head_dim=256,
        query_pre_attn_scalar=256,
        rms_norm_eps=1e-6,
        hidden_activation="gelu_pytorch_tanh",
        sliding_window=512,
        layer_types=(["sliding_attention"] * 5 + ["full_attention"]) * 3,
        rope_parameters={
            "full_attention": {"rope_type": "default", "rope_theta": 1e6},
            "sliding_attention": {"rope_type": "default", "rope_theta": 1e4},
        },
        max_position_embeddings=32768,
        tie_word_embeddings=True,
        bos_token_id=2,
        eos_token_id=1,
        pad_token_id=0,
    )


def test_logits_match_transformers(pair):
    model, ref, tok = pair
    for prompt in PROMPTS:
        ids = np.array([tok.encode(prompt, add_bos=True)], np.int32)
        T = ids.shape[1]
        ours = model(jnp.asarray(ids), jnp.arange(T)[None], jnp.ones((1, T), jnp.int32)).logits
        with torch.no_grad():
            theirs = ref(torch.tensor(ids, dtype=torch.long)).logits.numpy()
        diff = float(np.abs(np.asarray(ours) - theirs).max())
        assert diff < 1e-3, f"{prompt!r}: max |logit diff| = {diff}"


def test_greedy_generation_matches_transformers(pair):
    from align.sampling import SamplingConfig, generate

    model, ref, tok = pair
    ids = [tok.encode(p, add_bos=True) for p in PROMPTS[:2]]
    P = max(map(len, ids))
    prompt = np.zeros((len(ids), P), np.int32)
    for i, row in enumerate(ids):
        prompt[i, : len(row)] = row
    res = generate(model, prompt, np.array([len(r) for r in ids]), SamplingConfig(max_new_tokens=NEW_TOKENS))
    for i, row in enumerate(ids):
        with torch.no_grad():
            out = ref.generate(
                torch.tensor([row]), max_new_tokens=NEW_TOKENS, do_sample=False, min_new_tokens=NEW_TOKENS
            )
        expected = out[0, len(row) :].tolist()
        assert np.asarray(res.tokens[i]).tolist() == expected, tok.decode(expected)
