"""load_model on `preset:` specs: random weights that follow the seed and the requested dtypes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from align.model import Decoder
from align.training.run import ModelOptions, load_model
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
