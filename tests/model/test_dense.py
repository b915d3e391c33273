"""layers.dense: an einsum spec computed as one 2-D matmul, equal to jnp.einsum in value and gradient."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from align.model.layers import dense, out_first_spec

B, T, D, N, H, F, V = 2, 3, 4, 2, 5, 6, 7


@pytest.mark.parametrize(
    "spec, x_shape, w_shape",
    [
        ("BTD,DF->BTF", (B, T, D), (D, F)),
        ("BTD,DNH->BTNH", (B, T, D), (D, N, H)),
        ("BTNH,NHD->BTD", (B, T, N, H), (N, H, D)),
        ("BTD,VD->BTV", (B, T, D), (V, D)),  # weight stored [out, in]: the tied unembedding
        ("CD,VD->CV", (T, D), (V, D)),
    ],
)
def test_equals_einsum_in_value_and_gradient(spec, x_shape, w_shape):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=x_shape), jnp.float32)
    w = jnp.asarray(rng.normal(size=w_shape), jnp.float32)
    out_shape = jnp.einsum(spec, x, w).shape
    g = jnp.asarray(rng.normal(size=out_shape), jnp.float32)
    got = jax.value_and_grad(lambda x, w: jnp.vdot(dense(spec, x, w), g), argnums=(0, 1))(x, w)
    want = jax.value_and_grad(lambda x, w: jnp.vdot(jnp.einsum(spec, x, w), g), argnums=(0, 1))(x, w)
    assert dense(spec, x, w).shape == out_shape
    np.testing.assert_allclose(got[0], want[0], rtol=1e-5)
    for a, b in zip(got[1], want[1]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_lowers_to_a_single_two_dimensional_dot():
    x, w = jnp.ones((B, T, N, H)), jnp.ones((N, H, D))
    dots = [
        e
        for e in jax.make_jaxpr(lambda x, w: dense("BTNH,NHD->BTD", x, w))(x, w).jaxpr.eqns
        if e.primitive.name == "dot_general"
    ]
    assert len(dots) == 1 and all(v.aval.ndim == 2 for v in dots[0].invars)


@pytest.mark.parametrize("spec", ["BTD,DF->BFT", "BTD,FD->BFD", "BDT,DF->BTF", "BTD,DNH->BTHN"])
def test_rejects_specs_that_are_not_a_projection(spec):
    with pytest.raises(ValueError, match="is not"):
        dense(
            spec,
            jnp.ones((B, T, D)),
            jnp.ones((D, F)) if "DF" in spec else jnp.ones((F, D)) if "FD" in spec else jnp.ones((D, N, H)),
        )


def test_rejects_arrays_that_do_not_fit_the_spec():
    with pytest.raises(ValueError, match="does not fit"):
        dense("BTD,DF->BTF", jnp.ones((B, D)), jnp.ones((D, F)))


@pytest.mark.parametrize(
    "spec, x_shape, w_shape",
    [
        ("BTD,FD->BTF", (B, 1, D), (F, D)),
        ("BTD,NHD->BTNH", (B, 1, D), (N, H, D)),
        ("BTNH,DNH->BTD", (B, 1, N, H), (D, N, H)),
        ("BD,VD->BV", (B, D), (V, D)),
    ],
)
def test_weight_first_equals_einsum_with_the_weight_as_left_operand(spec, x_shape, w_shape):
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.normal(size=x_shape), jnp.float32)
    w = jnp.asarray(rng.normal(size=w_shape), jnp.float32)
    np.testing.assert_allclose(
        dense(spec, x, w, weight_first=True), jnp.einsum(spec, x, w), rtol=1e-5, atol=1e-6
    )
    dot = next(
        e
        for e in jax.make_jaxpr(lambda x, w: dense(spec, x, w, weight_first=True))(x, w).jaxpr.eqns
        if e.primitive.name == "dot_general"
    )
    assert dot.outvars[0].aval.shape == (
        np.prod(w_shape) // np.prod(x_shape[-len(w_shape) + 1 :]),
        B,
    )  # [O, X]


def test_weight_first_needs_an_out_first_weight():
    with pytest.raises(ValueError, match="weight_first"):
        dense("BTD,DF->BTF", jnp.ones((B, T, D)), jnp.ones((D, F)), weight_first=True)


@pytest.mark.parametrize(
    "spec, want",
    [
        ("BTD,DF->BTF", "BTD,FD->BTF"),
        ("BTD,DNH->BTNH", "BTD,NHD->BTNH"),
        ("BTNH,NHD->BTD", "BTNH,DNH->BTD"),
    ],
)
def test_out_first_spec_moves_the_output_letters_of_the_weight_first(spec, want):
    assert out_first_spec(spec) == want


@pytest.mark.parametrize("weight_first", [False, True])
def test_preferred_element_type_gives_float32_from_bf16_and_changes_nothing_for_float32(weight_first):
    rng = np.random.default_rng(2)
    x = jnp.asarray(rng.normal(size=(B, T, D)), jnp.bfloat16)
    w = jnp.asarray(rng.normal(size=(V, D)), jnp.bfloat16)
    got = dense("BTD,VD->BTV", x, w, weight_first=weight_first, preferred_element_type=jnp.float32)
    assert got.dtype == jnp.float32
    np.testing.assert_allclose(
        got, jnp.einsum("BTD,VD->BTV", x, w, preferred_element_type=jnp.float32), rtol=1e-6, atol=1e-6
    )
    # float32 operands: the same program as without it (the tuned CPU decode path is untouched)
    lower = lambda **kw: jax.jit(
        lambda x, w: dense(
            "BTD,VD->BTV",
            x,
            w,
            weight_first=weight_first,  # noqa: E731
            **kw,
        )
    ).lower(x.astype(jnp.float32), w.astype(jnp.float32))
    assert lower(preferred_element_type=jnp.float32).as_text() == lower().as_text()
