"""layers.dense: an einsum spec computed as one 2-D matmul, equal to jnp.einsum in value and gradient."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from align.model.layers import dense

B, T, D, N, H, F, V = 2, 3, 4, 2, 5, 6, 7


@pytest.mark.parametrize("spec, x_shape, w_shape", [
    ("BTD,DF->BTF", (B, T, D), (D, F)),
    ("BTD,DNH->BTNH", (B, T, D), (D, N, H)),
    ("BTNH,NHD->BTD", (B, T, N, H), (N, H, D)),
    ("BTD,VD->BTV", (B, T, D), (V, D)),  # weight stored [out, in]: the tied unembedding
    ("CD,VD->CV", (T, D), (V, D)),
])
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
    dots = [e for e in jax.make_jaxpr(lambda x, w: dense("BTNH,NHD->BTD", x, w))(x, w).jaxpr.eqns
            if e.primitive.name == "dot_general"]
    assert len(dots) == 1 and all(v.aval.ndim == 2 for v in dots[0].invars)


@pytest.mark.parametrize("spec", ["BTD,DF->BFT", "BTD,FD->BFD", "BDT,DF->BTF", "BTD,DNH->BTHN"])
def test_rejects_specs_that_are_not_a_projection(spec):
    with pytest.raises(ValueError, match="is not"):
        dense(spec, jnp.ones((B, T, D)), jnp.ones((D, F)) if "DF" in spec else jnp.ones((F, D)) if "FD" in spec
              else jnp.ones((D, N, H)))


def test_rejects_arrays_that_do_not_fit_the_spec():
    with pytest.raises(ValueError, match="does not fit"):
        dense("BTD,DF->BTF", jnp.ones((B, D)), jnp.ones((D, F)))
