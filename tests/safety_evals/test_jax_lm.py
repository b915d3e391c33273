"""JaxLM (align decoder) against the HFTorchLM reference on one tiny random Gemma3 checkpoint."""

import pytest

torch = pytest.importorskip("torch")

from align.data import Tokenizer  # noqa: E402
from align.model.hf_io import load_hf_dir  # noqa: E402

from safety_evals import jax_lm  # noqa: E402
from safety_evals.hf_lm import HFTorchLM  # noqa: E402
from safety_evals.jax_lm import JaxLM  # noqa: E402
from tests.safety_evals.fakes import save_pretrained, tiny_gemma3, tiny_tokenizer  # noqa: E402


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    tok = tiny_tokenizer()
    hf_model = tiny_gemma3(len(tok), seed=3)
    with torch.no_grad():  # larger random weights: a peaked next-token distribution, no argmax ties
        for p in hf_model.parameters():
            p.mul_(8.0)
    path = save_pretrained(hf_model, tok, tmp_path_factory.mktemp("gemma3"))
    ref = HFTorchLM(hf_model, tok, name="hf", batch_size=3)
    jlm = JaxLM(load_hf_dir(path), Tokenizer(tok), name="jax", batch_size=4, max_length=256)
    return ref, jlm


REQUESTS = [("", "The cat sat on the mat."), ("Hello world,", " the quick brown fox"),
            ("The dog ", "ran in the park."), ("", "yes"), ("Is the response supported?", " no")]


def test_encoding_matches_reference(pair):
    ref, jlm = pair
    for c, k in REQUESTS:
        assert jlm.encode_request(c, k) == ref.encode_request(c, k)


def test_loglikelihood_matches_hf_reference(pair):
    ref, jlm = pair
    want, got = ref.loglikelihood(REQUESTS), jlm.loglikelihood(REQUESTS)
    for w, g in zip(want, got):
        assert g.n_tokens == w.n_tokens
        assert g.logprobs == pytest.approx(w.logprobs, abs=2e-4)
        assert g.is_greedy == w.is_greedy


def test_scoring_compiles_once_per_length_bucket(pair):
    _, jlm = pair
    jlm.loglikelihood([("", "The cat")])  # warm the 16-token bucket
    before = jax_lm._score_jit._cache_size()
    jlm.loglikelihood([("", "The dog ran.")])
    jlm.loglikelihood([("Hello", " world"), ("", "the mat")] * 3)  # two batches, same bucket
    assert jax_lm._score_jit._cache_size() == before


def test_greedy_generation_matches_hf_reference(pair):
    ref, jlm = pair
    prompts = ["The cat", "Hello world, the quick"]
    want = ref.generate(prompts, max_new_tokens=6)
    got = jlm.generate(prompts, max_new_tokens=6)
    assert got == want
    # num_samples rows are laid out per prompt (greedy: identical samples; same [4, P] shape, no recompile)
    twice = jlm.generate(prompts, max_new_tokens=6, num_samples=2)
    assert twice == [[w[0], w[0]] for w in want]
