"""The probe's feature pass on a mesh: traced under it (the decoder's activation constraints in the
program, none without a mesh), equal to the one-device pass, and leaving the given model in place."""

import jax
import numpy as np
import pytest
from flax import nnx

from align.data import TokenizedPair
from align.model import Decoder, ModelConfig
from align.model.heads import ScoreModel
from align.model.sharding import MeshConfig, make_mesh, shard_rows, state_shardings
from reward_models import features
from reward_models.features import pair_feature_sets
from reward_models.probe import head_features

MESHES = pytest.mark.parametrize("data,fsdp", [(2, 2), (1, 4)], ids=["data2xfsdp2", "fsdp4"])


def _pairs(n=6, T=10, V=64):
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        lengths = np.array([T - i % 3, T - 1 - i % 2], np.int32)
        tokens = rng.integers(3, V, (2, T)).astype(np.int32)
        tokens[1, :4] = tokens[0, :4]  # a shared 4-token prompt
        tokens[np.arange(T)[None, :] >= lengths[:, None]] = 0
        mask = (np.arange(T)[None, :] >= 4) & (np.arange(T)[None, :] < lengths[:, None])
        out.append(TokenizedPair(tokens, mask, lengths, 4))
    return out


def _score_model(pool="last"):
    return ScoreModel(Decoder(ModelConfig.tiny(vocab_size=64), rngs=nnx.Rngs(0)), rngs=nnx.Rngs(1), pool=pool)


def _mesh(data, fsdp):
    return make_mesh(MeshConfig(data=data, fsdp=fsdp), jax.devices()[:4])


@MESHES
@pytest.mark.parametrize("pool", ["last", "response_mean"])
def test_head_features_on_a_mesh_equal_one_device(data, fsdp, pool):
    model = _score_model(pool)
    pairs = _pairs()
    want = head_features(model, pairs, batch_size=4, bucket=4)  # 6 pairs: a full batch, then 2 + filler
    got = head_features(model, pairs, batch_size=4, bucket=4, mesh=_mesh(data, fsdp))
    assert got.shape == (6, 2, 64)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)  # measured: 1.6e-6 of |h| <= 2.8
    assert len(model.backbone.layers[0].attn.q[...].sharding.device_set) == 1  # the caller's copy stays put


@MESHES
def test_pooled_features_on_a_mesh_equal_one_device(data, fsdp):
    model = Decoder(ModelConfig.tiny(vocab_size=64), rngs=nnx.Rngs(0))
    pairs = _pairs()
    kwargs = dict(pools=("last", "mean"), layers=(1, 2), batch_size=4, bucket=4)
    want = pair_feature_sets(model, pairs, **kwargs)
    got = pair_feature_sets(model, pairs, **kwargs, mesh=_mesh(data, fsdp))
    assert got.shape == (6, 2, 4, 64)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)  # measured: 1.6e-6 of |h| <= 5.4
    assert len(model.layers[0].attn.q[...].sharding.device_set) == 1


def _lowered(make_fn, model, rows, mesh):
    """StableHLO text of make_fn(graphdef, mesh) on the model's weights and `rows`, placed on `mesh`."""
    graphdef, state = nnx.split(model)
    if mesh is not None:
        state, rows = jax.device_put(state, state_shardings(state, mesh)), shard_rows(rows, mesh)
    return make_fn(graphdef, mesh).lower(state, *rows).as_text()


def test_the_feature_pass_traces_the_decoders_constraints_on_the_mesh_only():
    mesh = _mesh(2, 2)
    model = _score_model()
    rows = features._rows(_pairs(4), 4, 12, 0)
    rows = tuple(rows[k] for k in features.ROWS)
    pooled = lambda graphdef, mesh: features._pooled_fn(graphdef, ("last", "mean"), (1, 2), mesh)  # noqa: E731
    text = _lowered(pooled, model.backbone, rows, mesh)
    # layer_states: after the embedder and each block up to the deepest one asked for (2 of 2)
    assert text.count("sdy.sharding_constraint") == 3 and '[{"data", "fsdp"}, {}, {}]' in text
    assert "sharding_constraint" not in _lowered(pooled, model.backbone, rows, None)
