"""HFTorchLM: lm-eval request encoding and log-likelihoods equal to a manual torch computation."""

import pytest

torch = pytest.importorskip("torch")

from safety_evals.lm.hf_lm import HFTorchLM
from safety_evals.lm.protocol import encode_request, scoring_window
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
    assert scoring_window([1], [2, 3], max_length=2) == ([1, 2], 2)


def test_a_continuation_longer_than_the_window_raises_instead_of_scoring_its_tail(lm):
    with pytest.raises(ValueError, match="max_length=2"):
        scoring_window([1], [2, 3, 4, 5], max_length=2)
    cont = "the quick brown fox jumps over the lazy dog"
    n = len(lm.encode_request("Hello", " " + cont)[1])
    short = HFTorchLM(lm.model, lm.tokenizer, batch_size=2, max_length=n - 1)
    with pytest.raises(ValueError, match="does not fit"):
        short.loglikelihood([("Hello", " " + cont)])
    assert short.loglikelihood([("Hello", " fox")])[0].n_tokens >= 1  # a context is still left-truncated


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


def manual_greedy(lm, prompt: str, max_new_tokens: int) -> str:
    """Reference: argmax of one unpadded forward pass per new token, stopping at EOS, decoded."""
    ids, new = lm.encode(prompt, True), []
    for _ in range(max_new_tokens):
        with torch.no_grad():
            token = int(lm.model(input_ids=torch.tensor([ids + new])).logits[0, -1].argmax())
        if token == lm.tokenizer.eos_token_id:
            break
        new.append(token)
    return lm.tokenizer.decode(new, skip_special_tokens=True)


def test_generate_greedy_is_deterministic_and_stops(lm):
    prompts = ["The dog", "Hello"]  # 3 and 4 tokens: one batch, the shorter prompt left-padded
    assert [len(lm.encode(p, True)) for p in prompts] == [3, 4]
    a = lm.generate(prompts, max_new_tokens=6)
    b = lm.generate(prompts, max_new_tokens=6)
    assert a == b and [len(x) for x in a] == [1, 1]
    want = [manual_greedy(lm, p, 6) for p in prompts]
    assert [x[0] for x in a] == want
    # a stop string cuts the text at its first occurrence (and is not kept)
    full = want[1]
    assert len(full) >= 3, full
    stop = full[-1]
    cut = lm.generate(["Hello"], max_new_tokens=6, stop=[stop])[0][0]
    assert cut == full[: full.index(stop)] and stop not in cut and len(cut) < len(full)


def test_generate_samples(lm):
    out = lm.generate(["The cat"], max_new_tokens=4, temperature=1.0, top_p=0.9, num_samples=3, seed=1)
    again = lm.generate(["The cat"], max_new_tokens=4, temperature=1.0, top_p=0.9, num_samples=3, seed=1)
    other = lm.generate(["The cat"], max_new_tokens=4, temperature=1.0, top_p=0.9, num_samples=3, seed=2)
    assert len(out) == 1 and len(out[0]) == 3 and out == again
    assert other != out  # the seed drives the sampling (3 samples of 4 tokens: equal by chance ~never)
    assert len(set(out[0])) > 1  # the samples of one call differ from each other too
    assert out[0][0] != manual_greedy(lm, "The cat", 4)  # temperature 1 samples, it does not take argmaxes


def test_greedy_generation_with_several_samples_repeats_the_greedy_text(lm):
    # JaxLM decodes num_samples independent rows; greedy rows are all the same text
    out = lm.generate(["The dog", "Hello"], max_new_tokens=4, num_samples=3)
    want = [x[0] for x in lm.generate(["The dog", "Hello"], max_new_tokens=4)]
    assert out == [[w] * 3 for w in want]


def test_generation_stops_at_end_of_turn_like_jax():
    # A tokenizer with <end_of_turn> and a tiny model that greedily emits it as its second new token:
    # with tied embeddings, swapping the rows of that token (x) and <end_of_turn> makes the model say
    # <end_of_turn> wherever it said x (the prompt holds neither). The config's eos list names only <eos>.
    from safety_evals.lm.hf_lm import stop_token_ids

    tok = tiny_tokenizer()
    tok.add_special_tokens({"additional_special_tokens": ["<end_of_turn>"]})
    eot = tok.convert_tokens_to_ids("<end_of_turn>")
    model = tiny_gemma3(len(tok), seed=3)
    embed = model.model.embed_tokens.weight
    assert model.lm_head.weight.data_ptr() == embed.data_ptr()  # tied: one swap moves input and output
    lm = HFTorchLM(model, tok, batch_size=1)
    assert lm.stop_ids == (tok.eos_token_id, eot) == stop_token_ids(model, tok)
    prompt = lm.encode("Hello", True)
    first = [int(model(input_ids=torch.tensor([prompt])).logits[0, -1].argmax())]
    x = int(model(input_ids=torch.tensor([prompt + first])).logits[0, -1].argmax())
    assert x not in (*prompt, *first, tok.eos_token_id, eot)
    with torch.no_grad():
        embed[[x, eot]] = embed[[eot, x]]
    assert lm.generate(["Hello"], max_new_tokens=6)[0][0] == tok.decode(first)
    # without <end_of_turn> as a stop token, generation ran on past it (the old behaviour)
    runs_on = model.generate(
        input_ids=torch.tensor([prompt]),
        max_new_tokens=6,
        do_sample=False,
        eos_token_id=tok.eos_token_id,
        pad_token_id=lm.pad_id,
    )[0, len(prompt) :].tolist()
    assert runs_on[:2] == [*first, eot] and len(runs_on) > 2
