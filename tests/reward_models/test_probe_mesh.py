"""The probe's feature pass on a (data=2, fsdp=2) mesh equals the one-device pass, and leaves the
model it was given where it was."""

import jax
import numpy as np
from flax import nnx

from align.data import TokenizedPair
from align.model import Decoder, ModelConfig
from align.model.heads import ScoreModel
from align.model.sharding import MeshConfig, make_mesh
from reward_models.features import pair_feature_sets
from reward_models.probe import pair_features


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


def test_probe_features_on_a_mesh_equal_one_device():
    model = ScoreModel(Decoder(ModelConfig.tiny(vocab_size=64), rngs=nnx.Rngs(0)), rngs=nnx.Rngs(1))
    pairs = _pairs()
    want = pair_features(model, pairs, batch_size=4, length=12)  # 6 pairs: a full batch, then 2 + filler
    mesh = make_mesh(MeshConfig(data=2, fsdp=2), jax.devices()[:4])
    got = pair_features(model, pairs, batch_size=4, length=12, mesh=mesh)
    assert got.shape == (6, 2, 64)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)  # measured: 1.8e-6 of |h| <= 2.8
    assert len(model.backbone.layers[0].attn.q[...].sharding.device_set) == 1  # the caller's copy stays put


def test_pooled_features_on_a_mesh_equal_one_device():
    model = Decoder(ModelConfig.tiny(vocab_size=64), rngs=nnx.Rngs(0))
    pairs = _pairs()
    want = pair_feature_sets(model, pairs, pools=("last", "mean"), layers=(1, 2), batch_size=4, bucket=4)
    mesh = make_mesh(MeshConfig(data=2, fsdp=2), jax.devices()[:4])
    got = pair_feature_sets(
        model, pairs, pools=("last", "mean"), layers=(1, 2), batch_size=4, bucket=4, mesh=mesh
    )
    assert got.shape == (6, 2, 4, 64)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert len(model.layers[0].attn.q[...].sharding.device_set) == 1
