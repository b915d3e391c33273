"""Tiny random transformers models (built offline from a config) used as the parity reference."""

from __future__ import annotations

import torch
import transformers


def tiny_hf_model(family: str, tmp_path, vocab_size: int = 128):
    """A random HF causal LM of `family` saved to tmp_path; returns (torch model, directory)."""
    common = dict(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=256,
    )
    if family == "gemma3":
        cfg = transformers.Gemma3TextConfig(
            **common,
            sliding_window=4,
            query_pre_attn_scalar=24,
            layer_types=["sliding_attention", "full_attention", "sliding_attention"],
            rope_parameters={
                "full_attention": {"rope_type": "linear", "rope_theta": 1e6, "factor": 2.0},
                "sliding_attention": {"rope_type": "default", "rope_theta": 1e4},
            },
        )
        model = transformers.Gemma3ForCausalLM(cfg)
    elif family == "gemma2":
        cfg = transformers.Gemma2Config(
            **common,
            sliding_window=4,
            query_pre_attn_scalar=16,
            attn_logit_softcapping=5.0,
            final_logit_softcapping=3.0,
        )
        model = transformers.Gemma2ForCausalLM(cfg)
    elif family == "gemma":
        cfg = transformers.GemmaConfig(**common)
        model = transformers.GemmaForCausalLM(cfg)
    elif family == "llama":
        cfg = transformers.LlamaConfig(**common, tie_word_embeddings=False, rms_norm_eps=1e-5)
        model = transformers.LlamaForCausalLM(cfg)
    else:
        raise ValueError(family)
    torch.manual_seed(0)
    with torch.no_grad():  # random norm scales too, so the (1 + w) convention is really exercised
        for name, p in model.named_parameters():
            p.copy_(torch.randn_like(p) * (0.3 if "norm" in name else 0.1))
    model.eval()
    model.save_pretrained(tmp_path, safe_serialization=True)
    return model, tmp_path
