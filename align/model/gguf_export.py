"""GGUF export: a decoder as a llama.cpp-loadable GGUF file with float, 8-bit or 4-bit weights.

The inverse of align.model.gguf_io: HF tensor names come from align.model.convert's table, GGUF names
from gguf_io's (one table each, both directions), and the metadata is read back through gguf_io's
`hf_config_from_gguf` before the file is kept, so a model that llama.cpp or our importer would rebuild
differently (it hard-codes Gemma 3's 5 local : 1 global layers, say) is refused rather than written.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path

import numpy as np

from align.errors import InvalidInput
from align.model.config import ModelConfig
from align.model.convert import params_to_hf
from align.gguf_file import open_gguf
from align.model.gguf_io import hf_config_from_gguf, rename
from align.model.hf_config import from_hf
from align.model.params import flat_params

# --quant name -> (GGML type of the 2-D weights, general.file_type as llama.cpp's LlamaFileType names it).
QUANTS = {"f32": ("F32", "ALL_F32"), "f16": ("F16", "MOSTLY_F16"), "q8_0": ("Q8_0", "MOSTLY_Q8_0")}
QUANTS["q4_0"] = ("Q4_0", "MOSTLY_Q4_0")
_ARCHS = ("gemma", "gemma2", "gemma3")  # llama.cpp permutes Llama's q/k rows; export does not (yet)


def tensor_type(name: str, shape: tuple[int, ...], quant: str):
    """The GGML type one tensor is stored in under `quant`, following llama.cpp's choices."""
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType as Q

    if len(shape) == 1:
        return Q.F32  # norms: tiny, and llama.cpp keeps every 1-D tensor in F32
    qtype = Q[QUANTS[quant][0]]
    if qtype == Q.Q4_0 and name in ("token_embd.weight", "output.weight"):
        # llama.cpp's 4-bit mixes keep the output matrix (the tied embedding here) at 6 bits (Q6_K); the
        # gguf package cannot write K-quants, so 8: with 4-bit logits of a 262K vocabulary the top token
        # changes on most positions (benchmarks/RESULTS.md, "GGUF export").
        return Q.Q8_0
    if shape[-1] % GGML_QUANT_SIZES[qtype][0]:
        return Q.F16  # rows not a whole number of blocks: llama.cpp's convert falls back to F16 too
    return qtype


