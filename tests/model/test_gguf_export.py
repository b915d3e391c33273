"""GGUF export on tiny models: names, types and metadata as llama.cpp writes them; logits read back
through our importer and transformers' GGUF loader within each quantization's stated tolerance."""

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

gguf = pytest.importorskip("gguf")

from align.errors import InvalidInput  # noqa: E402
from align.hub import load  # noqa: E402
from align.model import Decoder, ModelConfig  # noqa: E402
from align.model.gguf_export import config_differences, write_gguf  # noqa: E402
from align.model.params import flat_params, from_flat  # noqa: E402

T = 12


def _vocab(n):
    """Tokenizer metadata of n placeholder pieces (the tiny models' weights are what is under test)."""
    V = gguf.GGUFValueType
    return [
        ("tokenizer.ggml.model", "llama", V.STRING, None),
        ("tokenizer.ggml.tokens", [f"<t{i}>" for i in range(n)], V.ARRAY, V.STRING),
        ("tokenizer.ggml.scores", [0.0] * n, V.ARRAY, V.FLOAT32),
        ("tokenizer.ggml.token_type", [1] * n, V.ARRAY, V.INT32),
    ]


def _gemma3(head_dim=16, **changes):
    """ModelConfig.tiny with llama.cpp's 5 local : 1 global layers, random weights of realistic scale."""
    c = ModelConfig.tiny(vocab_size=256).replace(
        num_layers=6, layer_types=ModelConfig.gemma3_pattern(6), head_dim=head_dim
    )
    c = c.replace(query_pre_attn_scalar=head_dim, **changes)
    model = Decoder(c, rngs=nnx.Rngs(0))
    rng = np.random.default_rng(0)
    flat = {
        k: rng.normal(0, 0.3 if k.endswith("scale") else 0.05, v.shape).astype(np.float32)
        for k, v in flat_params(model).items()
    }
    return from_flat(c, flat)


def _logits(model, tokens):
    B = tokens.shape[0]
    positions = jnp.broadcast_to(jnp.arange(T), (B, T))
    return np.asarray(model(jnp.asarray(tokens), positions, jnp.ones((B, T), jnp.int32)).logits)


def _tokens(vocab):
    return np.random.default_rng(1).integers(0, vocab, (2, T)).astype(np.int32)


def _rounded(model, quant):
    """`model` with each weight rounded through the quantizer its GGUF tensor gets: what the file holds."""
    from align.model.convert import hf_to_params, params_to_hf
    from align.model.gguf_export import tensor_type
    from align.model.gguf_io import rename

    c = model.config
    hf = params_to_hf({k: np.asarray(v) for k, v in flat_params(model).items()}, c)
    for name, w in hf.items():
        qtype = tensor_type(rename(name, c.post_norms, to_gguf=True), w.shape, quant)
        hf[name] = gguf.quants.dequantize(gguf.quants.quantize(w, qtype), qtype)
    return from_flat(c, hf_to_params(hf, c))


@pytest.mark.parametrize("quant", ["f32", "f16", "q8_0", "q4_0"])
def test_round_trip_through_our_importer(tmp_path, quant):
    model = _gemma3()
    path = write_gguf(model, tmp_path / "m.gguf", quant=quant, tokenizer_fields=_vocab(256), name="tiny")
    back = load(str(path), with_tokenizer=False).model
    assert config_differences(back.config, model.config) == {}
    tokens = _tokens(256)
    # The file's only loss is the quantizer's rounding (norms stay f32, so their +1 offset is exact).
    np.testing.assert_allclose(_logits(back, tokens), _logits(_rounded(model, quant), tokens), atol=1e-5)


def test_quantization_error_grows_as_bits_shrink(tmp_path):
    # Max |logit error| over the float logits' std on this random 6-layer model (measured: f16 0.004,
    # q8_0 0.12, q4_0 1.5; a random network amplifies weight noise far more than a trained one: the
    # gemma3-270m figures are in benchmarks/RESULTS.md).
    model, tokens = _gemma3(), _tokens(256)
    want = _logits(model, tokens)
    errs = {}
    for quant, bound in [("f16", 0.01), ("q8_0", 0.25), ("q4_0", 3.0)]:
        path = write_gguf(
            model, tmp_path / f"{quant}.gguf", quant=quant, tokenizer_fields=_vocab(256), name="t"
        )
        errs[quant] = (
            np.abs(_logits(load(str(path), with_tokenizer=False).model, tokens) - want).max() / want.std()
        )
        assert errs[quant] < bound, (quant, errs[quant])
    assert 0 < errs["f16"] < errs["q8_0"] < errs["q4_0"]


