"""HFTorchLM: lm-eval request encoding and log-likelihoods equal to a manual torch computation."""

import pytest

torch = pytest.importorskip("torch")

from safety_evals.hf_lm import HFTorchLM
from safety_evals.lm import encode_request, scoring_window
from tests.safety_evals.fakes import tiny_gemma3, tiny_tokenizer


@pytest.fixture(scope="module")
def lm():
    tok = tiny_tokenizer()
    return HFTorchLM(tiny_gemma3(len(tok)), tok, name="tiny", batch_size=2)


def manual_loglik(model, ids: list[int], n_cont: int) -> list[float]:
    """Reference: one unpadded forward pass, log_softmax, gather the last n_cont targets."""
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids[:-1]])).logits[0].float()
    logp = torch.log_softmax(logits, dim=-1)
    targets = torch.tensor(ids[1:])
    per_token = logp[torch.arange(len(ids) - 1), targets]
    return per_token[-n_cont:].tolist()


def test_gemma_gets_bos_and_empty_context_uses_bos_prefix(lm):
    tok = lm.tokenizer
    assert lm.add_bos and lm.prefix_id == tok.bos_token_id
    ctx, cont = lm.encode_request("", "The cat sat.")
    assert ctx == [tok.bos_token_id]
    assert cont == tok.encode("The cat sat.", add_special_tokens=False)


def test_trailing_space_of_context_moves_to_continuation(lm):
    tok = lm.tokenizer
    ctx, cont = lm.encode_request("The cat ", "sat")
    assert ctx == tok.encode("The cat")  # with BOS
    assert ctx + cont == tok.encode("The cat sat")


def test_encode_request_prefix_already_in_continuation():
    enc = lambda text, special: [7, 1, 2] if text == "x" else []
    assert encode_request("", "x", encode=enc, prefix_id=7, add_bos=True) == ([7], [1, 2])
    assert encode_request("", "x", encode=enc, prefix_id=9, add_bos=True) == ([9], [7, 1, 2])
    assert encode_request("", "", encode=enc, prefix_id=9, add_bos=True) == ([9], [])


def test_scoring_window_truncates_from_the_left():
    assert scoring_window([1, 2, 3], [4, 5], max_length=10) == ([1, 2, 3, 4], 2)
    assert scoring_window([1, 2, 3], [4, 5], max_length=3) == ([2, 3, 4], 2)
    assert scoring_window([1], [2, 3, 4, 5], max_length=2) == ([3, 4], 2)


def test_loglikelihood_matches_manual_torch(lm):
    requests = [
        ("", "The cat sat on the mat."),
        ("Hello world,", " the quick brown fox"),
        ("The dog", " ran."),
        ("", "yes"),
    ]
    got = lm.loglikelihood(requests)
    for (c, k), scores in zip(requests, got):
        ctx, cont = lm.encode_request(c, k)
        want = manual_loglik(lm.model, ctx + cont, len(cont))
        assert scores.n_tokens == len(cont)
        assert scores.logprobs == pytest.approx(want, abs=1e-5)
        assert scores.total == pytest.approx(sum(want), abs=1e-4)


def test_generate_greedy_is_deterministic_and_stops(lm):
    a = lm.generate(["The cat", "Hello"], max_new_tokens=6)
    b = lm.generate(["The cat", "Hello"], max_new_tokens=6)
    assert a == b and len(a) == 2 and len(a[0]) == 1
    # greedy text continues the prompt by the argmax token
    ids = lm.tokenizer.encode("The cat")
    with torch.no_grad():
        first = int(lm.model(input_ids=torch.tensor([ids])).logits[0, -1].argmax())
    assert a[0][0].startswith(lm.tokenizer.decode([first], skip_special_tokens=True)[:1])
    stop_char = a[0][0][2:3]
    if stop_char:
        cut = lm.generate(["The cat"], max_new_tokens=6, stop=[stop_char])[0][0]
        assert stop_char not in cut and a[0][0].startswith(cut)


def test_generate_samples(lm):
    out = lm.generate(["The cat"], max_new_tokens=4, temperature=1.0, top_p=0.9, num_samples=3, seed=1)
    again = lm.generate(["The cat"], max_new_tokens=4, temperature=1.0, top_p=0.9, num_samples=3, seed=1)
    assert len(out) == 1 and len(out[0]) == 3 and out == again
