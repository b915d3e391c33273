"""Pooled probe features: the final layer's last token equals what ScoreModel's head reads, the
response mean and an intermediate layer equal a hand-written forward, length bucketing changes no
value, the cache returns what it stored without a forward, and the probe's head_features are the
head's input of any ScoreModel (pooled as it pools, LoRA adapters included)."""

import hashlib

import numpy as np
import pytest
from flax import nnx

from align.data.preference import encode_preferences
from align.data.formats import PreferenceExample
from align.hub import load
from align.data import preference_batch
from align.reward import build_reward_model, pair_pooled_hidden
from align.training.lora import LoRAConfig, add_lora
from reward_models.features import FeatureCache, pair_feature_sets, pool_index
from reward_models.probe import head_features


@pytest.fixture(scope="module")
def tiny():
    loaded = load("preset:tiny", seed=1)
    examples = [
        PreferenceExample(
            prompt=[{"role": "user", "content": "tell me about " + "cats " * k}],
            chosen=[{"role": "assistant", "content": "yes, happy to help " * (1 + k % 3)}],
            rejected=[{"role": "assistant", "content": "no"}],
            origin=f"row{k}",
        )
        for k in range(5)
    ]
    pairs, _ = encode_preferences(examples, loaded.tokenizer, max_length=64)
    return loaded, pairs


# jitted: one compile per row length; run op by op, every op compiles anew for each length
@nnx.jit
def _after_each_block(backbone, tokens, positions, segments):
    x, states = backbone.embedder.encode(tokens, backbone.dtype), []
    for block in backbone.layers:
        x, _ = block(x, positions, segments, None, None)
        states.append(x)
    states[-1] = backbone.final_norm(x)
    return states


def by_hand(backbone, pair, p, layer):
    """(last, response mean) of row p after block `layer`, one unpadded sequence through the blocks."""
    seq = pair.row(p)
    tokens = seq.tokens[None]
    positions, segments = np.arange(len(seq.tokens))[None], np.ones_like(tokens)
    x = _after_each_block(backbone, tokens, positions, segments)[layer - 1]
    x = np.asarray(x[0], np.float64)
    return x[-1], x[seq.loss_mask].mean(0)


def test_last_token_of_the_final_layer_is_the_reward_heads_input(tiny):
    loaded, pairs = tiny
    n_layers = len(loaded.model.layers)
    feats = pair_feature_sets(loaded.model, pairs, pools=("last", "mean"), layers=(1, n_layers), batch_size=2)
    assert feats.shape == (5, 2, 4, loaded.config.embed_dim)
    batch = preference_batch(pairs, 64)
    head_input = np.asarray(pair_pooled_hidden(build_reward_model(loaded.model), batch))  # [n, 2, D]
    last = pool_index(("last", "mean"), (1, n_layers), "last", n_layers)
    np.testing.assert_allclose(feats[:, :, last], head_input, atol=1e-5)


def test_mean_and_intermediate_layer_match_a_hand_written_forward(tiny):
    loaded, pairs = tiny
    n_layers = len(loaded.model.layers)
    layers, pools = (1, n_layers), ("last", "mean")
    feats = pair_feature_sets(loaded.model, pairs, pools=pools, layers=layers, batch_size=4, bucket=8)
    for i, pair in enumerate(pairs):
        for p in range(2):
            for layer in layers:
                last, mean = by_hand(loaded.model, pair, p, layer)
                np.testing.assert_allclose(
                    feats[i, p, pool_index(pools, layers, "last", layer)], last, atol=1e-4
                )
                np.testing.assert_allclose(
                    feats[i, p, pool_index(pools, layers, "mean", layer)], mean, atol=1e-4
                )
    # the first block's residual stream is not the final-normed one: the layers really differ
    assert not np.allclose(feats[:, :, 0], feats[:, :, 1], atol=1e-2)


def test_bucketing_and_batch_size_change_no_value(tiny):
    loaded, pairs = tiny
    a = pair_feature_sets(loaded.model, pairs, pools=("mean",), batch_size=1, bucket=1)
    b = pair_feature_sets(loaded.model, pairs, pools=("mean",), batch_size=3, bucket=64)
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_cache_returns_what_it_stored_without_a_forward(tiny, tmp_path):
    loaded, pairs = tiny
    cache = FeatureCache(tmp_path, key="tiny seed 1")
    first = pair_feature_sets(loaded.model, pairs, batch_size=2, cache=cache)
    assert len(list(tmp_path.glob("*.npy"))) == len(pairs)
    # overwrite one entry: a cached read must return the stored block, not recompute it
    cache.put(pairs[3], "('last',)(None,)", np.zeros(1))  # another pooling's name: not read below
    marked = np.full_like(first[2], 7.0)
    cache.put(pairs[2], f"{('last',)}{(len(loaded.model.layers),)}", marked)
    seen = []
    again = pair_feature_sets(loaded.model, pairs, batch_size=2, cache=cache, progress=seen.append)
    np.testing.assert_array_equal(again[2], marked)
    np.testing.assert_array_equal(np.delete(again, 2, 0), np.delete(first, 2, 0))
    assert seen == [len(pairs)]  # every pair came from the cache, reported at once
    # another model key shares no entry
    other = FeatureCache(tmp_path, key="tiny seed 2")
    assert other.path(pairs[0], "x") != cache.path(pairs[0], "x")
    # the layout of caches already on disk: <root>/sha1(key|pooling|prompt length|row tokens|...).npy
    pair = pairs[2]
    digest = hashlib.sha1(f"tiny seed 1|x|{pair.prompt_length}|".encode())
    for p in range(2):
        digest.update(np.asarray(pair.row(p).tokens, np.int32).tobytes() + b"|")
    assert cache.path(pair, "x") == tmp_path / f"{digest.hexdigest()}.npy"


@pytest.mark.parametrize("pool", ["last", "response_mean"])
def test_head_features_are_the_heads_input_pooled_as_the_model_pools(tiny, pool):
    loaded, pairs = tiny
    # trained-looking adapters (b = 0 at init would make them vanish): the features are the adapted
    # model's, read off its merged decoder
    model = build_reward_model(add_lora(loaded.model, LoRAConfig(rank=2)), pool=pool)
    for adapter in model.backbone.adapters:
        adapter.b[...] = 0.05 * np.ones(adapter.b[...].shape, np.float32)
    want = np.asarray(pair_pooled_hidden(model, preference_batch(pairs, 64)))  # [n, 2, D]
    plain = np.asarray(
        pair_pooled_hidden(build_reward_model(loaded.model, pool=pool), preference_batch(pairs, 64))
    )
    assert np.abs(want - plain).max() > 1e-3  # the adapters change the features
    got = head_features(model, pairs, batch_size=2, bucket=16)
    np.testing.assert_allclose(got, want, atol=1e-4)
    # other pools and layers computed besides (for a cache) leave the head's features as they are
    more = head_features(model, pairs, batch_size=2, bucket=16, pools=("last", "mean"), layers=(1,))
    np.testing.assert_array_equal(more, got)
