"""JaxLM (align decoder) against the HFTorchLM reference on one tiny random Gemma3 checkpoint."""

import jax
import pytest

torch = pytest.importorskip("torch")

from align.data import Tokenizer
from align.model.hf_io import load_hf_dir
from safety_evals import jax_lm
from safety_evals.hf_lm import HFTorchLM
from safety_evals.jax_lm import JaxLM
from tests.safety_evals.fakes import save_pretrained, tiny_gemma3, tiny_tokenizer


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
    jlm.model_dir = path
    return ref, jlm


REQUESTS = [
    ("", "The cat sat on the mat."),
    ("Hello world,", " the quick brown fox"),
    ("The dog ", "ran in the park."),
    ("", "yes"),
    ("Is the response supported?", " no"),
]


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


def test_align_eval_end_to_end_through_align_load(pair, tmp_path):
    import json

    import align
    from pipelines.cli import main
    from safety_evals.results import files_sha256

    path = str(pair[1].model_dir)
    loaded = align.load(path)
    assert loaded.source == path
    out = tmp_path / "r.json"
    code = main(
        [
            "eval",
            "--model",
            path,
            "--suite",
            "crows_pairs",
            "--limit",
            "2",
            "--batch-size",
            "4",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    doc = json.loads(out.read_text())
    assert code == 0, {k: s["error"] for k, s in doc["suites"].items()}
    assert doc["model"]["path"] == path and doc["model"]["sha256"] == files_sha256(path)
    # the CLI's numbers are the JaxLM's numbers
    ll = [s["extra"]["ll_more"] for s in doc["suites"]["crows_pairs"]["examples"]]
    from safety_evals import crows_pairs

    pairs, _ = crows_pairs.load(limit=2)
    assert ll == pytest.approx(list(crows_pairs.score_pairs(pair[1], pairs)[0]), abs=1e-5)


def test_logit_chunks_divide_t_and_respect_the_budget():
    assert jax_lm.chunk_size(8, 512, 262144) == 16  # 8 * 16 * 262144 * 4 B = 128 MiB
    assert jax_lm.chunk_size(1, 16 * 24, 262144) == 128  # flat scoring tokens of a [16, 24] batch
    assert jax_lm.chunk_size(1, 200, 262144) == 100  # the largest divisor within the budget
    assert jax_lm.chunk_size(2, 16, 320) == 16
    assert jax_lm.chunk_size(64, 32, 262144, budget=1) == 1
    for B, T, V in [(4, 256, 1000), (32, 1024, 262144), (1, 16 * 40, 262144)]:
        C = jax_lm.chunk_size(B, T, V)
        assert T % C == 0 and (B * C * V * 4 <= jax_lm.LOGITS_BUDGET or C == 1)


def test_score_buckets_step_by_eight_then_by_quarter_octaves():
    got = [jax_lm.score_bucket(n) for n in (1, 8, 9, 17, 33, 64, 65, 81, 129, 300)]
    assert got == [8, 8, 16, 24, 40, 64, 80, 96, 160, 320]


def test_layout_lists_scored_positions_first_row_by_row():
    # row 0: window [2, 5, 6] scores its last 2 positions (targets 6 and the last cont token 7);
    # row 1: window [2, 9] scores 1; row 2 is filler
    tokens, targets, lengths, order, n = jax_lm.layout([([2, 5, 6], 2, 7), ([2, 9], 1, 4)], 3, 4, 0)
    assert tokens.tolist() == [[2, 5, 6, 0], [2, 9, 0, 0], [0, 0, 0, 0]]
    assert targets.tolist() == [[5, 6, 7, 0], [9, 4, 0, 0], [0, 0, 0, 0]]
    assert lengths.tolist() == [3, 2, 1]
    assert n == 3 and order[:3].tolist() == [1, 2, 5]
    assert sorted(order.tolist()) == list(range(12))
    with pytest.raises(ValueError, match="row 0 has 3 tokens"):
        jax_lm.layout([([2, 5, 6], 1, 7)], 1, 2, 0)


def test_small_chunks_skip_unscored_tail_and_match_reference(pair, monkeypatch):
    """Chunks of 4 tokens: several chunks per batch, the unscored tail skipped by lax.cond."""
    ref, jlm = pair
    V = jlm.model.config.vocab_size
    monkeypatch.setattr(jax_lm, "LOGITS_BUDGET", 4 * V * 4)
    monkeypatch.setattr(jax_lm, "_score_jit", jax.jit(jax_lm._score, static_argnames=("graphdef",)))
    want, got = ref.loglikelihood(REQUESTS), jlm.loglikelihood(REQUESTS)
    for w, g in zip(want, got):
        assert g.logprobs == pytest.approx(w.logprobs, abs=2e-4)
        assert g.is_greedy == w.is_greedy
