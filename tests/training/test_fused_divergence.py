"""The fused weighted divergence: the value and student gradients of the chunked token mean (and of TRL's
GKD loss under torch autograd), no teacher gradient, 4 unembedding matmuls under jax.grad instead of 6,
and no [B, T, V] array."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from align.training.distill import chunked_token_divergence, masked_mean
from align.training.fused_divergence import chunked_weighted_divergence
from tests.training.test_distill_losses import _avals, _case

B, T, V = 2, 5, 37
MASK = jnp.array([[1, 1, 1, 0, 0], [0, 1, 1, 1, 1]], jnp.float32)
WEIGHTS = MASK / MASK.sum()  # masked_mean's token mean
CAPS = {None: (None, None), "capped": (3.0, 5.0)}  # (student, teacher)


def _kwargs(beta, temperature, caps, chunk_size=3):  # 3: four tiles of B*T = 10 tokens, the last ragged
    return dict(beta=beta, temperature=temperature, chunk_size=chunk_size,
                student_softcap=CAPS[caps][0], teacher_softcap=CAPS[caps][1])  # fmt: skip


def _fused(kw, weights=WEIGHTS):
    return lambda h_s, e_s, h_t, e_t: chunked_weighted_divergence(h_s, e_s, h_t, e_t, weights, **kw)


def _chunked(kw, mask=MASK):
    return lambda h_s, e_s, h_t, e_t: masked_mean(chunked_token_divergence(h_s, e_s, h_t, e_t, **kw), mask)[0]


def _assert_close(got, want):
    """Within 1e-5 relative, elementwise or to the array's largest entry (entries near 0 differ in
    rounding only)."""
    want = np.asarray(want)
    assert float(np.abs(want).max()) > 1e-4  # a real gradient, not a degenerate zero
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-5 * float(np.abs(want).max()))


@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("caps", [None, "capped"])
@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_value_and_student_gradients_equal_the_chunked_token_mean(beta, caps, temperature):
    kw = _kwargs(beta, temperature, caps)
    args = _case(5)
    want_v, want_g = jax.value_and_grad(_chunked(kw), argnums=(0, 1))(*args)
    got_v, got_g = jax.jit(jax.value_and_grad(_fused(kw), argnums=(0, 1)))(*args)
    assert float(want_v) > 1e-3
    np.testing.assert_allclose(float(got_v), float(want_v), rtol=1e-5)
    for got, want in zip(got_g, want_g, strict=True):
        _assert_close(got, want)


def test_teacher_and_weights_get_no_gradient():
    kw = _kwargs(0.5, 1.0, "capped")
    h_s, e_s, h_t, e_t = _case(6)
    grads = jax.grad(
        lambda h_t, e_t, w: chunked_weighted_divergence(h_s, e_s, h_t, e_t, w, **kw), argnums=(0, 1, 2)
    )(h_t, e_t, WEIGHTS)
    for g, x in zip(grads, (h_t, e_t, WEIGHTS), strict=True):
        assert g.shape == x.shape and not np.any(np.asarray(g))
    # the check can fail: the chunked form does differentiate into the teacher
    g_t = jax.grad(lambda h_t: _chunked(kw)(h_s, e_s, h_t, e_t))(h_t)
    assert float(jnp.abs(g_t).max()) > 1e-4


def test_scales_with_the_outer_cotangent():
    kw = _kwargs(1.0, 2.0, None)
    args = _case(7)
    outer = lambda f: lambda h, e: 3.0 * f(h, e, *args[2:]) ** 2  # noqa: E731
    got = jax.grad(outer(_fused(kw)), argnums=(0, 1))(*args[:2])
    want = jax.grad(outer(_chunked(kw)), argnums=(0, 1))(*args[:2])
    for g, w in zip(got, want, strict=True):
        _assert_close(g, w)


def test_forward_alone_is_the_weighted_sum_of_token_divergences():
    kw = _kwargs(0.5, 1.0, "capped")
    args = _case(8)
    weights = jnp.arange(B * T, dtype=jnp.float32).reshape(B, T) * MASK  # any weights, not only a mean
    want = jnp.sum(weights * chunked_token_divergence(*args, **kw))
    np.testing.assert_allclose(float(_fused(kw, weights)(*args)), float(want), rtol=1e-6)


def _trl_value_and_grads(args, mask, beta, temperature, caps):
    """TRL's `generalized_jsd_loss` on softcap(h @ E^T) in float64, differentiated by torch autograd."""
    torch = pytest.importorskip("torch")
    from trl.experimental.gkd.gkd_trainer import GKDTrainer

    h_s, e_s, h_t, e_t = (torch.tensor(np.asarray(a, np.float64)) for a in args)
    h_s.requires_grad_(True)
    e_s.requires_grad_(True)

    def logits(h, e, cap):
        z = h @ e.T
        return z if cap is None else cap * torch.tanh(z / cap)

    labels = torch.where(torch.tensor(np.asarray(mask)) > 0, 1, -100)
    loss = GKDTrainer.generalized_jsd_loss(
        logits(h_s, e_s, CAPS[caps][0]), logits(h_t, e_t, CAPS[caps][1]), labels, beta, temperature
    )
    loss.backward()
    return loss.item(), (h_s.grad.numpy(), e_s.grad.numpy())


