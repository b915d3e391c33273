"""The compiled decode loop writes the KV cache in place and never copies or transposes it, and
computes no rotary sin/cos (they come from tables made before the loop).

With the cache stored [B, S, K, H], XLA:CPU squeezed the unit K axis between the in-place write and
the attention dot, so it duplicated the write, copied every cache buffer two or three times a step and
transposed the values for the probs x values dot (about 9% of a gemma3-270m decode step; align.model.cache).
This pins the fix on a tiny model with one kv head, like gemma3-270m: inside the while loop's body,
the only instructions that produce a whole cache buffer are the loop's own parameters and one
dynamic-update-slice per buffer.
"""

import math
import re

import jax
import jax.numpy as jnp
import pytest
from flax import nnx

from align.model import Decoder, ModelConfig
from align.model.layers import Projections
from align.sampling import SamplingConfig
from align.sampling.sampler import _generate_jit

B, P, M = 3, 5, 8


def _loop_body(hlo: str) -> str:
    name = re.search(r"body=%([^,\s]+)", hlo).group(1)
    return re.search(r"\n%" + re.escape(name) + r" .*?\n}\n", hlo, re.S).group(0)


def _cache_sized(body: str, n: int) -> list[tuple[str, str]]:
    """(instruction name, opcode) of every instruction whose result has n elements."""
    out = []
    for line in body.split("\n"):
        m = re.match(r"\s*(?:ROOT )?%(\S+) = \w+\[([\d,]+)\]\S* ([\w-]+)\(", line)
        if m and math.prod(int(d) for d in m.group(2).split(",")) == n:
            out.append((m.group(1), m.group(3)))
    return out


def _compile_generate(model: Decoder, out_first_weights: bool = False):
    """generate (CPU decode layout) compiled for `model`, B rows of P prompt tokens, M new tokens."""
    graphdef, state = nnx.split(model)
    prompt, lengths = jnp.ones((B, P), jnp.int32), jnp.full((B,), P, jnp.int32)
    return _generate_jit.lower(
        graphdef,
        state,
        prompt,
        lengths,
        jax.random.PRNGKey(0),
        config=SamplingConfig(max_new_tokens=M),
        cache_dtype=jnp.float32,
        cpu_layout=True,
        out_first_weights=out_first_weights,
    ).compile()


def _compiled_generate(config: ModelConfig) -> str:
    """The compiled HLO text of generate (CPU decode layout) for a random model of `config`."""
    return _compile_generate(Decoder(config, rngs=nnx.Rngs(0))).as_text()


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="pins XLA:CPU's program")
def test_decode_loop_updates_the_cache_in_place_without_copies():
    config = ModelConfig.tiny(vocab_size=96).replace(num_kv_heads=1)
    hlo = _compiled_generate(config)
    sized = _cache_sized(_loop_body(hlo), B * config.num_kv_heads * (P + M) * config.head_dim)
    made = [(name, op) for name, op in sized if op != "get-tuple-element"]
    assert sum(op == "get-tuple-element" for _, op in sized) == 2 * config.num_layers  # k and v per layer
    assert all(op == "fusion" and "dynamic-update-slice" in name for name, op in made), made
    assert len(made) == 2 * config.num_layers, made


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="pins XLA:CPU's program")
def test_decode_loop_computes_no_sin_or_cos():
    # XLA fuses sin/cos into the rotation and evaluates them per element of q and k, in every layer and
    # step; the CPU decode layout looks them up in tables made before the loop instead.
    config = ModelConfig.tiny(vocab_size=96)
    hlo = _compiled_generate(config)
    computations = {
        m.group(1): m.group(0) for m in re.finditer(r"\n%([\w.\-]+) [^\n]*\{\n.*?\n}\n", hlo, re.S)
    }
    body = _loop_body(hlo)
    called = [computations.get(name, "") for name in re.findall(r"calls=%([\w.\-]+)", body)]
    assert called and not any(" sine(" in c or " cosine(" in c for c in [body, *called])
    assert " sine(" in hlo  # the prefill and the tables still compute them


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="pins XLA:CPU's program")
def test_rotary_tables_are_made_once_per_base_not_once_per_layer():
    # for_decoding gives every attention layer its own table; layers with the same (base, scale) build
    # the same one, and XLA's common-subexpression pass keeps a single copy of each: 2 tables for 6
    # layers, not 6 (at 32K positions a table is 32 MB; gemma3-270m has 18 layers, 2 bases).
    config = ModelConfig.tiny(vocab_size=96).replace(num_layers=6, layer_types=("local", "global") * 3)
    tables = re.findall(rf"= f32\[{P + M},{config.head_dim // 2}\]\S* sine\(", _compiled_generate(config))
    assert len(tables) == 2, tables


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="pins XLA:CPU's program")
def test_vocab_major_logits_are_one_fused_multiply_and_sum():
    # Decoder.next_token_logits(vocab_major=True) writes the unembedding as products summed over D:
    # fused, it streams the table once; unfused, it would write [V, B, D] products every step.
    config = ModelConfig.tiny(vocab_size=96)
    products = _cache_sized(_loop_body(_compiled_generate(config)), config.vocab_size * B * config.embed_dim)
    assert products == [], products


