"""ScoreModel pool="response_mean": the pooling by hand, every reward path (pair_rewards, RewardScorer,
ScoreModelReward, the probe's features) on the same (prompt, response), the export round trip and
transformers' hidden states, and the probe that fits and exports such a head."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from align.data import PreferenceExample, encode_prompt, preference_batch, prompt_batch
from align.data.preference import preference_pair
from align.errors import InvalidInput
from align.hub import load
from align.model.heads import ScoreModel, pool_tokens
from align.reward import RewardScorer, build_reward_model, load_reward_model, pair_rewards, save_reward_model
from align.reward.model import POOL_KEY, pair_pooled_hidden
from align.rl.reward_model import ResponseEnding, ScoreModelReward
from reward_models.features import pair_feature_sets, pool_index

CHAT = [{"role": "user", "content": "tell me about stone"}]
PROMPTS = [CHAT, CHAT, "plain prompt", "plain prompt"]
RESPONSES = ["yes, happy to help", "no. go away, stone is dull", " a longer answer than the others", " ok"]


def test_pool_tokens_by_hand():
    scores = jnp.array([[1.0, 2.0, 3.0, 4.0, 0.0], [5.0, 6.0, 7.0, 8.0, 9.0], [1.0, 1.0, 0.0, 0.0, 0.0]])
    segments = jnp.array([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1], [1, 1, 0, 0, 0]])
    response = jnp.array([[0, 0, 1, 1, 0], [0, 1, 0, 1, 1], [0, 0, 0, 0, 0]])
    mean = pool_tokens(scores, segments, response, "response_mean")
    np.testing.assert_allclose(mean, [3.5, (6 + 8 + 9) / 3, 0.0])  # an empty response scores 0
    np.testing.assert_array_equal(pool_tokens(scores, segments, response, "last"), [4.0, 9.0, 1.0])
    hidden = jnp.stack([scores, 2 * scores], axis=-1)  # [B, T, 2]: the same pooling per feature
    np.testing.assert_allclose(pool_tokens(hidden, segments, response, "response_mean")[:, 1], 2 * mean)
    with pytest.raises(ValueError, match="response mask"):
        pool_tokens(scores, segments, None, "response_mean")
    with pytest.raises(ValueError, match="pool='max'"):
        pool_tokens(scores, segments, response, "max")


@pytest.fixture(scope="module")
def rm():
    """A tiny response_mean reward model with a head large enough for rewards to differ clearly."""
    loaded = load("preset:tiny", seed=1)
    model = build_reward_model(loaded.model, seed=2, pool="response_mean")
    model.head.w[...] = jax.random.normal(jax.random.key(3), model.head.w[...].shape)
    return model, loaded.tokenizer


@nnx.jit
def _token_scores(model, tokens, positions, segments):
    return model.token_scores(tokens, positions, segments)


def by_hand(model: ScoreModel, tokens: np.ndarray, response: np.ndarray) -> float:
    """The mean over the response tokens of the head's per-token score, on one unpadded row."""
    tokens = jnp.asarray(tokens)[None]
    positions, segments = jnp.arange(tokens.shape[1])[None], jnp.ones_like(tokens)
    # jitted: one compile per row length; run op by op the forward compiles every op per length instead
    scores = np.asarray(_token_scores(model, tokens, positions, segments))
    return float(scores[0][np.asarray(response, bool)].mean())


def test_default_last_pool_ignores_the_response_mask(rm):
    model, _ = rm
    model = ScoreModel(model.backbone, rngs=nnx.Rngs(2))
    assert model.pool == "last"
    tokens = jnp.array([[2, 9, 12, 13, 0, 0], [2, 5, 7, 11, 14, 1]])
    positions = jnp.broadcast_to(jnp.arange(6), (2, 6))
    segments = (jnp.arange(6)[None] < jnp.array([[4], [6]])).astype(jnp.int32)
    scores = model.token_scores(tokens, positions, segments)
    last = model(tokens, positions, segments)
    np.testing.assert_array_equal(last, [scores[0, 3], scores[1, 5]])
    np.testing.assert_array_equal(model(tokens, positions, segments, jnp.ones_like(tokens)), last)


