"""GGUF import: parse with align.gguf_file, dequantize with the `gguf` package, rename to HF tensor
names, then reuse the HF table."""

from __future__ import annotations

import re

import numpy as np

from align.errors import InvalidInput
from align.model.config import ModelConfig
from align.gguf_file import GGUFFile, open_gguf
from align.model.hf_config import from_hf

# GGUF tensor name <-> HF tensor name, one table for import and export ({0} is the block index).
_L = "model.layers.{0}."
_COMMON_NAMES = [
    ("token_embd.weight", "model.embed_tokens.weight"),
    ("output_norm.weight", "model.norm.weight"),
    ("output.weight", "lm_head.weight"),
    ("blk.{0}.attn_q.weight", _L + "self_attn.q_proj.weight"),
    ("blk.{0}.attn_k.weight", _L + "self_attn.k_proj.weight"),
    ("blk.{0}.attn_v.weight", _L + "self_attn.v_proj.weight"),
    ("blk.{0}.attn_output.weight", _L + "self_attn.o_proj.weight"),
    ("blk.{0}.attn_q_norm.weight", _L + "self_attn.q_norm.weight"),
    ("blk.{0}.attn_k_norm.weight", _L + "self_attn.k_norm.weight"),
    ("blk.{0}.attn_norm.weight", _L + "input_layernorm.weight"),
    ("blk.{0}.ffn_gate.weight", _L + "mlp.gate_proj.weight"),
    ("blk.{0}.ffn_up.weight", _L + "mlp.up_proj.weight"),
    ("blk.{0}.ffn_down.weight", _L + "mlp.down_proj.weight"),
]
# The pre-MLP norm's HF name depends on the block layout (as in align.model.convert's two tables).
NAMES = {
    True: _COMMON_NAMES
    + [
        ("blk.{0}.post_attention_norm.weight", _L + "post_attention_layernorm.weight"),
        ("blk.{0}.ffn_norm.weight", _L + "pre_feedforward_layernorm.weight"),
        ("blk.{0}.post_ffw_norm.weight", _L + "post_feedforward_layernorm.weight"),
    ],
    False: _COMMON_NAMES + [("blk.{0}.ffn_norm.weight", _L + "post_attention_layernorm.weight")],
}


def _pattern(template: str) -> str:
    return re.escape(template).replace(r"\{0\}", r"(\d+)")


def rename(name: str, post_norms: bool, *, to_gguf: bool) -> str:
    """A tensor's GGUF name from its HF name (to_gguf) or the reverse; KeyError when it has none."""
    for gguf_name, hf_name in NAMES[post_norms]:
        source, target = (hf_name, gguf_name) if to_gguf else (gguf_name, hf_name)
        m = re.fullmatch(_pattern(source), name)
        if m:
            return target.format(*m.groups())
    raise KeyError(name)


_ARCH_MODEL_TYPE = {"gemma": "gemma", "gemma2": "gemma2", "gemma3": "gemma3_text", "llama": "llama"}
# GGUF stores no query scale. llama.cpp (src/llama-model.cpp, after gemma_pytorch's config.py) scales the
# 27B models' queries by (n_embd / n_head)**-0.5 and head_dim**-0.5 otherwise; it tells 27B by block count.
_27B_BLOCKS = {"gemma2": 46, "gemma3": 62}


def _rope_scaling(f) -> dict | None:
    """HF `rope_scaling` from llama.cpp's keys (gemma3 4B/12B/27B store linear 8.0). As in HF, gemma3 applies
    it to global layers only; llama.cpp likewise pins its sliding layers' scale to 1."""
    kind = f("rope.scaling.type", "linear")  # llama.cpp's default when only a factor is stored
    if kind not in ("none", "linear"):
        raise InvalidInput(f"GGUF rope.scaling.type {kind!r} is not supported (only none and linear)")
    factor = f("rope.scaling.factor", f("rope.scale_linear"))  # the second is llama.cpp's older key
    if kind == "none" or not factor or factor == 1.0:
        return None
    return {"rope_type": "linear", "factor": float(factor)}