def test_decode_layout_copies_the_layer_weights_only_when_asked():
    # out_first_weights makes [out, in] copies of every projection weight for the call (temporaries of
    # at least their size); the default decodes on the weights as they are (temporaries far smaller).
    model = Decoder(ModelConfig.tiny(vocab_size=96), rngs=nnx.Rngs(0))
    weights = sum(
        getattr(m, name)[...].nbytes
        for _, m in nnx.iter_modules(model)
        if isinstance(m, Projections)
        for name in m.PROJECTIONS
    )
    plain = _compile_generate(model).memory_analysis().temp_size_in_bytes
    copied = _compile_generate(model, out_first_weights=True).memory_analysis().temp_size_in_bytes
    assert plain < weights / 2 and copied >= weights + plain / 2, (plain, copied, weights)


@pytest.mark.parametrize("rows", [1, 2, 8])
def test_vocab_major_logits_take_the_dot_for_one_row_and_the_multiply_and_sum_above(rows):
    """One row: XLA:CPU ran the [V, 1, D] multiply-and-sum element by element (16 gemma3-270m tokens
    in 43.7 s against 1.0 s in the plain layout; the unembedding alone 2.85 s against 0.044 s for the
    dot), so one row takes the matrix-vector dot; from two rows up the multiply-and-sum stays."""
    from align.model.decoder import _vocab_major_logits

    table = jax.random.normal(jax.random.PRNGKey(0), (96, 16))
    hidden = jax.random.normal(jax.random.PRNGKey(1), (rows, 16))
    got = _vocab_major_logits(table, hidden)
    assert got.shape == (96, rows)
    assert jnp.allclose(got, (hidden @ table.T).T, atol=1e-5)
    hlo = _vocab_major_logits.lower(table, hidden).as_text()
    assert ("dot_general" in hlo) == (rows == 1) and ("reduce" in hlo) == (rows > 1)


@pytest.mark.parametrize("rows", [1, 2])
def test_the_default_layout_on_cpu_is_the_cpu_layout_for_any_row_count(monkeypatch, rows):
    """cpu_layout=None on CPU: the CPU layout, one row included, with the plain layout's greedy tokens."""
    from align.sampling import generate, sampler

    seen = []

    def spy(*args, **kwargs):
        seen.append(kwargs["cpu_layout"])
        return _generate_jit(*args, **kwargs)

    monkeypatch.setattr(sampler, "_generate_jit", spy)
    model = Decoder(ModelConfig.tiny(vocab_size=64), rngs=nnx.Rngs(0))
    tokens, lengths = jnp.ones((rows, 3), jnp.int32), jnp.full((rows,), 3, jnp.int32)
    out = generate(model, tokens, lengths, SamplingConfig(max_new_tokens=2))
    assert seen == [True] and out.tokens.shape == (rows, 2)
    plain = generate(model, tokens, lengths, SamplingConfig(max_new_tokens=2), cpu_layout=False)
    assert (out.tokens == plain.tokens).all()  # greedy: the same tokens either way
