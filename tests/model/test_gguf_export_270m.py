"""Integration: gemma-3-270m exported as 8- and 4-bit GGUF, read back through our importer and through
transformers' GGUF loader; the tokenizer metadata as the embedded GGUF has it."""

import os

import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
gguf = pytest.importorskip("gguf")
pytestmark = pytest.mark.integration

PROMPTS = [  # benchmarks/gguf_export.py's, so its figures are this test's
    "The capital of France is Paris, and the capital of Germany is",
    "def fibonacci(n):\n    if n < 2:\n        return n\n",
    "Three facts about the ocean: 1.",
    "Q: What is 17 * 3?\nA:",
]
# Against the float model on PROMPTS' 59 positions: (max |logit diff|, lowest top-1 agreement). Measured
# 2026-12-06 (benchmarks/RESULTS.md, "GGUF export"): q8_0 1.00 and 100%, q4_0 12.2 and 78%.
# CI checks q8_0 only: the gguf package's numpy Q4_0 quantizer takes ~10 minutes for this model on a
# 2-core CPU (tests/model/test_gguf_export.py round-trips q4_0 on a tiny model); ALIGN_GGUF_Q4=1 adds it.
TOLERANCE = {"q8_0": (2.0, 0.95)} | ({"q4_0": (18.0, 0.65)} if os.environ.get("ALIGN_GGUF_Q4") else {})


def _ours(model, ids):
    T = len(ids)
    return np.asarray(model(jnp.asarray([ids]), jnp.arange(T)[None], jnp.ones((1, T), jnp.int32)).logits[0])


@pytest.mark.skipif(
    not os.environ.get("ALIGN_GGUF_270M"),
    reason="writing and reading back gemma3-270m as GGUF takes minutes of numpy quantizing on 2 cores; CI "
    "runs the tiny-model round trips (test_gguf_export.py); ALIGN_GGUF_270M=1 runs this one "
    "(benchmarks/gguf_export.py measures the same)",
)
def test_gemma3_270m_exports_read_back(tmp_path):
    import transformers

    import align
    from align.hub import embedded_gguf_path
    from align.model.gguf_export import gguf_tokenizer_fields, write_gguf

    loaded = align.load("gemma3-270m")
    ids = [loaded.tokenizer.encode(p, add_bos=True) for p in PROMPTS]
    want = [_ours(loaded.model, i) for i in ids]
    fields = gguf_tokenizer_fields(embedded_gguf_path())
    for quant, (max_abs, top1) in TOLERANCE.items():
        path = write_gguf(
            loaded.model, tmp_path / f"{quant}.gguf", quant=quant, tokenizer_fields=fields, name="g"
        )
        ours = [_ours(align.load(str(path), with_tokenizer=False).model, i) for i in ids]
        ref = transformers.AutoModelForCausalLM.from_pretrained(
            tmp_path, gguf_file=path.name, dtype=torch.float32
        ).eval()
        with torch.no_grad():
            theirs = [ref(torch.tensor([i])).logits[0].numpy() for i in ids]
        for o, t, w in zip(ours, theirs, want):
            np.testing.assert_allclose(o, t, atol=2e-3)  # two readers of one file: same weights
            assert np.abs(o - w).max() < max_abs, (quant, np.abs(o - w).max())
        agree = np.mean(np.concatenate([o.argmax(-1) == w.argmax(-1) for o, w in zip(ours, want)]))
        assert agree >= top1, (quant, agree)
    written = {k: v for k, v, *_ in gguf_tokenizer_fields(str(path))}
    assert written == {k: v for k, v, *_ in fields}  # copied verbatim from the embedded GGUF


def test_tokenizer_metadata_from_the_hf_tokenizer_is_the_gguf_one():
    from align.data.tokenizer import load_tokenizer
    from align.hub import embedded_gguf_path, embedded_hf_dir
    from align.model.gguf_export import gguf_tokenizer_fields, hf_tokenizer_fields

    source = {k: v for k, v, *_ in gguf_tokenizer_fields(embedded_gguf_path())}
    built = {k: v for k, v, *_ in hf_tokenizer_fields(load_tokenizer(embedded_hf_dir()))}
    for key in ("tokens", "token_type", "bos_token_id", "eos_token_id", "padding_token_id", "add_bos_token"):
        assert built[f"tokenizer.ggml.{key}"] == source[f"tokenizer.ggml.{key}"], key
    # Scores differ in value (SentencePiece's are not -rank) but order the normal pieces the same way.
    normal = np.asarray(source["tokenizer.ggml.token_type"]) == gguf.TokenType.NORMAL
    a = np.asarray(source["tokenizer.ggml.scores"])[normal]
    b = np.asarray(built["tokenizer.ggml.scores"])[normal]
    np.testing.assert_array_equal(np.argsort(-a, kind="stable"), np.argsort(-b, kind="stable"))
