"""The fused weighted NLL: same value and gradients as the chunked log-probs, one matmul fewer."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from align.training.fused_nll import chunked_weighted_nll
from align.training.logprobs import chunked_token_logprobs, token_logprobs

B, T, D, V = 2, 7, 8, 13


def _inputs(seed=0):
    rng = np.random.default_rng(seed)
    hidden = jnp.asarray(rng.normal(size=(B, T, D)), jnp.float32)
    unembed = jnp.asarray(rng.normal(size=(V, D)), jnp.float32)
    targets = jnp.asarray(rng.integers(0, V, size=(B, T)), jnp.int32)
    weights = jnp.asarray(rng.uniform(size=(B, T)) * (rng.uniform(size=(B, T)) > 0.3), jnp.float32)
    return hidden, unembed, targets, weights


def _reference(h, w, targets, weights, softcap):
    z = jnp.einsum("BTD,VD->BTV", h, w)
    if softcap is not None:
        z = softcap * jnp.tanh(z / softcap)
    return -jnp.sum(weights * token_logprobs(z, targets))


@pytest.mark.parametrize("chunk_size", [1, 3, 5, 14, 64])  # 14 = B*T: one tile; 3, 5: a padded last tile
@pytest.mark.parametrize("softcap", [None, 2.5])
def test_value_and_gradients_equal_the_unfused_loss(chunk_size, softcap):
    hidden, unembed, targets, weights = _inputs(seed=chunk_size)
    fused = jax.jit(
        jax.value_and_grad(
            lambda h, w: chunked_weighted_nll(
                h, w, targets, weights, chunk_size=chunk_size, final_softcap=softcap
            ),
            argnums=(0, 1),
        )
    )
    ref = jax.value_and_grad(lambda h, w: _reference(h, w, targets, weights, softcap), argnums=(0, 1))
    (v, (gh, gw)), (v_ref, (gh_ref, gw_ref)) = fused(hidden, unembed), ref(hidden, unembed)
    np.testing.assert_allclose(v, v_ref, rtol=1e-5)
    np.testing.assert_allclose(gh, gh_ref, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(gw, gw_ref, rtol=1e-4, atol=1e-6)


def test_gradient_by_hand_on_one_token():
    # One token, V=3, h=1-d: z = h * E; dloss/dh = w * (sum_v p_v E_v - E_t),
    # dloss/dE_v = w * (p_v - [v=t]) * h.
    h = jnp.array([[[2.0]]])
    e = jnp.array([[0.5], [-1.0], [0.25]])
    t, w = jnp.array([[2]]), jnp.array([[0.5]])
    p = np.exp(2.0 * np.array([0.5, -1.0, 0.25]))
    p /= p.sum()
    gh, ge = jax.grad(lambda h, e: chunked_weighted_nll(h, e, t, w, chunk_size=4), argnums=(0, 1))(h, e)
    np.testing.assert_allclose(gh[0, 0, 0], 0.5 * (p @ np.array([0.5, -1.0, 0.25]) - 0.25), rtol=1e-6)
    np.testing.assert_allclose(ge[:, 0], 0.5 * (p - np.array([0, 0, 1.0])) * 2.0, rtol=1e-6)


def test_scales_with_the_outer_cotangent_and_ignores_weight_gradients():
    hidden, unembed, targets, weights = _inputs(seed=7)

    def outer(h, w, weights):
        return 3.0 * chunked_weighted_nll(h, w, targets, weights, chunk_size=4) ** 2

    def outer_ref(h, w, weights):
        return 3.0 * _reference(h, w, targets, jax.lax.stop_gradient(weights), None) ** 2

    got = jax.grad(outer, argnums=(0, 1, 2))(hidden, unembed, weights)
    want = jax.grad(outer_ref, argnums=(0, 1, 2))(hidden, unembed, weights)
    for g, g_ref in zip(got, want):
        np.testing.assert_allclose(g, g_ref, rtol=1e-4, atol=1e-6)
    assert not np.any(got[2])  # the weights are constants by contract


def test_forward_alone_matches_chunked_token_logprobs():
    hidden, unembed, targets, weights = _inputs(seed=9)
    lp = chunked_token_logprobs(hidden, unembed, targets, chunk_size=4)
    np.testing.assert_allclose(
        chunked_weighted_nll(hidden, unembed, targets, weights, chunk_size=4),
        -jnp.sum(weights * lp),
        rtol=1e-6,
    )


def test_rejects_bad_arguments():
    hidden, unembed, targets, weights = _inputs()
    with pytest.raises(ValueError, match="chunk_size must be >= 1"):
        chunked_weighted_nll(hidden, unembed, targets, weights, chunk_size=0)
    with pytest.raises(ValueError, match="do not fit"):
        chunked_weighted_nll(hidden, unembed, targets, weights[:, :3], chunk_size=4)


def _dot_operand_dtypes(jaxpr):
    """Operand dtypes of every dot_general in a jaxpr, scan and custom_vjp bodies included."""
    found = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            found.append(tuple(str(v.aval.dtype) for v in eqn.invars))
        for p in eqn.params.values():
            inner = getattr(p, "jaxpr", None)
            if inner is not None and hasattr(inner, "eqns"):
                found += _dot_operand_dtypes(inner)
            elif hasattr(p, "eqns"):
                found += _dot_operand_dtypes(p)
    return found


@pytest.mark.parametrize("which", ["fused", "chunked"])
def test_bfloat16_activations_with_float32_weights_matmul_in_bfloat16(which):
    """Mixed precision: bf16 hidden states and float32 master weights. Every unembedding matmul
    takes bf16 operands (a promotion to float32 would run the largest matmul at the float32 rate),
    the weight's gradient stays float32, and the loss stays within bf16 rounding of float32's."""
    hidden, unembed, targets, weights = _inputs(seed=3)
    if which == "fused":
        loss = lambda h, w: chunked_weighted_nll(h, w, targets, weights, chunk_size=5)  # noqa: E731
    else:
        loss = lambda h, w: -jnp.sum(weights * chunked_token_logprobs(h, w, targets, chunk_size=5))  # noqa: E731
    grad_fn = jax.value_and_grad(loss, argnums=(0, 1))
    h16 = hidden.astype(jnp.bfloat16)
    dtypes = _dot_operand_dtypes(jax.make_jaxpr(grad_fn)(h16, unembed).jaxpr)
    assert dtypes and all(d == ("bfloat16", "bfloat16") for d in dtypes), dtypes
    v, (gh, gw) = grad_fn(h16, unembed)
    v_ref, (gh_ref, gw_ref) = grad_fn(hidden, unembed)
    assert gh.dtype == jnp.bfloat16 and gw.dtype == jnp.float32
    np.testing.assert_allclose(v, v_ref, rtol=2e-2)
    np.testing.assert_allclose(gw, gw_ref, rtol=5e-2, atol=5e-2 * float(jnp.abs(gw_ref).max()))


def test_exp_barrier_is_lowered_on_cpu_only():
    """The one-exp-pass barrier is a measured XLA:CPU fix; a CUDA lowering of the same gradient
    keeps XLA's own fusion (the GPU figures were measured without it)."""
    hidden, unembed, targets, weights = _inputs()
    grad_fn = jax.jit(
        jax.grad(lambda h, w: chunked_weighted_nll(h, w, targets, weights, chunk_size=5), argnums=(0, 1))
    )

    def lowered_for(platform):
        return jax.export.export(grad_fn, platforms=[platform])(hidden, unembed).mlir_module()

    assert "optimization_barrier" in lowered_for("cpu")
    assert "optimization_barrier" not in lowered_for("cuda")