def test_every_reward_path_is_the_mean_over_the_response(rm):
    model, tok = rm
    scorer = RewardScorer(model, tok, batch_size=4, max_length=64)
    got = scorer.score(PROMPTS, RESPONSES)
    seqs = [scorer.encode(p, r) for p, r in zip(PROMPTS, RESPONSES)]
    expect = [by_hand(model, s.tokens, s.loss_mask) for s in seqs]
    np.testing.assert_allclose(got, expect, atol=1e-5)
    assert np.ptp(got) > 1e-2  # the rewards differ, so the comparisons mean something
    # pair_rewards on preference batches of the same (prompt, response)s
    as_turn = lambda r: [{"role": "assistant", "content": r}]  # noqa: E731
    pairs = [
        preference_pair(PreferenceExample(CHAT, as_turn(RESPONSES[0]), as_turn(RESPONSES[1])), tok),
        preference_pair(PreferenceExample("plain prompt", RESPONSES[2], RESPONSES[3]), tok),
    ]
    batch = preference_batch(pairs, 64, rows=3, pad_id=tok.pad_id)
    rewards = np.asarray(pair_rewards(model, batch))  # [3, 2]
    np.testing.assert_allclose(rewards[:2], got.reshape(2, 2), atol=1e-5)
    # ... and the pooled features are what the probe's feature pass stores as "mean"
    hidden = np.asarray(pair_pooled_hidden(model, batch))[:2]  # [2, 2, D]
    feats = pair_feature_sets(model.backbone, pairs, pools=("last", "mean"), batch_size=2, pad_id=tok.pad_id)
    n = len(model.backbone.layers)
    np.testing.assert_allclose(feats[:, :, pool_index(("last", "mean"), (n,), "mean", n)], hidden, atol=1e-5)
    np.testing.assert_allclose(hidden @ np.asarray(model.head.w[...]), rewards[:2], atol=1e-4)


def test_the_rl_reward_is_the_scorers_reward(rm):
    """ScoreModelReward on sampled tokens (stop token replaced by the RM's ending) = RewardScorer."""
    model, tok = rm
    ending = ResponseEnding.of(tok)
    prompts = prompt_batch([encode_prompt(p, tok) for p in PROMPTS], 48, padding="right")
    prompt_mask = np.arange(48)[None] < prompts["lengths"][:, None]
    sampled = [
        tok.encode(r) + [tok.end_of_turn_id if isinstance(p, list) else tok.eos_id]
        for p, r in zip(PROMPTS, RESPONSES)
    ]
    M = max(map(len, sampled)) + 2  # padding after the stop token
    response = np.array([s + [0] * (M - len(s)) for s in sampled])
    response_mask = np.array([[1] * len(s) + [0] * (M - len(s)) for s in sampled])
    got = ScoreModelReward(model, ending=ending)(prompts["tokens"], prompt_mask, response, response_mask)
    expect = RewardScorer(model, tok, max_length=128).score(PROMPTS, RESPONSES)
    np.testing.assert_allclose(got, expect, atol=1e-5)


def test_export_keeps_the_pool_and_matches_transformers_hidden_states(rm, tmp_path):
    torch = pytest.importorskip("torch")
    from transformers import AutoModelForSequenceClassification

    model, tok = rm
    export = save_reward_model(model, tmp_path / "rm", tokenizer=tok)
    assert json.loads((export / "config.json").read_text())[POOL_KEY] == "response_mean"
    back, tok2 = load_reward_model(export)
    assert back.pool == "response_mean"
    ours = RewardScorer(back, tok2).score(PROMPTS, RESPONSES)
    np.testing.assert_allclose(ours, RewardScorer(model, tok).score(PROMPTS, RESPONSES), atol=1e-6)
    hf = AutoModelForSequenceClassification.from_pretrained(export, dtype=torch.float32).eval()
    theirs, theirs_last = [], []
    for prompt, response in zip(PROMPTS, RESPONSES):
        seq = RewardScorer(back, tok2).encode(prompt, response)
        with torch.no_grad():
            out = hf(input_ids=torch.tensor(seq.tokens[None], dtype=torch.long), output_hidden_states=True)
            per_token = hf.score(out.hidden_states[-1])[0, :, 0].numpy()  # [T]
        theirs.append(per_token[seq.loss_mask.astype(bool)].mean())
        theirs_last.append(float(out.logits[0, 0]))  # what transformers itself returns: the last token
    np.testing.assert_allclose(ours, theirs, atol=1e-4)
    assert np.abs(ours - np.array(theirs_last)).max() > 1e-2  # the two poolings do differ here


def test_a_last_export_records_last_and_a_bad_pool_is_an_input_error(rm, tmp_path):
    model, tok = rm
    last = build_reward_model(model.backbone)
    export = save_reward_model(last, tmp_path / "last", tokenizer=tok)
    config = json.loads((export / "config.json").read_text())
    assert config[POOL_KEY] == "last" and load_reward_model(export)[0].pool == "last"
    del config[POOL_KEY]  # a plain HF checkpoint: pools at the last token, as transformers does
    (export / "config.json").write_text(json.dumps(config))
    assert load_reward_model(export, with_tokenizer=False)[0].pool == "last"
    config[POOL_KEY] = "max"
    (export / "config.json").write_text(json.dumps(config))
    with pytest.raises(InvalidInput, match=f"config.json: {POOL_KEY}: 'max'"):
        load_reward_model(export)
