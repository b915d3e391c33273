"""Integration: the real gemma-3-270m GGUF against transformers' Gemma3ForCausalLM on the same file."""

from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.integration

PROMPTS = ["The capital of France is", "def fibonacci(n):", "Safety reviewers read the dashboard because"]


@pytest.fixture(scope="module")
def pair():
    import transformers

    import align
    from align.hub import embedded_gguf_path

    gguf = Path(embedded_gguf_path())
    ours = align.load(str(gguf), with_tokenizer=False)
    ref = transformers.AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    )
    tokenizer = align.load("gemma3-270m").tokenizer  # the cached conversion: same vocab, loads fast
    return ours.model, ref.eval(), tokenizer


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
    res = generate(model, prompt, np.array([len(r) for r in ids]), SamplingConfig(max_new_tokens=32))
    for i, row in enumerate(ids):
        with torch.no_grad():
            out = ref.generate(torch.tensor([row]), max_new_tokens=32, do_sample=False, min_new_tokens=32)
        expected = out[0, len(row) :].tolist()
        assert np.asarray(res.tokens[i]).tolist() == expected, tok.decode(expected)