def hf_config_from_gguf(gf: GGUFFile) -> dict:
    """The HF config.json that transformers would derive from this GGUF's metadata."""
    arch = gf.value("general.architecture")
    if arch not in _ARCH_MODEL_TYPE:
        raise ValueError(
            f"GGUF architecture {arch!r} is not supported; supported: {sorted(_ARCH_MODEL_TYPE)}"
        )
    f = lambda k, d=None: gf.value(f"{arch}.{k}", d)  # noqa: E731
    vocab = len(gf.value("tokenizer.ggml.tokens"))
    n_heads = f("attention.head_count")
    hf = {
        "model_type": _ARCH_MODEL_TYPE[arch],
        "vocab_size": vocab,
        "hidden_size": f("embedding_length"),
        "num_hidden_layers": f("block_count"),
        "num_attention_heads": n_heads,
        "num_key_value_heads": f("attention.head_count_kv", n_heads),
        "intermediate_size": f("feed_forward_length"),
        "head_dim": f("attention.key_length", f("embedding_length") // n_heads),
        "rms_norm_eps": f("attention.layer_norm_rms_epsilon", 1e-6),
        "max_position_embeddings": f("context_length"),
        "rope_theta": f("rope.freq_base", 10_000.0),
        "rope_scaling": _rope_scaling(f),
        "tie_word_embeddings": "output.weight" not in gf.tensors,
    }
    if arch.startswith("gemma"):
        hf["hidden_activation"] = "gelu_pytorch_tanh"
    if arch in ("gemma2", "gemma3"):
        is_27b = hf["num_hidden_layers"] == _27B_BLOCKS[arch]
        hf.update(
            sliding_window=f("attention.sliding_window"),
            query_pre_attn_scalar=hf["hidden_size"] // n_heads if is_27b else hf["head_dim"],
        )
    if arch == "gemma2":
        hf.update(
            attn_logit_softcapping=f("attn_logit_softcapping", 50.0),
            final_logit_softcapping=f("final_logit_softcapping", 30.0),
        )
    if arch == "gemma3":
        # llama.cpp hard-codes these for gemma3 and does not store them; these are HF's defaults too.
        hf.update(rope_local_base_freq=10_000.0, sliding_window_pattern=6)
    if arch == "llama":
        hf["hidden_act"] = "silu"
    return hf


def _unpermute_rope(w: np.ndarray, n_heads: int) -> np.ndarray:
    """llama.cpp interleaves q/k rows of Llama models for its rope kernel; undo it."""
    return w.reshape(n_heads, w.shape[0] // n_heads // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def read_gguf(path: str) -> tuple[ModelConfig, dict, dict[str, np.ndarray]]:
    """(config, hf config dict, float32 tensors under HF names) from a GGUF file."""
    from gguf.quants import dequantize

    gf = open_gguf(path)
    hf = hf_config_from_gguf(gf)
    config = from_hf(hf, source=path)
    gemma = hf["model_type"] != "llama"
    tensors = {}
    for t in gf.tensors.values():
        w = np.asarray(dequantize(t.data, t.type), np.float32)
        try:
            name = rename(t.name, config.post_norms, to_gguf=False)
        except KeyError:
            raise KeyError(f"{path}: GGUF tensor {t.name!r} has no mapping") from None
        if gemma and name.endswith("norm.weight"):
            w = w - 1.0  # llama.cpp stores Gemma's (1 + w) norm scale with the 1 folded in
        if not gemma and name.endswith(("q_proj.weight", "k_proj.weight")):
            heads = hf["num_attention_heads"] if "q_proj" in name else hf["num_key_value_heads"]
            w = _unpermute_rope(w, heads)
        tensors[name] = w
    return config, hf, tensors
