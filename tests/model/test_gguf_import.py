"""GGUF import on a tiny file written here: same tensors and logits as transformers' own GGUF loader."""

import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
gguf = pytest.importorskip("gguf")

from align.hub import load  # noqa: E402

# HF name -> GGUF name, the inverse of llama.cpp's gemma3 conversion (norms are stored as 1 + w).
_TO_GGUF = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "self_attn.q_norm.weight": "attn_q_norm.weight",
    "self_attn.k_norm.weight": "attn_k_norm.weight",
    "input_layernorm.weight": "attn_norm.weight",
    "post_attention_layernorm.weight": "post_attention_norm.weight",
    "pre_feedforward_layernorm.weight": "ffn_norm.weight",
    "post_feedforward_layernorm.weight": "post_ffw_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}


def _write_tiny_gemma3_gguf(hf_model, path, rope_scale=None):
    cfg = hf_model.config
    w = gguf.GGUFWriter(str(path), "gemma3")
    if rope_scale is not None:  # as llama.cpp's convert_hf_to_gguf writes it for gemma-3 4B/12B/27B
        w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(rope_scale)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_key_length(cfg.head_dim)
    w.add_value_length(cfg.head_dim)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_rope_freq_base(1e6)
    w.add_sliding_window(cfg.sliding_window)
    w.add_tokenizer_model("llama")
    w.add_token_list([f"<t{i}>" for i in range(cfg.vocab_size)])
    w.add_token_scores([0.0] * cfg.vocab_size)
    w.add_token_types([1] * cfg.vocab_size)
    for name, p in hf_model.state_dict().items():
        if name == "lm_head.weight":
            continue
        arr = p.numpy().astype(np.float32)
        if name.endswith("norm.weight"):
            arr = arr + 1.0
        if name.startswith("model.layers."):
            i, rest = name[len("model.layers.") :].split(".", 1)
            gname = f"blk.{i}.{_TO_GGUF[rest]}"
        else:
            gname = _TO_GGUF[name]
        w.add_tensor(gname, arr)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def test_gguf_import_matches_transformers_gguf_loader(tmp_path):
    import transformers

    # What transformers' GGUF loader reads back: it ignores gemma3 rope scaling (llama.cpp stores it, for
    # global layers only) and the layer pattern (llama.cpp hard-codes 5 local : 1 global), so use local
    # layers only; below 27B llama.cpp scales queries by head_dim**-0.5 and the loader assumes 256: H = 256.
    cfg = transformers.Gemma3TextConfig(
        vocab_size=128,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=256,
        max_position_embeddings=256,
        sliding_window=4,
        query_pre_attn_scalar=256,
        layer_types=["sliding_attention"] * 3,
        rope_parameters={
            "full_attention": {"rope_type": "default", "rope_theta": 1e6},
            "sliding_attention": {"rope_type": "default", "rope_theta": 1e4},
        },
    )
    hf_model = transformers.Gemma3ForCausalLM(cfg).eval()
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in hf_model.named_parameters():
            p.copy_(torch.randn_like(p) * (0.3 if "norm" in name else 0.1))
    gguf_path = tmp_path / "tiny.gguf"
    _write_tiny_gemma3_gguf(hf_model, gguf_path)

    ours = load(str(gguf_path), with_tokenizer=False).model
    assert ours.config.activation == "gelu_tanh" and ours.config.layer_types == ("local", "local", "local")
    ref = transformers.AutoModelForCausalLM.from_pretrained(
        tmp_path, gguf_file="tiny.gguf", dtype=torch.float32
    )
    tokens = np.random.default_rng(0).integers(0, cfg.vocab_size, (2, 9)).astype(np.int32)
    with torch.no_grad():
        expected = ref.eval()(torch.tensor(tokens, dtype=torch.long)).logits.numpy()
        original = hf_model(torch.tensor(tokens, dtype=torch.long)).logits.numpy()
    got = ours(
        jnp.asarray(tokens), jnp.broadcast_to(jnp.arange(9), (2, 9)), jnp.ones((2, 9), jnp.int32)
    ).logits
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(got, original, atol=1e-4, rtol=1e-4)


