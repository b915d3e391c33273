"""hf_to_params on multimodal Gemma 3 key layouts: the text decoder is kept, vision weights are dropped."""

import numpy as np
import pytest

from align.model.config import ModelConfig
from align.model.convert import hf_to_params, params_to_hf

_CONFIG = ModelConfig.tiny()


def _text_tensors(config):
    params = {
        "embedder.table": np.zeros((config.vocab_size, config.embed_dim), np.float32),
        "final_norm.scale": np.zeros((config.embed_dim,), np.float32),
        "layers.0.attn.q": np.zeros((config.embed_dim, config.num_heads, config.head_dim), np.float32),
    }
    return params_to_hf(params, config)


# (text prefix, vision keys) as older (4.5x) and newer transformers save Gemma3ForConditionalGeneration.
@pytest.mark.parametrize(
    "prefix,vision",
    [
        (
            "language_model.model.",
            [
                "vision_tower.vision_model.embeddings.patch_embedding.weight",
                "multi_modal_projector.mm_input_projection_weight",
            ],
        ),
        (
            "model.language_model.",
            [
                "model.vision_tower.vision_model.encoder.layers.0.mlp.fc1.weight",
                "model.multi_modal_projector.mm_soft_emb_norm.weight",
            ],
        ),
    ],
    ids=["old", "new"],
)
def test_multimodal_keys(prefix, vision):
    text = _text_tensors(_CONFIG)
    tensors = {prefix + k.removeprefix("model."): v for k, v in text.items()}
    tensors.update({k: np.zeros((2, 2), np.float32) for k in vision})
    assert sorted(hf_to_params(tensors, _CONFIG)) == ["embedder.table", "final_norm.scale", "layers.0.attn.q"]


def test_unknown_key_still_raises():
    with pytest.raises(KeyError, match="no mapping"):
        hf_to_params({"model.vision_head.weight": np.zeros((2, 2), np.float32)}, _CONFIG)
