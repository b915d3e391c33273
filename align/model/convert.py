"""Checkpoint conversion as declarative key tables: HF tensor name <-> decoder parameter path.

Each row: (HF name regex, our dotted path template, transform). A transform is a pair of functions
(hf -> ours, ours -> hf) given the ModelConfig, so the same table serves import and export.
"""

from __future__ import annotations

import re
from typing import Callable, Mapping

import numpy as np

from align.model.config import ModelConfig

Fn = Callable[[np.ndarray, ModelConfig], np.ndarray]

# --- transforms --------------------------------------------------------------------------------
IDENTITY: tuple[Fn, Fn] = (lambda w, c: w, lambda w, c: w)
TRANSPOSE: tuple[Fn, Fn] = (lambda w, c: w.T, lambda w, c: w.T)
# q_proj [N*H, D] <-> q [D, N, H]
Q_IN: tuple[Fn, Fn] = (
    lambda w, c: w.reshape(c.num_heads, c.head_dim, c.embed_dim).transpose(2, 0, 1),
    lambda w, c: w.transpose(1, 2, 0).reshape(c.num_heads * c.head_dim, c.embed_dim),
)
# k_proj / v_proj [K*H, D] <-> [D, K, H]
KV_IN: tuple[Fn, Fn] = (
    lambda w, c: w.reshape(c.num_kv_heads, c.head_dim, c.embed_dim).transpose(2, 0, 1),
    lambda w, c: w.transpose(1, 2, 0).reshape(c.num_kv_heads * c.head_dim, c.embed_dim),
)
# o_proj [D, N*H] <-> o [N, H, D]
O_OUT: tuple[Fn, Fn] = (
    lambda w, c: w.reshape(c.embed_dim, c.num_heads, c.head_dim).transpose(1, 2, 0),
    lambda w, c: w.transpose(2, 0, 1).reshape(c.embed_dim, c.num_heads * c.head_dim),
)

L = r"model\.layers\.(\d+)\."
_COMMON = [
    (r"model\.embed_tokens\.weight", "embedder.table", IDENTITY),
    (r"lm_head\.weight", "lm_head", TRANSPOSE),
    (r"model\.norm\.weight", "final_norm.scale", IDENTITY),
    (L + r"self_attn\.q_proj\.weight", "layers.{0}.attn.q", Q_IN),
    (L + r"self_attn\.k_proj\.weight", "layers.{0}.attn.k", KV_IN),
    (L + r"self_attn\.v_proj\.weight", "layers.{0}.attn.v", KV_IN),
    (L + r"self_attn\.o_proj\.weight", "layers.{0}.attn.o", O_OUT),
    (L + r"self_attn\.q_norm\.weight", "layers.{0}.attn.q_norm.scale", IDENTITY),
    (L + r"self_attn\.k_norm\.weight", "layers.{0}.attn.k_norm.scale", IDENTITY),
    (L + r"mlp\.gate_proj\.weight", "layers.{0}.mlp.gate", TRANSPOSE),
    (L + r"mlp\.up_proj\.weight", "layers.{0}.mlp.up", TRANSPOSE),
    (L + r"mlp\.down_proj\.weight", "layers.{0}.mlp.down", TRANSPOSE),
    (L + r"input_layernorm\.weight", "layers.{0}.pre_attn_norm.scale", IDENTITY),
]
# Gemma 2/3 have four norms per block; Gemma 1 and Llama call their pre-MLP norm "post_attention".
TABLE_POST_NORMS = _COMMON + [
    (L + r"post_attention_layernorm\.weight", "layers.{0}.post_attn_norm.scale", IDENTITY),
    (L + r"pre_feedforward_layernorm\.weight", "layers.{0}.pre_mlp_norm.scale", IDENTITY),
    (L + r"post_feedforward_layernorm\.weight", "layers.{0}.post_mlp_norm.scale", IDENTITY),
]
TABLE_PRE_NORMS = _COMMON + [
    (L + r"post_attention_layernorm\.weight", "layers.{0}.pre_mlp_norm.scale", IDENTITY),
]
# Multimodal Gemma 3 checkpoints nest the text model; these prefixes are dropped on import.
_PREFIXES = ("model.language_model.", "language_model.model.", "language_model.")
# Not part of the text decoder. The vision tower and projector sit at the top level in older transformers
# checkpoints and under "model." in newer ones.
_SKIP = re.compile(r"(^|\.)(vision_tower|multi_modal_projector)\.|rotary_emb")


def table_for(config: ModelConfig):
    return TABLE_POST_NORMS if config.post_norms else TABLE_PRE_NORMS


def _normalise_hf_name(name: str) -> str:
    for prefix in _PREFIXES:
        if name.startswith(prefix):
            rest = name[len(prefix) :]
            return rest if rest.startswith(("model.", "lm_head")) else "model." + rest
    return name


def hf_to_params(tensors: Mapping[str, np.ndarray], config: ModelConfig) -> dict[str, np.ndarray]:
    """HF tensors -> {dotted decoder path: array}. Unknown tensors are an error, not silently dropped."""
    out, table = {}, table_for(config)
    for raw_name, w in tensors.items():
        name = _normalise_hf_name(raw_name)
        if _SKIP.search(name):
            continue
        for pattern, target, (to_ours, _) in table:
            m = re.fullmatch(pattern, name)
            if m:
                if target == "lm_head" and config.tie_embeddings:
                    break  # tied: the embedding table is the unembedding
                out[target.format(*m.groups())] = to_ours(np.asarray(w), config)
                break
        else:
            raise KeyError(f"checkpoint tensor {raw_name!r} has no mapping for family {config.family!r}")
    return out


def params_to_hf(params: Mapping[str, np.ndarray], config: ModelConfig) -> dict[str, np.ndarray]:
    """{dotted decoder path: array} -> HF tensor names, the inverse of `hf_to_params`."""
    out = {}
    for path, w in params.items():
        for pattern, target, (_, to_hf) in table_for(config):
            regex = "^" + re.escape(target).replace(r"\{0\}", r"(\d+)") + "$"
            m = re.fullmatch(regex, path)
            if m:
                name = pattern.replace(r"(\d+)", m.group(1) if m.groups() else "").replace("\\.", ".")
                out[name] = np.ascontiguousarray(to_hf(np.asarray(w), config))
                break
        else:
            raise KeyError(f"parameter {path!r} has no HF name for family {config.family!r}")
    return out
