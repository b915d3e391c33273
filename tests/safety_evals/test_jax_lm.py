"""JaxLM (align decoder) against the HFTorchLM reference on one tiny random Gemma3 checkpoint."""

import jax
import pytest

torch = pytest.importorskip("torch")

from align.data import Tokenizer
from align.model.hf_io import load_hf_dir
from safety_evals.lm import jax_lm
from safety_evals.lm.hf_lm import HFTorchLM
from safety_evals.lm.jax_lm import JaxLM
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


def test_scoring_compiles_once_per_pass_shape(pair):
    _, jlm = pair
    jlm.loglikelihood([("", "The cat")])  # warm one row of the 8-token bucket
    before = jax_lm._score_jit._cache_size()
    jlm.loglikelihood([("", "The dog")])
    jlm.loglikelihood([("", "yes")])
    assert jax_lm._score_jit._cache_size() == before


# Several continuations of one context, an exact duplicate, and sentences that part after a few
# words: prefix trees with positions past the tiny model's 8-token sliding window.
TREE_REQUESTS = [
    ("Hello world, the quick brown fox", " jumps over the lazy dog"),
    ("Hello world, the quick brown fox", " sleeps"),
    ("Hello world, the quick brown fox", " sleeps"),
    ("Hello world, the quick brown fox", " is quick and brown and very far away from here"),
    ("", "The cat sat on the mat and looked at the dog."),
    ("", "The cat sat on the mat and looked at the bird."),
    ("", "The man sat."),
    ("Is the response supported?", " no"),
]


def test_prefix_trees_and_packing_score_as_each_request_alone(pair):
    ref, jlm = pair
    want = ref.loglikelihood(TREE_REQUESTS)
    plans = jlm.plan([jlm.encode_request(c, k) for c, k in TREE_REQUESTS])
    assert any(g.prefix and len(g.members) > 1 for b in plans for row in b.rows for g in row)
    assert any(len(row) > 1 for b in plans for row in b.rows)  # packed
    got = jlm.loglikelihood(TREE_REQUESTS)
    jlm.share_prefixes, jlm.pack_tokens = False, 0  # one request per row, no tree
    try:
        alone = jlm.loglikelihood(TREE_REQUESTS)
    finally:
        jlm.share_prefixes, jlm.pack_tokens = True, jax_lm.PACK_TOKENS
    for w, g, a in zip(want, got, alone):
        assert g.n_tokens == w.n_tokens == a.n_tokens
        assert g.logprobs == pytest.approx(w.logprobs, abs=2e-4)
        assert g.logprobs == pytest.approx(a.logprobs, abs=1e-5)
        assert g.is_greedy == w.is_greedy == a.is_greedy


def test_greedy_generation_matches_hf_reference(pair):
    ref, jlm = pair
    prompts = ["The cat", "Hello world, the quick"]
    want = ref.generate(prompts, max_new_tokens=6)
    got = jlm.generate(prompts, max_new_tokens=6)
    assert got == want
    # num_samples rows are laid out per prompt (greedy: identical samples; same [4, P] shape, no recompile)
    twice = jlm.generate(prompts, max_new_tokens=6, num_samples=2)
    assert twice == [[w[0], w[0]] for w in want]


def test_sampled_generation_does_not_depend_on_batch_size(pair):
    _, jlm = pair
    prompts = ["The cat", "Hello world, the quick", "The dog ran", "Is the"]
    kwargs = dict(max_new_tokens=6, temperature=4.0, num_samples=2, seed=5)  # hot: the peaked model varies
    by_size = {
        bs: JaxLM(jlm.model, jlm.tokenizer, name="jax", batch_size=bs, max_length=256).generate(
            prompts, **kwargs
        )
        for bs in (1, 3)
    }  # 3: a batch mixes prompts, the last one has filler rows
    assert by_size[1] == by_size[3]
    assert any(a != b for a, b in by_size[1])  # sampling is on: a prompt's two samples differ
    assert by_size[1] != jlm.generate(prompts, max_new_tokens=6, num_samples=2)  # and differ from greedy


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
    from safety_evals.suites import crows_pairs

    pairs, _ = crows_pairs.load(limit=2)
    assert ll == pytest.approx(list(crows_pairs.score_pairs(pair[1], pairs)[0]), abs=1e-5)


def test_tiles_divide_the_entries_and_cover_one_per_token():
    assert jax_lm.tile_rows(2048) == 256 and jax_lm.tile_rows(24) == 24 and jax_lm.tile_rows(200) == 200
    assert jax_lm.tile_rows(1000, limit=256) == 250
    assert jax_lm.entry_count(100, 4, 128) == 512  # one entry per token fits: E = R*T
    assert jax_lm.entry_count(600, 4, 128) == 768  # more entries than tokens: whole tiles


def test_small_tiles_skip_the_unscored_tail_and_match_reference(pair, monkeypatch):
    """Tiles of 4 entries: several tiles per pass, the tail past the last entry skipped by lax.cond."""
    ref, jlm = pair
    monkeypatch.setattr(jax_lm, "TILE_ROWS", 4)
    monkeypatch.setattr(jax_lm, "_score_jit", jax.jit(jax_lm._score, static_argnames=("graphdef", "tree")))
    want, got = ref.loglikelihood(REQUESTS + TREE_REQUESTS), jlm.loglikelihood(REQUESTS + TREE_REQUESTS)
    for w, g in zip(want, got):
        assert g.logprobs == pytest.approx(w.logprobs, abs=2e-4)
        assert g.is_greedy == w.is_greedy


def test_benchmark_warm_up_compiles_every_pass_shape_its_slices_use(pair, monkeypatch):
    from tests.scripts import load_script

    bench = load_script("benchmarks/eval_throughput.py")
    _, jlm = pair
    monkeypatch.setattr(jax_lm, "_score_jit", jax.jit(jax_lm._score, static_argnames=("graphdef", "tree")))
    # slices of 2: two packed sentences, then a prefix tree, both one row of 24 tokens: the same
    # (rows, length) but another jit shape (the tree flag)
    texts = [
        ("", "The cat sat on the mat."),
        ("", "A dog ran far away."),
        ("Hello there", " my friend"),
        ("Hello there", " old chap"),
    ]
    reqs = [jlm.encode_request(c, k) for c, k in texts]
    shapes = [(b.R, b.T) for s in (0, 2) for b in jlm.plan(reqs[s : s + 2])]
    assert shapes == [(1, 24), (1, 24)]
    bench._warm_jax(jlm, reqs, 2)
    before = jax_lm._score_jit._cache_size()
    for start in range(0, len(reqs), 2):
        jlm.loglikelihood_tokens(reqs[start : start + 2])
    assert jax_lm._score_jit._cache_size() == before