@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0])
def test_value_and_gradients_match_trl_under_torch_autograd(beta):
    """The closed-form gradients against an independent autodiff of TRL's loss (not jax.grad)."""
    args = _case(9)
    want_v, want_g = _trl_value_and_grads(args, MASK, beta, 2.0, "capped")
    got_v, got_g = jax.value_and_grad(_fused(_kwargs(beta, 2.0, "capped")), argnums=(0, 1))(*args)
    np.testing.assert_allclose(float(got_v), want_v, rtol=1e-5)
    for got, want in zip(got_g, want_g, strict=True):
        _assert_close(got, want)


def _dot_count(jaxpr):
    """dot_general equations in a jaxpr, nested bodies (scan, remat, custom_vjp, pjit) included, each
    counted once (a scan body once, not per tile)."""
    n = 0
    for eqn in jaxpr.eqns:
        n += eqn.primitive.name == "dot_general"
        for p in eqn.params.values():
            for sub in p if isinstance(p, (list, tuple)) else (p,):
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    n += _dot_count(inner)
    return n


def test_four_unembedding_matmuls_under_grad_where_the_chunked_form_takes_six():
    kw = _kwargs(0.5, 1.0, None)
    args = _case(10)

    def dots(loss):
        grad_fn = jax.value_and_grad(lambda h, e: loss(h, e, *args[2:]), argnums=(0, 1))
        return _dot_count(jax.make_jaxpr(grad_fn)(*args[:2]).jaxpr)

    # fused: both logits, dz @ E_s and dz^T @ h_s, all in the forward pass. chunked: both logits in
    # the forward pass, both again in the rematerialised backward pass, then the same two.
    assert (dots(_fused(kw)), dots(_chunked(kw))) == (4, 6)


def test_no_batch_time_vocab_array_in_the_traced_step():
    b, t = 4, 32
    args = _case(bt=(b, t))
    w = jnp.full((b, t), 1.0 / (b * t))
    loss = lambda h, e: chunked_weighted_divergence(h, e, *args[2:], w, beta=0.5, chunk_size=3)  # noqa: E731
    shapes = list(_avals(jax.make_jaxpr(jax.value_and_grad(loss, argnums=(0, 1)))(*args[:2]).jaxpr))
    biggest = max(shapes, key=lambda s: int(np.prod(s)))
    assert (b, t, V) not in shapes and (b * t, V) not in shapes
    assert int(np.prod(biggest)) < b * t * V / 2, biggest  # [C, V] tiles and [V, D] tables only


def test_bfloat16_activations_with_float32_tables_matmul_in_bfloat16():
    """Mixed precision: every unembedding matmul takes bf16 operands, the student table's gradient
    stays float32, and the loss stays within bf16 rounding of float32's."""
    from tests.training.test_fused_nll import _dot_operand_dtypes

    kw = _kwargs(0.5, 1.0, "capped")
    h_s, e_s, h_t, e_t = _case(11)
    grad_fn = jax.value_and_grad(lambda h, e, ht: _fused(kw)(h, e, ht, e_t), argnums=(0, 1))
    h16, ht16 = h_s.astype(jnp.bfloat16), h_t.astype(jnp.bfloat16)
    dtypes = _dot_operand_dtypes(jax.make_jaxpr(grad_fn)(h16, e_s, ht16).jaxpr)
    assert len(dtypes) == 4 and all(d == ("bfloat16", "bfloat16") for d in dtypes), dtypes
    v, (gh, ge) = grad_fn(h16, e_s, ht16)
    v_ref, (_, ge_ref) = grad_fn(h_s, e_s, h_t)
    assert gh.dtype == jnp.bfloat16 and ge.dtype == jnp.float32
    np.testing.assert_allclose(float(v), float(v_ref), rtol=3e-2)
    np.testing.assert_allclose(ge, ge_ref, rtol=5e-2, atol=5e-2 * float(jnp.abs(ge_ref).max()))


def test_rejects_bad_arguments():
    args = _case()
    with pytest.raises(ValueError, match="beta"):
        chunked_weighted_divergence(*args, WEIGHTS, beta=1.5)
    with pytest.raises(ValueError, match="chunk_size"):
        chunked_weighted_divergence(*args, WEIGHTS, chunk_size=0)
    with pytest.raises(ValueError, match="do not share"):
        chunked_weighted_divergence(*args, WEIGHTS[:, :3])


@pytest.mark.parametrize("beta", [0.5, 1.0])
def test_a_sharp_student_far_from_the_teacher_stays_finite_and_close_to_float64(beta):
    # Logits spread over ~100 nats: most p and q underflow (log m's floor is exercised) and the
    # divergence saturates, so the gradient is ~1e-5 of a cancellation; the chunked float32 form is
    # also ~1% off float64 there.
    args = _case(12, scale=40.0)
    want_v, want_g = _trl_value_and_grads(args, MASK, beta, 1.0, None)
    got_v, got_g = jax.value_and_grad(_fused(_kwargs(beta, 1.0, None)), argnums=(0, 1))(*args)
    assert math.isfinite(float(got_v)) and all(bool(jnp.isfinite(g).all()) for g in got_g)
    np.testing.assert_allclose(float(got_v), want_v, rtol=1e-5)
    for got, want in zip(got_g, want_g, strict=True):
        np.testing.assert_allclose(got, want, rtol=0, atol=3e-2 * float(np.abs(want).max()))
