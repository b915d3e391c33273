"""The Gemma 2 presets have the official shapes: transformers reads the published config.json into the
same ModelConfig, and the abstract parameter count is the published one (nothing is allocated)."""

import math

import jax
import pytest
from flax import nnx

from align.model import Decoder, ModelConfig
from align.model.hf_config import from_hf

# The shape keys of google/gemma-2-{2b,9b,27b}'s config.json (the rest are transformers' defaults).
_COMMON = {
    "model_type": "gemma2",
    "vocab_size": 256000,
    "hidden_activation": "gelu_pytorch_tanh",
    "max_position_embeddings": 8192,
    "rms_norm_eps": 1e-6,
    "rope_theta": 10000.0,
    "sliding_window": 4096,
    "attn_logit_softcapping": 50.0,
    "final_logit_softcapping": 30.0,
}
_SHAPES = {  # D, L, N, K, H, F, query_pre_attn_scalar
    "gemma2_2b": (2304, 26, 8, 4, 256, 9216, 256),
    "gemma2_9b": (3584, 42, 16, 8, 256, 14336, 256),
    "gemma2_27b": (4608, 46, 32, 16, 128, 36864, 144),  # 144 = D / N, not H
}
# What transformers reports for the published checkpoints (model.num_parameters()).
_PUBLISHED = {"gemma2_2b": 2_614_341_888, "gemma2_9b": 9_241_705_984, "gemma2_27b": 27_227_128_320}


def _hf(name):
    D, L, N, K, H, F, q = _SHAPES[name]
    return {
        **_COMMON,
        "hidden_size": D,
        "num_hidden_layers": L,
        "num_attention_heads": N,
        "num_key_value_heads": K,
        "head_dim": H,
        "intermediate_size": F,
        "query_pre_attn_scalar": q,
    }


@pytest.mark.parametrize("name", sorted(_SHAPES))
def test_preset_is_what_transformers_reads_from_the_published_config(name):
    transformers = pytest.importorskip("transformers")
    hf = transformers.Gemma2Config(**_hf(name)).to_dict()
    assert from_hf(hf) == getattr(ModelConfig, name)()


@pytest.mark.parametrize("name", sorted(_SHAPES))
def test_abstract_parameter_count_is_the_published_one(name):
    config = getattr(ModelConfig, name)()
    abstract = nnx.eval_shape(lambda: Decoder(config, rngs=nnx.Rngs(0)))
    count = sum(math.prod(x.shape) for x in jax.tree.leaves(nnx.state(abstract, nnx.Param)))
    # By hand: tied [V, D] table + per layer q, k, v, o + gate, up, down + 4 norms; the final norm.
    D, L, N, K, H, F, _ = _SHAPES[name]
    assert count == 256000 * D + L * (D * H * (2 * N + 2 * K) + 3 * D * F + 4 * D) + D
    assert count == _PUBLISHED[name]
