"""bfloat16 exports: every tensor stored as BF16 (each the float32 weight rounded once), config.json says
so, transformers loads them as bfloat16, and the logits stay close to the float32 export's."""

import json
import struct

import jax.numpy as jnp
import numpy as np
import pytest

from align.errors import InvalidInput
from align.hub import ModelOptions, load_model
from align.model.hf_io import load_hf_dir, save_hf_dir
from align.model.params import flat_params


def _header_dtypes(path) -> set[str]:
    """The dtypes a safetensors file declares in its JSON header (8-byte length, then the header)."""
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    return {v["dtype"] for k, v in header.items() if k != "__metadata__"}


def _logits(model, tokens):
    B, T = tokens.shape
    positions = jnp.broadcast_to(jnp.arange(T), (B, T))
    return np.asarray(model(jnp.asarray(tokens), positions, jnp.ones((B, T), jnp.int32)).logits)


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    model, tokenizer = load_model(ModelOptions(spec="preset:tiny", seed=0))
    root = tmp_path_factory.mktemp("dtype")
    f32 = save_hf_dir(model, root / "f32", tokenizer=tokenizer.hf)
    bf16 = save_hf_dir(model, root / "bf16", tokenizer=tokenizer.hf, dtype="bfloat16")
    return model, f32, bf16


def test_bfloat16_export_stores_bf16_and_says_so(exports):
    _, f32, bf16 = exports
    assert _header_dtypes(f32 / "model.safetensors") == {"F32"}
    assert _header_dtypes(bf16 / "model.safetensors") == {"BF16"}
    assert json.loads((bf16 / "config.json").read_text())["torch_dtype"] == "bfloat16"
    assert json.loads((f32 / "config.json").read_text())["torch_dtype"] == "float32"
    ratio = (bf16 / "model.safetensors").stat().st_size / (f32 / "model.safetensors").stat().st_size
    assert 0.49 < ratio < 0.52  # half the bytes, plus the same-size header


def test_bfloat16_weights_are_the_float32_weights_rounded_once(exports):
    model, f32, bf16 = exports
    exact, rounded = flat_params(load_hf_dir(f32)), flat_params(load_hf_dir(bf16))
    for name, w in flat_params(model).items():
        w = np.asarray(w, np.float32)
        np.testing.assert_array_equal(np.asarray(exact[name]), w, err_msg=name)
        want = w.astype(jnp.bfloat16).astype(np.float32)  # round to nearest even, as numpy does
        np.testing.assert_array_equal(np.asarray(rounded[name]), want, err_msg=name)


def test_bfloat16_logits_close_to_float32(exports):
    _, f32, bf16 = exports
    a, b = load_hf_dir(f32), load_hf_dir(bf16)
    tokens = np.random.default_rng(0).integers(0, a.config.vocab_size, size=(2, 9)).astype(np.int32)
    la, lb = _logits(a, tokens), _logits(b, tokens)
    assert not np.array_equal(la, lb)  # the rounding is real
    # bf16 keeps 8 significant bits (relative error <= 2**-9 per weight); through a tiny model the
    # logits move by well under 2% of their spread
    assert np.abs(la - lb).max() < 0.02 * (la.max() - la.min())


def test_transformers_loads_the_bfloat16_export_as_bfloat16(exports):
    torch = pytest.importorskip("torch")
    from transformers import AutoModelForCausalLM

    _, _, bf16 = exports
    assert AutoModelForCausalLM.from_pretrained(bf16, dtype="auto").dtype == torch.bfloat16


def test_unknown_export_dtype_is_refused(tmp_path, exports):
    with pytest.raises(InvalidInput, match="export dtype 'float16'"):
        save_hf_dir(exports[0], tmp_path / "x", dtype="float16")
