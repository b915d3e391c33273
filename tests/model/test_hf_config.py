"""from_hf on config.json shapes that lean on transformers' defaults: it must read what transformers reads."""

import pytest

from align.errors import InvalidInput
from align.model.hf_config import from_hf

transformers = pytest.importorskip("transformers")

# Shaped like google/gemma-3-4b-it's and gemma-3-27b-it's config.json: text_config lists only the keys
# that differ from Gemma3TextConfig's defaults.
_VISION = {
    "hidden_size": 1152,
    "image_size": 896,
    "intermediate_size": 4304,
    "model_type": "siglip_vision_model",
    "num_attention_heads": 16,
    "num_hidden_layers": 27,
    "patch_size": 14,
    "vision_use_head": False,
}
_TEXT_4B = {
    "hidden_size": 2560,
    "intermediate_size": 10240,
    "model_type": "gemma3_text",
    "num_hidden_layers": 34,
    "rope_scaling": {"factor": 8.0, "rope_type": "linear"},
    "sliding_window": 1024,
}
_TEXT_27B = {
    "head_dim": 128,
    "hidden_size": 5376,
    "intermediate_size": 21504,
    "model_type": "gemma3_text",
    "num_attention_heads": 32,
    "num_hidden_layers": 62,
    "num_key_value_heads": 16,
    "query_pre_attn_scalar": 168,
    "rope_scaling": {"factor": 8.0, "rope_type": "linear"},
    "sliding_window": 1024,
}


@pytest.mark.parametrize("text_config", [_TEXT_4B, _TEXT_27B], ids=["4b", "27b"])
def test_multimodal_gemma3_config_matches_transformers(text_config):
    hf = {
        "architectures": ["Gemma3ForConditionalGeneration"],
        "boi_token_index": 255999,
        "eoi_token_index": 256000,
        "eos_token_id": [1, 106],
        "image_token_index": 262144,
        "mm_tokens_per_image": 256,
        "model_type": "gemma3",
        "text_config": text_config,
        "vision_config": _VISION,
    }
    ref = transformers.Gemma3Config(**hf).text_config
    c = from_hf(hf)
    rope = ref.rope_parameters
    assert (c.vocab_size, c.embed_dim, c.hidden_dim, c.num_layers) == (
        ref.vocab_size,
        ref.hidden_size,
        ref.intermediate_size,
        ref.num_hidden_layers,
    )
    assert (c.num_heads, c.num_kv_heads, c.head_dim, c.query_pre_attn_scalar) == (
        ref.num_attention_heads,
        ref.num_key_value_heads,
        ref.head_dim,
        ref.query_pre_attn_scalar,
    )
    assert c.layer_types == tuple("local" if t == "sliding_attention" else "global" for t in ref.layer_types)
    assert (c.sliding_window, c.norm_eps, c.max_seq_len, c.tie_embeddings) == (
        ref.sliding_window,
        ref.rms_norm_eps,
        ref.max_position_embeddings,
        ref.tie_word_embeddings,
    )
    assert (c.rope_base_global, c.rope_scale_global) == (rope["full_attention"]["rope_theta"], 8.0)
    assert (c.rope_base_local, c.rope_scale_local) == (rope["sliding_attention"]["rope_theta"], 1.0)
    assert c.rope_base_global == 1e6 and c.rope_base_local == 1e4


def test_local_rope_base_defaults():
    # Gemma 2 has one rotary embedding: its sliding layers use rope_theta too.
    gemma2 = {
        "model_type": "gemma2",
        "vocab_size": 32,
        "hidden_size": 16,
        "intermediate_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "head_dim": 8,
        "sliding_window": 4,
        "rope_theta": 20_000.0,
    }
    c = from_hf(gemma2)
    assert c.layer_types == ("local", "global") and c.rope_base_local == c.rope_base_global == 20_000.0
    # Gemma 3 has a separate local base, 1e4 by default, and a global one of 1e6, as in transformers.
    gemma3 = {**gemma2, "model_type": "gemma3_text", "num_hidden_layers": 6}
    kwargs = {k: v for k, v in gemma3.items() if k != "model_type"}
    ref = transformers.Gemma3TextConfig(**kwargs).rope_parameters
    c = from_hf(gemma3)
    assert c.rope_base_local == ref["sliding_attention"]["rope_theta"] == 10_000.0
    del gemma3["rope_theta"]
    assert (
        from_hf(gemma3).rope_base_global
        == transformers.Gemma3TextConfig().rope_parameters["full_attention"]["rope_theta"]
        == 1e6
    )


def test_missing_required_key_names_file_and_key():
    hf = {
        "model_type": "llama",
        "vocab_size": 32,
        "hidden_size": 16,
        "intermediate_size": 32,
        "num_hidden_layers": 2,
    }
    with pytest.raises(InvalidInput, match=r"ckpt/config\.json.*num_attention_heads"):
        from_hf(hf, source="ckpt/config.json")