def _random_gemma3(**overrides):
    import transformers

    cfg = transformers.Gemma3TextConfig(
        **{
            "vocab_size": 128,
            "hidden_size": 64,
            "intermediate_size": 96,
            "num_hidden_layers": 6,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 16,
            "query_pre_attn_scalar": 16,
            "max_position_embeddings": 256,
            "sliding_window": 4,
            **overrides,
        }
    )
    hf_model = transformers.Gemma3ForCausalLM(cfg).eval()
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in hf_model.named_parameters():
            p.copy_(torch.randn_like(p) * (0.3 if "norm" in name else 0.1))
    return hf_model


def test_gguf_rope_scaling_applies_to_global_layers_only(tmp_path):
    # gemma-3-4b's rope: linear 8.0 on the global layers. Six layers give llama.cpp's 5 local : 1 global.
    hf_model = _random_gemma3(
        rope_parameters={
            "full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1e6},
            "sliding_attention": {"rope_type": "default", "rope_theta": 1e4},
        }
    )
    _write_tiny_gemma3_gguf(hf_model, tmp_path / "scaled.gguf", rope_scale=8.0)

    ours = load(str(tmp_path / "scaled.gguf"), with_tokenizer=False).model
    c = ours.config
    assert (c.rope_scale_global, c.rope_scale_local) == (8.0, 1.0)
    assert (c.rope_base_global, c.rope_base_local) == (1e6, 1e4)
    assert c.layer_types == ("local",) * 5 + ("global",)
    tokens = np.random.default_rng(0).integers(0, 128, (2, 9)).astype(np.int32)
    with torch.no_grad():
        expected = hf_model(torch.tensor(tokens, dtype=torch.long)).logits.numpy()
    positions = jnp.broadcast_to(jnp.arange(9), (2, 9))
    got = ours(jnp.asarray(tokens), positions, jnp.ones((2, 9), jnp.int32)).logits
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-4)


def _metadata_only_config(path, arch, blocks, **extra):
    from align.gguf_file import open_gguf
    from align.model.gguf_io import hf_config_from_gguf

    w = gguf.GGUFWriter(str(path), arch)
    w.add_embedding_length(64)  # 4 heads of 32: n_embd / n_head == head_dim unless key_length says otherwise
    w.add_block_count(blocks)
    w.add_feed_forward_length(96)
    w.add_head_count(4)
    w.add_head_count_kv(2)
    w.add_key_length(24)
    w.add_context_length(256)
    w.add_sliding_window(4)
    w.add_token_list(["<a>", "<b>"])
    for key, value in extra.items():
        getattr(w, f"add_{key}")(value)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return hf_config_from_gguf(open_gguf(path))


@pytest.mark.parametrize(
    "arch,blocks,scalar", [("gemma2", 46, 16), ("gemma2", 42, 24), ("gemma3", 62, 16), ("gemma3", 34, 24)]
)
def test_gguf_query_scale_follows_llama_cpp(tmp_path, arch, blocks, scalar):
    # llama.cpp: 27B (gemma2: 46 blocks, gemma3: 62) scales queries by (n_embd / n_head)**-0.5 = 64 / 4,
    # every other size by head_dim**-0.5 = 24**-0.5.
    assert _metadata_only_config(tmp_path / "m.gguf", arch, blocks)["query_pre_attn_scalar"] == scalar


def test_gguf_rope_scaling_keys(tmp_path):
    hf = _metadata_only_config(tmp_path / "a.gguf", "gemma3", 34, rope_scaling_factor=8.0)
    assert hf["rope_scaling"] == {"rope_type": "linear", "factor": 8.0}  # type absent: llama.cpp's "linear"
    hf = _metadata_only_config(
        tmp_path / "b.gguf",
        "gemma3",
        34,
        rope_scaling_type=gguf.RopeScalingType.NONE,
        rope_scaling_factor=8.0,
    )
    assert hf["rope_scaling"] is None
    with pytest.raises(ValueError, match="yarn"):
        _metadata_only_config(
            tmp_path / "c.gguf",
            "gemma3",
            34,
            rope_scaling_type=gguf.RopeScalingType.YARN,
            rope_scaling_factor=4.0,
        )