def test_names_types_and_norm_offset_as_llama_cpp_writes_them(tmp_path):
    model = _gemma3()
    path = write_gguf(model, tmp_path / "m.gguf", quant="q4_0", tokenizer_fields=_vocab(256), name="tiny")
    reader = gguf.GGUFReader(str(path))
    types = {t.name: t.tensor_type.name for t in reader.tensors}
    block0 = {k[len("blk.0.") :]: v for k, v in types.items() if k.startswith("blk.0.")}
    norms = ["attn_norm", "attn_q_norm", "attn_k_norm", "post_attention_norm", "ffn_norm", "post_ffw_norm"]
    matrices = ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"]
    assert block0 == {f"{n}.weight": "F32" for n in norms} | {f"{n}.weight": "Q4_0" for n in matrices}
    # Tied: no output.weight; the embedding (the output matrix too) is kept at 8 bits.
    assert types["token_embd.weight"] == "Q8_0" and "output.weight" not in types
    assert len(types) == 6 * len(block0) + 2
    stored = next(t for t in reader.tensors if t.name == "blk.2.ffn_norm.weight")
    np.testing.assert_array_equal(stored.data, np.asarray(model.layers[2].pre_mlp_norm.scale[...]) + 1.0)
    field = lambda k: reader.fields[k].contents()  # noqa: E731
    assert field("general.architecture") == "gemma3" and field("general.file_type") == 2  # MOSTLY_Q4_0
    assert (field("gemma3.context_length"), field("gemma3.attention.sliding_window")) == (512, 4)
    assert (field("gemma3.attention.head_count"), field("gemma3.attention.head_count_kv")) == (4, 2)
    assert (field("gemma3.rope.freq_base"), field("gemma3.attention.key_length")) == (1e6, 16)


def test_transformers_gguf_loader_reads_the_export(tmp_path):
    torch = pytest.importorskip("torch")
    import transformers

    # transformers' loader assumes the query scale 256**-0.5 (llama.cpp: head_dim**-0.5): H = 256.
    model = _gemma3(head_dim=256)
    write_gguf(model, tmp_path / "m.gguf", quant="q8_0", tokenizer_fields=_vocab(256), name="tiny")
    ours = load(str(tmp_path / "m.gguf"), with_tokenizer=False).model
    ref = transformers.AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file="m.gguf", dtype=torch.float32)
    tokens = _tokens(256)
    with torch.no_grad():
        expected = ref.eval()(torch.tensor(tokens, dtype=torch.long)).logits.numpy()
    np.testing.assert_allclose(_logits(ours, tokens), expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("family", ["gemma", "gemma2"])
def test_older_gemma_families_round_trip(tmp_path, family):
    pytest.importorskip("torch")
    from align.model.hf_io import load_hf_dir
    from tests.model.hf_reference import tiny_hf_model

    _, src = tiny_hf_model(family, tmp_path / "src")
    model = load_hf_dir(src)
    path = write_gguf(model, tmp_path / "m.gguf", quant="f32", tokenizer_fields=_vocab(128), name="t")
    back = load(str(path), with_tokenizer=False).model
    assert config_differences(back.config, model.config) == {}
    tokens = _tokens(128)
    np.testing.assert_allclose(_logits(back, tokens), _logits(model, tokens), atol=1e-5)


def test_a_model_llama_cpp_would_rebuild_differently_is_refused(tmp_path):
    model = _gemma3()
    good = write_gguf(model, tmp_path / "m.gguf", quant="q8_0", tokenizer_fields=_vocab(256), name="t")
    before = good.read_bytes()
    two_layers = Decoder(ModelConfig.tiny(vocab_size=256), rngs=nnx.Rngs(0))  # local, global: not 5:1
    with pytest.raises(InvalidInput, match="layer_types"):
        write_gguf(two_layers, good, quant="q8_0", tokenizer_fields=_vocab(256), name="t")
    with pytest.raises(InvalidInput, match="vocab_size"):  # the tokenizer must cover the embedding
        write_gguf(model, good, quant="q8_0", tokenizer_fields=_vocab(200), name="t")
    assert good.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["m.gguf"]
