"""load_model on `preset:` specs: random weights that follow the seed and the requested dtypes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from align.model import Decoder
from align.hub import ModelOptions, load_model
from tests.scripts import load_script


def _weights(model):
    return [np.asarray(x) for x in jax.tree.leaves(nnx.state(model, nnx.Param))]


def test_same_seed_same_weights_other_seed_other_weights():
    a, tokenizer = load_model(ModelOptions(spec="preset:tiny", seed=0))
    b, _ = load_model(ModelOptions(spec="preset:tiny", seed=0))
    c, _ = load_model(ModelOptions(spec="preset:tiny", seed=1))
    assert a.config == b.config and tokenizer is not None
    for x, y in zip(_weights(a), _weights(b), strict=True):
        np.testing.assert_array_equal(x, y)
    differ = [not np.array_equal(x, z) for x, z in zip(_weights(a), _weights(c), strict=True)]
    assert sum(differ) >= len(differ) // 2  # the random matrices differ (norm scales are constants)


def test_eager_build_equals_the_one_jit_build():
    """The eager build (one small kernel per shape) gives the initialiser's values, as the whole
    constructor compiled as one program does, up to float32 rounding of `std * normal`."""
    model, _ = load_model(ModelOptions(spec="preset:tiny", seed=3))
    jitted = jax.jit(lambda: nnx.state(Decoder(model.config, rngs=nnx.Rngs(3)), nnx.Param))()
    for x, y in zip(_weights(model), jax.tree.leaves(jitted), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(("dtype", "param_dtype"), [("bfloat16", "float32"), ("bfloat16", "bfloat16")])
def test_dtypes_are_honoured(dtype, param_dtype):
    model, _ = load_model(ModelOptions(spec="preset:tiny", dtype=dtype, param_dtype=param_dtype))
    assert {x.dtype for x in _weights(model)} == {np.dtype(jnp.dtype(param_dtype))}
    args = jnp.ones((1, 4), jnp.int32), jnp.arange(4)[None], jnp.ones((1, 4), jnp.int32)
    assert model.hidden(*args).dtype == jnp.dtype(dtype)  # activations in the compute dtype
    logits = model(*args).logits
    assert logits.dtype == jnp.float32 and bool(jnp.isfinite(logits).all())  # logits upcast by design


def test_unknown_preset_and_dtype_are_named():
    with pytest.raises(ValueError, match="unknown preset"):
        load_model(ModelOptions(spec="preset:gemma9_1t"))
    with pytest.raises(ValueError, match="float16"):
        load_model(ModelOptions(spec="preset:tiny", dtype="float16"))


def test_init_benchmark_runs_on_tiny(capsys):
    load_script("benchmarks/init.py").main(["--presets", "tiny"])
    row = capsys.readouterr().out.splitlines()[1].split()
    assert row[0] == "tiny" and row[1] == "107,136" and float(row[5]) < 1e-6  # same weights both ways


def test_attention_option_switches_every_layer_and_names_bad_values():
    model, _ = load_model(ModelOptions(spec="preset:tiny", dtype="bfloat16", attention="cudnn"))
    assert {layer.attn.impl for layer in model.layers} == {"cudnn"}
    model.use_attention("xla")
    assert {layer.attn.impl for layer in model.layers} == {"xla"}
    with pytest.raises(ValueError, match="model.attention 'flash'"):
        load_model(ModelOptions(spec="preset:tiny", attention="flash"))
    with pytest.raises(ValueError, match="needs model.dtype bfloat16"):
        load_model(ModelOptions(spec="preset:tiny", attention="cudnn"))


# ---- the one model-spec grammar (align.load) ---------------------------------------------------


def test_preset_tiny_loads_through_align_load_with_the_tiny_tokenizer():
    import align
    from align.data.testing import TINY_VOCAB_SIZE

    loaded = align.load("preset:tiny", seed=2)
    assert loaded.source == "preset:tiny" and loaded.config.vocab_size == TINY_VOCAB_SIZE
    assert len(loaded.tokenizer.encode("hello")) > 0  # the tiny tokenizer covers the tiny vocabulary
    # load_model is align.load plus run options: the same weights for the same seed
    model, _ = load_model(ModelOptions(spec="preset:tiny", seed=2))
    for x, y in zip(_weights(model), _weights(loaded.model), strict=True):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize(
    ("spec", "error", "words"),
    [
        ("preset:gemma9_1t", "InvalidInput", ["'preset:gemma9_1t'", "unknown preset"]),
        ("preset:gemma3_1b", "InvalidInput", ["'preset:gemma3_1b'", "needs a tokenizer"]),
        ("gemma3_270m", "ModelNotFound", ["'gemma3_270m'", "'gemma3-270m'", "'preset:gemma3_270m'"]),
        ("no/such/dir", "ModelNotFound", ["'no/such/dir'"]),
        ("nope.gguf", "ModelNotFound", ["'nope.gguf'"]),
    ],
)
def test_a_bad_spec_is_an_input_error_naming_the_spec(spec, error, words):
    import align
    from align.errors import InputError

    with pytest.raises(InputError) as info:
        align.load(spec)
    assert type(info.value).__name__ == error
    assert all(w in str(info.value) for w in words), str(info.value)


def test_the_grammar_is_the_same_for_config_and_command_line(tmp_path):
    """A config's model.spec (load_model) and `align eval/generate --model` (align.load) read one grammar:
    a HF directory written from a preset loads back through both with equal weights."""
    import align
    from align.model.hf_io import save_hf_dir

    model, tokenizer = load_model(ModelOptions(spec="preset:tiny", seed=5))
    save_hf_dir(model, tmp_path / "hf", tokenizer=tokenizer.hf)
    via_config, _ = load_model(ModelOptions(spec=str(tmp_path / "hf")))
    via_cli = align.load(str(tmp_path / "hf")).model
    for a, b, c in zip(_weights(model), _weights(via_config), _weights(via_cli), strict=True):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(b, c)
