"""Parity with transformers on tiny random Gemma 1/2/3 and Llama models: layer by layer, then logits."""

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

torch = pytest.importorskip("torch")

from align.model.hf_io import load_hf_dir, save_hf_dir  # noqa: E402

from tests.model.hf_reference import tiny_hf_model  # noqa: E402

FAMILIES = ["gemma3", "gemma2", "gemma", "llama"]
TOL = 1e-4


def _inputs(vocab, B=2, T=11, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, vocab, size=(B, T)).astype(np.int32)


def _hf_forward(model, tokens):
    with torch.no_grad():
        out = model(torch.tensor(tokens, dtype=torch.long), output_hidden_states=True)
    return out.logits.numpy(), [h.numpy() for h in out.hidden_states]


@pytest.mark.parametrize("family", FAMILIES)
def test_logits_and_layers_match_transformers(family, tmp_path):
    hf_model, path = tiny_hf_model(family, tmp_path)
    model = load_hf_dir(path)
    tokens = _inputs(model.config.vocab_size)
    B, T = tokens.shape
    positions = jnp.broadcast_to(jnp.arange(T), (B, T))
    segments = jnp.ones((B, T), jnp.int32)
    hf_logits, hf_hidden = _hf_forward(hf_model, tokens)

    # Layer by layer: hidden_states[i] is the input of block i; the last one is after the final norm.
    x = model.embedder.encode(jnp.asarray(tokens), jnp.float32)
    np.testing.assert_allclose(x, hf_hidden[0], atol=TOL, err_msg="embeddings")
    for i, block in enumerate(model.layers):
        x, _ = block(x, positions, segments)
        if i + 1 < len(model.layers):
            np.testing.assert_allclose(x, hf_hidden[i + 1], atol=TOL, rtol=1e-4, err_msg=f"block {i}")
    np.testing.assert_allclose(model.final_norm(x), hf_hidden[-1], atol=TOL, rtol=1e-4, err_msg="final norm")

    out = model(jnp.asarray(tokens), positions, segments)
    np.testing.assert_allclose(out.logits, hf_logits, atol=TOL, rtol=1e-4, err_msg="logits")


@pytest.mark.parametrize("family", ["gemma3", "llama"])
def test_export_round_trip_loads_in_transformers(family, tmp_path):
    import transformers

    source, path = tiny_hf_model(family, tmp_path / "src")
    model = load_hf_dir(path)
    out_dir = save_hf_dir(model, tmp_path / "export", max_shard_bytes=40_000)  # forces a sharded index
    assert (out_dir / "model.safetensors.index.json").exists()
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(out_dir, dtype=torch.float32).eval()
    tokens = _inputs(model.config.vocab_size, seed=1)
    B, T = tokens.shape
    ours = model(jnp.asarray(tokens), jnp.broadcast_to(jnp.arange(T), (B, T)), jnp.ones((B, T), jnp.int32))
    theirs, _ = _hf_forward(reloaded, tokens)
    np.testing.assert_allclose(ours.logits, theirs, atol=TOL, rtol=1e-4)
    # transformers reads back every tensor of the source checkpoint, bit for bit
    want, got = source.state_dict(), reloaded.state_dict()
    assert sorted(got) == sorted(want)
    for name, tensor in want.items():
        np.testing.assert_array_equal(got[name].numpy(), tensor.numpy(), err_msg=name)
    # and our own loader reads the export back to the same parameters, every one of them
    again = nnx.to_flat_state(nnx.state(load_hf_dir(out_dir), nnx.Param))
    ours = dict(nnx.to_flat_state(nnx.state(model, nnx.Param)))
    assert [p for p, _ in again] == sorted(ours) and len(ours) > 10
    for p, var in again:
        assert var[...].dtype == ours[p][...].dtype, p
        np.testing.assert_array_equal(np.asarray(var[...]), np.asarray(ours[p][...]), err_msg=str(p))
