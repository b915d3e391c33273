"""ModelConfig <-> Hugging Face `config.json`, for the Gemma 1/2/3 and Llama families."""

from __future__ import annotations

from typing import Any

from align.errors import InvalidInput
from align.model.config import ModelConfig

# HF model_type -> our family name (the architecture we export back to).
FAMILIES = {
    "gemma": "gemma",
    "gemma2": "gemma2",
    "gemma3_text": "gemma3",
    "gemma3": "gemma3",
    "llama": "llama",
}
ARCHITECTURES = {
    "gemma": "GemmaForCausalLM",
    "gemma2": "Gemma2ForCausalLM",
    "gemma3": "Gemma3ForCausalLM",
    "llama": "LlamaForCausalLM",
}
HF_MODEL_TYPES = {"gemma": "gemma", "gemma2": "gemma2", "gemma3": "gemma3_text", "llama": "llama"}
# transformers' Gemma3TextConfig defaults (models/gemma3/configuration_gemma3.py). A multimodal gemma-3
# config.json lists only the text_config keys that differ from them (4B: sizes, sliding_window, rope_scaling).
GEMMA3_TEXT_DEFAULTS = {
    "vocab_size": 262_208,
    "hidden_size": 2304,
    "intermediate_size": 9216,
    "num_hidden_layers": 26,
    "num_attention_heads": 8,
    "num_key_value_heads": 4,
    "head_dim": 256,
    "hidden_activation": "gelu_pytorch_tanh",
    "max_position_embeddings": 131_072,
    "rms_norm_eps": 1e-6,
    "tie_word_embeddings": True,
    "query_pre_attn_scalar": 256,
    "sliding_window": 4096,
    "sliding_window_pattern": 6,
    "rope_theta": 1_000_000.0,
    "rope_local_base_freq": 10_000.0,
}
_REQUIRED = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size")


def _rope(hf: dict, layer_kind: str, default_base: float) -> tuple[float, float]:
    """(base, linear scale) for 'full_attention' or 'sliding_attention' layers, old or new HF layout."""
    params = hf.get("rope_parameters")
    if isinstance(params, dict) and layer_kind in params:
        params = params[layer_kind]
    if isinstance(params, dict) and "rope_theta" in params:
        base, scaling = params["rope_theta"], params
    else:
        base = hf.get(
            "rope_local_base_freq" if layer_kind == "sliding_attention" else "rope_theta", default_base
        )
        scaling = hf.get("rope_scaling") if layer_kind == "full_attention" else None
    rope_type = (scaling or {}).get("rope_type", (scaling or {}).get("type", "default"))
    if rope_type not in ("default", "linear"):
        raise ValueError(f"rope scaling type {rope_type!r} is not supported (only default and linear)")
    return float(base), float((scaling or {}).get("factor", 1.0)) if rope_type == "linear" else 1.0


def _text_config(hf: dict[str, Any], source: str) -> dict[str, Any]:
    """The text model's keys: a multimodal Gemma 3 config's text_config filled with transformers' defaults."""
    if hf.get("model_type") == "gemma3" and "text_config" in hf:
        hf = {**GEMMA3_TEXT_DEFAULTS, **hf["text_config"], "model_type": "gemma3_text"}
    if hf.get("model_type") not in FAMILIES:
        raise InvalidInput(
            f"{source}: model_type {hf.get('model_type')!r} is not supported; supported: {sorted(FAMILIES)}"
        )
    missing = [k for k in _REQUIRED if hf.get(k) is None]
    if missing:
        raise InvalidInput(f"{source}: {hf['model_type']} config lacks required key(s) {missing}")
    return hf


