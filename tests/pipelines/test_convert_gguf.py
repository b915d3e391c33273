"""`align convert SRC OUT.gguf --quant ...`: a HF directory to a quantized GGUF file our importer reads back,
tokenizer metadata from the source's tokenizer, written whole or not at all."""

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")

from pipelines.cli import main  # noqa: E402
from tests.model.test_gguf_export import _gemma3, _logits, _rounded, _tokens  # noqa: E402


@pytest.fixture
def hf_dir(tmp_path):
    """A 6-layer tiny Gemma 3 (llama.cpp's 5 local : 1 global) with the tiny test tokenizer."""
    from align.data.testing import TINY_VOCAB_SIZE, tiny_tokenizer
    from align.model.hf_io import save_hf_dir

    model = _gemma3(vocab_size=TINY_VOCAB_SIZE)
    return model, save_hf_dir(model, tmp_path / "src", tokenizer=tiny_tokenizer())


def test_convert_to_gguf_reads_back(hf_dir, tmp_path, capsys):
    from align.data.testing import tiny_tokenizer
    from align.hub import load

    model, src = hf_dir
    out = tmp_path / "m.gguf"
    assert main(["convert", str(src), str(out), "--quant", "q4_0"]) == 0
    assert "GGUF q4_0" in capsys.readouterr().out
    back = load(str(out), with_tokenizer=False).model
    tokens = _tokens(model.config.vocab_size)
    np.testing.assert_allclose(_logits(back, tokens), _logits(_rounded(model, "q4_0"), tokens), atol=1e-5)
    fields = gguf.GGUFReader(str(out)).fields
    tok = tiny_tokenizer()
    assert fields["tokenizer.ggml.tokens"].contents() == tok.convert_ids_to_tokens(list(range(len(tok))))
    types = fields["tokenizer.ggml.token_type"].contents()
    assert (
        types[tok.bos_token_id] == gguf.TokenType.CONTROL
        and types[tok.eos_token_id] == gguf.TokenType.CONTROL
    )
    assert fields["tokenizer.ggml.bos_token_id"].contents() == tok.bos_token_id


def test_convert_to_gguf_replaces_whole_or_not_at_all(hf_dir, tmp_path, capsys):
    from align.model.hf_io import save_hf_dir
    from tests.model.hf_reference import tiny_hf_model

    _, src = hf_dir
    out = tmp_path / "m.gguf"
    assert main(["convert", str(src), str(out), "--to", "gguf", "--quant", "f16"]) == 0
    small = out.stat().st_size
    assert main(["convert", str(src), str(out), "--quant", "f32"]) == 0  # replaced: twice the bytes
    assert out.stat().st_size > 1.8 * small
    before = out.read_bytes()
    # transformers' tiny gemma3 has 3 layers and query_pre_attn_scalar 24 != head_dim: llama.cpp would
    # rebuild neither, so it is refused with exit code 2 and the previous file stays.
    pytest.importorskip("torch")
    from align.data.testing import tiny_tokenizer
    from align.hub import load

    _, other = tiny_hf_model("gemma3", tmp_path / "other", vocab_size=272)
    save_hf_dir(
        load(str(other), tokenizer=None, with_tokenizer=False).model, other, tokenizer=tiny_tokenizer()
    )
    assert main(["convert", str(other), str(out)]) == 2
    err = capsys.readouterr().err
    assert "layer_types" in err and "query_pre_attn_scalar" in err
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.gguf", "other", "src"]  # no temporary file
