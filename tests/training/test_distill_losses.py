"""Distillation losses: parity with TRL's GKD loss, analytic anchors, chunked == unchunked (values and
gradients), no [B, T, V] array in the traced step, sparse top-k targets."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from align.model.layers import softcap
from align.training.distill import (
    chunked_token_divergence,
    masked_mean,
    sparse_topk_kl,
    teacher_topk,
    token_divergence,
)

B, T, D_S, D_T, V = 2, 5, 8, 12, 37  # V prime: no vocab_chunk divides it, so the padded slice is exercised


def _case(seed=0, scale=2.0, bt=(B, T)):
    ks = jax.random.split(jax.random.PRNGKey(seed), 4)
    h_s = jax.random.normal(ks[0], (*bt, D_S))
    e_s = scale * jax.random.normal(ks[1], (V, D_S)) / math.sqrt(D_S)
    h_t = jax.random.normal(ks[2], (*bt, D_T))
    e_t = scale * jax.random.normal(ks[3], (V, D_T)) / math.sqrt(D_T)
    return h_s, e_s, h_t, e_t


def _logits(h, e, cap=None):
    return softcap(jnp.einsum("BTD,VD->BTV", h, e), cap)


def _trl_loss(student_logits, teacher_logits, mask, beta, temperature):
    torch = pytest.importorskip("torch")
    from trl.experimental.gkd.gkd_trainer import GKDTrainer

    labels = torch.where(torch.tensor(np.asarray(mask)) > 0, 1, -100)
    return GKDTrainer.generalized_jsd_loss(
        torch.tensor(np.asarray(student_logits, np.float64)),
        torch.tensor(np.asarray(teacher_logits, np.float64)),
        labels=labels,
        beta=beta,
        temperature=temperature,
    ).item()


MASK = np.array([[1, 1, 1, 0, 0], [0, 1, 1, 1, 1]], np.float32)


@pytest.mark.parametrize("beta", [0.0, 0.1, 0.5, 0.9, 1.0])
@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_parity_with_trl_gkd_loss(beta, temperature):
    h_s, e_s, h_t, e_t = _case()
    zs, zt = _logits(h_s, e_s, 3.0), _logits(h_t, e_t)
    expected = _trl_loss(zs, zt, MASK, beta, temperature)
    reference, _ = masked_mean(token_divergence(zs, zt, beta=beta, temperature=temperature), MASK)
    chunked = chunked_token_divergence(
        h_s,
        e_s,
        h_t,
        e_t,
        beta=beta,
        temperature=temperature,
        chunk_size=3,
        vocab_chunk=8,
        student_softcap=3.0,
    )
    assert expected > 1e-3  # a real divergence, not a degenerate zero
    np.testing.assert_allclose(float(reference), expected, rtol=1e-5)
    np.testing.assert_allclose(float(masked_mean(chunked, MASK)[0]), expected, rtol=1e-5)


@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("vocab_chunk", [None, 5, 64])
def test_student_equal_to_teacher_gives_zero(beta, vocab_chunk):
    h, e, _, _ = _case(1, scale=6.0)
    div = chunked_token_divergence(h, e, h, e, beta=beta, chunk_size=4, vocab_chunk=vocab_chunk)
    np.testing.assert_allclose(np.asarray(div), 0.0, atol=2e-6)


def test_two_token_example_by_hand():
    # Token 1: teacher p = (1/2, 1/2), student q = (1/4, 3/4); token 2: p = (3/4, 1/4), q = (1/2, 1/2).
    zt = jnp.array([[[0.0, 0.0], [math.log(3), 0.0]]])
    zs = jnp.array([[[0.0, math.log(3)], [0.0, 0.0]]])
    fkl = [0.5 * math.log(2) + 0.5 * math.log(2 / 3), 0.75 * math.log(1.5) + 0.25 * math.log(0.5)]
    rkl = [0.25 * math.log(0.5) + 0.75 * math.log(1.5), 0.5 * math.log(2 / 3) + 0.5 * math.log(2)]
    # JSD at beta 1/2 on token 1: m = (3/8, 5/8).
    jsd1 = 0.5 * (0.5 * math.log(0.5 / 0.375) + 0.5 * math.log(0.5 / 0.625))
    jsd1 += 0.5 * (0.25 * math.log(0.25 / 0.375) + 0.75 * math.log(0.75 / 0.625))
    np.testing.assert_allclose(np.asarray(token_divergence(zs, zt, beta=0.0))[0], fkl, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(token_divergence(zs, zt, beta=1.0))[0], rkl, rtol=1e-6)
    np.testing.assert_allclose(float(token_divergence(zs, zt, beta=0.5)[0, 0]), jsd1, rtol=1e-6)
    # The same through the chunked form: logits = h @ E^T with E = I (D = V = 2), one vocab row a slice.
    eye = jnp.eye(2)
    chunked = chunked_token_divergence(zs, eye, zt, eye, beta=0.0, chunk_size=1, vocab_chunk=1)
    np.testing.assert_allclose(np.asarray(chunked)[0], fkl, rtol=1e-6)


def _chunked_loss(beta, vocab_chunk, chunk_size, mask=MASK):
    def loss(h_s, e_s, h_t, e_t):
        div = chunked_token_divergence(
            h_s, e_s, h_t, e_t, beta=beta, temperature=1.5, chunk_size=chunk_size, vocab_chunk=vocab_chunk,
            student_softcap=4.0, teacher_softcap=5.0,
        )  # fmt: skip
        return masked_mean(div, mask)[0]

    return loss


def _reference_loss(beta, mask=MASK):
    def loss(h_s, e_s, h_t, e_t):
        div = token_divergence(_logits(h_s, e_s, 4.0), _logits(h_t, e_t, 5.0), beta=beta, temperature=1.5)
        return masked_mean(div, mask)[0]

    return loss


@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0])
@pytest.mark.parametrize(("vocab_chunk", "chunk_size"), [(None, 4), (8, 3), (1, 10)])
def test_gradients_equal_the_unchunked_reference(beta, vocab_chunk, chunk_size):
    args = _case(2)
    want_v, want_g = jax.value_and_grad(_reference_loss(beta), argnums=(0, 1))(*args)
    got_v, got_g = jax.jit(jax.value_and_grad(_chunked_loss(beta, vocab_chunk, chunk_size), argnums=(0, 1)))(
        *args
    )
    np.testing.assert_allclose(float(got_v), float(want_v), rtol=1e-5)
    for got, want in zip(got_g, want_g, strict=True):
        assert float(jnp.abs(want).max()) > 1e-4
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-4, atol=1e-6)


def _avals(jaxpr):
    """Every array shape in a closed jaxpr, nested sub-jaxprs (scan, remat, pjit, custom_vjp) included."""
    for eqn in jaxpr.eqns:
        for v in (*eqn.invars, *eqn.outvars):
            yield tuple(getattr(v.aval, "shape", ()))
        for p in eqn.params.values():
            for sub in p if isinstance(p, (list, tuple)) else (p,):
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    yield from _avals(inner)


def _largest(loss, args):
    shapes = list(_avals(jax.make_jaxpr(jax.value_and_grad(loss, argnums=(0, 1)))(*args).jaxpr))
    return max(shapes, key=lambda s: int(np.prod(s))), shapes


@pytest.mark.parametrize("beta", [0.0, 0.5])
def test_no_batch_time_vocab_array_in_the_traced_step(beta):
    # B*T*V = 4736 elements; the largest others are the [B*T, D] hidden states (1548) and [V, D] tables.
    b, t = 4, 32
    args, mask = _case(bt=(b, t)), jnp.ones((b, t))
    biggest, shapes = _largest(_chunked_loss(beta, vocab_chunk=8, chunk_size=3, mask=mask), args)
    assert (b, t, V) not in shapes and (b * t, V) not in shapes
    assert int(np.prod(biggest)) < b * t * V / 2, biggest
    # The check can fail: the unchunked form does hold [B, T, V].
    biggest, ref_shapes = _largest(_reference_loss(beta, mask), args)
    assert (b, t, V) in ref_shapes and int(np.prod(biggest)) >= b * t * V


def test_sparse_topk_with_the_whole_vocabulary_is_the_forward_kl():
    h_s, e_s, h_t, e_t = _case(3)
    ids, lps = teacher_topk(h_t, e_t, k=V, chunk_size=4)
    sparse = sparse_topk_kl(h_s, e_s, ids, lps, temperature=2.0, chunk_size=3, vocab_chunk=8)
    dense = token_divergence(_logits(h_s, e_s), _logits(h_t, e_t), beta=0.0, temperature=2.0)
    np.testing.assert_allclose(np.asarray(sparse), np.asarray(dense), rtol=1e-5, atol=1e-6)


def test_sparse_topk_against_numpy():
    h_s, e_s, h_t, e_t = _case(4)
    k = 5
    ids, lps = teacher_topk(h_t, e_t, k=k, chunk_size=4)
    zt = np.asarray(_logits(h_t, e_t), np.float64)
    log_p_full = zt - np.log(np.exp(zt).sum(-1, keepdims=True))
    want_ids = np.argsort(-log_p_full, axis=-1)[..., :k]
    np.testing.assert_array_equal(np.asarray(ids), want_ids)
    np.testing.assert_allclose(np.asarray(lps), np.take_along_axis(log_p_full, want_ids, -1), rtol=1e-5)
    zs = np.asarray(_logits(h_s, e_s), np.float64)
    log_q = np.take_along_axis(zs - np.log(np.exp(zs).sum(-1, keepdims=True)), want_ids, -1)
    p = np.exp(np.asarray(lps, np.float64))
    p /= p.sum(-1, keepdims=True)
    want = (p * (np.log(p) - log_q)).sum(-1)
    got = sparse_topk_kl(h_s, e_s, ids, lps, chunk_size=4, vocab_chunk=6)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5)
    assert (want > 0).all()


def test_beta_outside_the_unit_interval_is_refused():
    h_s, e_s, h_t, e_t = _case()
    with pytest.raises(ValueError, match="beta"):
        chunked_token_divergence(h_s, e_s, h_t, e_t, beta=1.5)