def test_gradient_tile_forms_agree_and_each_platform_lowers_its_own():
    """dz = e * scale - w * onehot(t): the iota-compare form (GPU/TPU, fuses with the cast) equals the
    scatter form (CPU) exactly, and each platform's lowering holds only its own."""
    from align.training import fused_nll

    rng = np.random.default_rng(0)
    e = jnp.asarray(rng.random((6, 11)), jnp.float32)
    scale, w = jnp.asarray(rng.random(6), jnp.float32), jnp.asarray(rng.random(6), jnp.float32)
    t = jnp.asarray([0, 10, 3, 3, 7, 1], jnp.int32)
    want = np.asarray(e) * np.asarray(scale)[:, None]
    want[np.arange(6), np.asarray(t)] -= np.asarray(w)
    for form in (fused_nll._minus_onehot_select, fused_nll._minus_onehot_scatter):
        np.testing.assert_allclose(form(e, scale, t, w), want, rtol=1e-6, atol=1e-7)

    def lowered_for(platform):
        return jax.export.export(jax.jit(fused_nll._scaled_minus_onehot), platforms=[platform])(
            e, scale, t, w
        ).mlir_module()

    assert "scatter" in lowered_for("cpu") and "scatter" not in lowered_for("cuda")


def test_float32_weight_is_cast_to_the_compute_dtype_once_not_per_tile():
    """Mixed precision: the [V, D] cast happens before the scan over tiles. Inside the scan body XLA
    runs it once per tile (a full [V, D] pass each, seen in a GPU profile)."""
    hidden, unembed, targets, weights = _inputs(seed=3)
    grad_fn = jax.grad(
        lambda h, w: chunked_weighted_nll(h, w, targets, weights, chunk_size=5), argnums=(0, 1)
    )
    jaxpr = jax.make_jaxpr(grad_fn)(hidden.astype(jnp.bfloat16), unembed).jaxpr

    def casts_of_the_table(jaxpr, in_scan):
        found = []
        for eqn in jaxpr.eqns:
            if eqn.primitive.name == "convert_element_type" and eqn.invars[0].aval.shape == unembed.shape:
                found.append(in_scan)
            for p in eqn.params.values():
                inner = getattr(p, "jaxpr", p)
                if hasattr(inner, "eqns"):
                    found += casts_of_the_table(inner, in_scan or eqn.primitive.name == "scan")
        return found

    assert casts_of_the_table(jaxpr, False) == [False], casts_of_the_table(jaxpr, False)