def _metadata(writer, c: ModelConfig, name: str, quant: str) -> None:
    from gguf import GGML_QUANT_VERSION, LlamaFileType, RopeScalingType

    writer.add_name(name)
    writer.add_file_type(LlamaFileType[QUANTS[quant][1]])
    writer.add_quantization_version(GGML_QUANT_VERSION)
    writer.add_context_length(c.max_seq_len)
    writer.add_embedding_length(c.embed_dim)
    writer.add_block_count(c.num_layers)
    writer.add_feed_forward_length(c.hidden_dim)
    writer.add_head_count(c.num_heads)
    writer.add_head_count_kv(c.num_kv_heads)
    writer.add_key_length(c.head_dim)
    writer.add_value_length(c.head_dim)
    writer.add_layer_norm_rms_eps(c.norm_eps)
    writer.add_rope_freq_base(c.rope_base_global)
    if c.rope_scale_global != 1.0:  # as llama.cpp's convert_hf_to_gguf writes gemma-3 4B's linear 8.0
        writer.add_rope_scaling_type(RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(c.rope_scale_global)
    if c.sliding_window is not None:
        writer.add_sliding_window(c.sliding_window)
    if c.family == "gemma2":
        writer.add_attn_logit_softcapping(c.attn_logit_softcap)
        writer.add_final_logit_softcapping(c.final_logit_softcap)


def gguf_tokenizer_fields(path: str) -> list[tuple]:
    """The `tokenizer.*` key-values of a GGUF file, verbatim: (key, value, type, array element type)."""
    fields = []
    for key, f in open_gguf(path).fields.items():
        if key.startswith("tokenizer."):
            # GGUFWriter takes arrays as sequences only; tolist() keeps each element's exact value.
            value = f.value.tolist() if isinstance(f.value, np.ndarray) else f.value
            fields.append((key, value, f.type, f.element_type))
    return fields


def hf_tokenizer_fields(tokenizer) -> list[tuple]:
    """llama.cpp's SentencePiece ("llama") vocabulary from an align Tokenizer of a Gemma model.

    Scores only order the merges, so -rank among the normal pieces merges as SentencePiece's own scores
    do (they decrease with the id too); specials are CONTROL and other added tokens USER_DEFINED, as
    llama.cpp's convert writes them. On gemma3-270m this gives the embedded GGUF's tokens and types
    exactly (tests/model/test_gguf_export_270m.py).
    """
    from gguf import GGUFValueType as V, TokenType

    hf = tokenizer.hf
    added = {i: t.special for i, t in hf.added_tokens_decoder.items()}
    tokens = hf.convert_ids_to_tokens(list(range(len(hf))))
    types, scores, rank = [], [], 0
    for i, tok in enumerate(tokens):
        if i in added:
            kind, score = (TokenType.CONTROL if added[i] else TokenType.USER_DEFINED), -1000.0
        elif len(tok) > 1 and tok == "\u2581" * len(tok):
            # Gemma's SentencePiece model has runs of spaces as user-defined pieces; HF's converter
            # turns them into runs of "\u2581" in the plain vocabulary, llama.cpp keeps them literal.
            tok, kind, score = " " * len(tok), TokenType.USER_DEFINED, -1000.0
        elif len(tok) == 6 and tok.startswith("<0x") and tok.endswith(">"):
            kind, score = TokenType.BYTE, 0.0
        else:
            kind, score, rank = TokenType.NORMAL, float(-rank), rank + 1
        tokens[i] = tok
        types.append(int(kind))
        scores.append(score)
    ids = {"bos": tokenizer.bos_id, "eos": tokenizer.eos_id, "padding": tokenizer.pad_id}
    if hf.unk_token_id is not None:
        ids["unknown"] = hf.unk_token_id
    return [
        ("tokenizer.ggml.model", "llama", V.STRING, None),
        ("tokenizer.ggml.pre", "default", V.STRING, None),
        ("tokenizer.ggml.tokens", tokens, V.ARRAY, V.STRING),
        ("tokenizer.ggml.scores", scores, V.ARRAY, V.FLOAT32),
        ("tokenizer.ggml.token_type", types, V.ARRAY, V.INT32),
        *((f"tokenizer.ggml.{k}_token_id", int(v), V.UINT32, None) for k, v in ids.items()),
        ("tokenizer.ggml.add_bos_token", True, V.BOOL, None),  # Gemma is trained with <bos> first
        ("tokenizer.ggml.add_eos_token", False, V.BOOL, None),
        ("tokenizer.ggml.add_space_prefix", False, V.BOOL, None),  # Gemma 3's normalizer adds none
    ]


def _gguf_tensors(model, quant: str):
    """(GGUF name, array, GGML type) per tensor, converted one at a time so only one float copy lives."""
    from gguf import GGMLQuantizationType as Q, quants

    c: ModelConfig = model.config
    for path, w in flat_params(model).items():
        ((hf_name, arr),) = params_to_hf({path: np.asarray(w, np.float32)}, c).items()
        name = rename(hf_name, c.post_norms, to_gguf=True)
        if hf_name.endswith("norm.weight"):
            arr = arr + 1.0  # llama.cpp folds Gemma's (1 + w) norm offset into the stored weight
        qtype = tensor_type(name, arr.shape, quant)
        if qtype == Q.F32:
            yield name, arr, qtype
        elif qtype == Q.F16:
            yield name, arr.astype(np.float16), qtype
        else:
            yield name, quants.quantize(arr, qtype), qtype


def write_gguf(model, path: str | os.PathLike, *, quant: str, tokenizer_fields: list, name: str) -> Path:
    """Write `model` to `path` as GGUF; `tokenizer_fields` from gguf_tokenizer_fields/hf_tokenizer_fields.

    Written to a temporary sibling, checked by reading its metadata back, then renamed over `path`: a
    crash or a refused model leaves the previous file as it was.
    """
    import gguf

    c: ModelConfig = model.config
    if c.family not in _ARCHS:
        raise InvalidInput(f"GGUF export supports the {', '.join(_ARCHS)} families, not {c.family!r}")
    if quant not in QUANTS:
        raise InvalidInput(f"GGUF quantization {quant!r}: choose one of {sorted(QUANTS)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    os.close(fd)
    try:
        writer = gguf.GGUFWriter(tmp, c.family)
        _metadata(writer, c, name, quant)
        for key, value, vtype, sub in tokenizer_fields:
            writer.add_key_value(key, value, vtype, sub)
        for tname, arr, qtype in _gguf_tensors(model, quant):
            writer.add_tensor(tname, arr, raw_dtype=qtype)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        _check_readback(tmp, c)
        os.chmod(tmp, 0o644)  # mkstemp's 0o600 would make the export private
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def config_differences(a: ModelConfig, b: ModelConfig) -> dict[str, tuple]:
    """{field: (a's, b's)} where two configs differ; floats compare as the float32 GGUF stores, and the
    query scale by value (None means head_dim)."""
    scalar = lambda x: x.replace(query_pre_attn_scalar=x.query_pre_attn_scalar or x.head_dim)  # noqa: E731
    a, b = scalar(a), scalar(b)
    same = lambda x, y: np.float32(x) == np.float32(y) if isinstance(x, float) else x == y  # noqa: E731
    return {
        f.name: (getattr(a, f.name), getattr(b, f.name))
        for f in dataclasses.fields(ModelConfig)
        if not same(getattr(a, f.name), getattr(b, f.name))
    }


def _check_readback(path: str, c: ModelConfig) -> None:
    """Refuse a model whose GGUF metadata a reader would turn into a different architecture."""
    diff = config_differences(c, from_hf(hf_config_from_gguf(open_gguf(path)), source=path))
    if diff:
        detail = "; ".join(f"{k}: model {a!r}, GGUF reader {b!r}" for k, (a, b) in diff.items())
        raise InvalidInput(
            f"cannot export this {c.family} model to GGUF: llama.cpp and our importer would rebuild it "
            f"differently ({detail})"
        )