def from_hf(hf: dict[str, Any], source: str = "config.json") -> ModelConfig:
    """Build a ModelConfig from a parsed HF config.json; `source` names it in errors."""
    hf = _text_config(hf, source)
    family = FAMILIES[hf["model_type"]]
    n_layers = hf["num_hidden_layers"]
    head_dim = hf.get("head_dim") or hf["hidden_size"] // hf["num_attention_heads"]
    types = hf.get("layer_types")
    if types is None:
        if family == "gemma3":
            types = [
                "full_attention"
                if (i + 1) % hf.get("sliding_window_pattern", 6) == 0
                else "sliding_attention"
                for i in range(n_layers)
            ]
        elif family == "gemma2":
            types = ["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(n_layers)]
        else:
            types = ["full_attention"] * n_layers
    layer_types = tuple("local" if t == "sliding_attention" else "global" for t in types)
    gemma = family != "llama"
    # Defaults are transformers': Gemma 3 has its own local base; other families use one rope everywhere.
    base_g, scale_g = _rope(hf, "full_attention", 1e6 if family == "gemma3" else 10_000.0)
    if family == "gemma3":
        base_l, scale_l = _rope(hf, "sliding_attention", 10_000.0)
    else:
        base_l, scale_l = base_g, (scale_g if "local" in layer_types else 1.0)
    act = hf.get("hidden_activation") or hf.get("hidden_act") or ("gelu_pytorch_tanh" if gemma else "silu")
    return ModelConfig(
        vocab_size=hf["vocab_size"],
        embed_dim=hf["hidden_size"],
        num_layers=n_layers,
        num_heads=hf["num_attention_heads"],
        num_kv_heads=hf.get("num_key_value_heads", hf["num_attention_heads"]),
        head_dim=head_dim,
        hidden_dim=hf["intermediate_size"],
        layer_types=layer_types,
        sliding_window=hf.get("sliding_window") if "local" in layer_types else None,
        rope_base_global=base_g,
        rope_base_local=base_l,
        rope_scale_global=scale_g,
        rope_scale_local=scale_l,
        query_pre_attn_scalar=hf.get("query_pre_attn_scalar"),
        attn_logit_softcap=hf.get("attn_logit_softcapping"),
        final_logit_softcap=hf.get("final_logit_softcapping"),
        activation="gelu_tanh" if "gelu" in act else "silu",
        norm_eps=hf.get("rms_norm_eps", 1e-6),
        norm_offset=1.0 if gemma else 0.0,
        qk_norm=family == "gemma3",
        post_norms=family in ("gemma2", "gemma3"),
        scale_embeddings=gemma,
        tie_embeddings=hf.get("tie_word_embeddings", True),
        max_seq_len=hf.get("max_position_embeddings", 8192),
        family=family,
    )


def to_hf(c: ModelConfig, **special_tokens: int) -> dict[str, Any]:
    """A config.json dict that transformers loads into the same architecture."""
    rope_full = {
        "rope_type": "linear" if c.rope_scale_global != 1.0 else "default",
        "rope_theta": c.rope_base_global,
    }
    if c.rope_scale_global != 1.0:
        rope_full["factor"] = c.rope_scale_global
    hf: dict[str, Any] = {
        "architectures": [ARCHITECTURES[c.family]],
        "model_type": HF_MODEL_TYPES[c.family],
        "vocab_size": c.vocab_size,
        "hidden_size": c.embed_dim,
        "num_hidden_layers": c.num_layers,
        "num_attention_heads": c.num_heads,
        "num_key_value_heads": c.num_kv_heads,
        "head_dim": c.head_dim,
        "intermediate_size": c.hidden_dim,
        "rms_norm_eps": c.norm_eps,
        "max_position_embeddings": c.max_seq_len,
        "tie_word_embeddings": c.tie_embeddings,
        "rope_theta": c.rope_base_global,
        "torch_dtype": "float32",
        "layer_types": ["sliding_attention" if t == "local" else "full_attention" for t in c.layer_types],
        **special_tokens,
    }
    if c.family == "llama":
        hf.update(hidden_act="silu", attention_bias=False, mlp_bias=False, rope_parameters=rope_full)
        return hf
    hf.update(
        hidden_activation="gelu_pytorch_tanh",
        hidden_act="gelu_pytorch_tanh",
        query_pre_attn_scalar=c.query_pre_attn_scalar or c.head_dim,
        attention_bias=False,
        attn_logit_softcapping=c.attn_logit_softcap,
        final_logit_softcapping=c.final_logit_softcap,
        sliding_window=c.sliding_window,
    )
    if c.family == "gemma3":
        hf.update(
            rope_local_base_freq=c.rope_base_local,
            rope_parameters={
                "full_attention": rope_full,
                "sliding_attention": {"rope_type": "default", "rope_theta": c.rope_base_local},
            },
        )
    else:
        hf["rope_parameters"] = rope_full
    return hf
