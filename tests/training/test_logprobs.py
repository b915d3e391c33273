"""Token log-probs, entropy, sequence log-probs and the chunked (no [B, T, V]) variant."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from align.model.scoring import streamed_token_logprobs
from align.training.logprobs import (
    chunked_token_logprobs,
    sequence_logprob,
    token_entropy,
    token_logprobs,
)

B, T, D, V = 2, 5, 8, 11


def _inputs(seed=0):
    rng = np.random.default_rng(seed)
    hidden = jnp.asarray(rng.normal(size=(B, T, D)), jnp.float32)
    unembed = jnp.asarray(rng.normal(size=(V, D)), jnp.float32)
    targets = jnp.asarray(rng.integers(0, V, size=(B, T)), jnp.int32)
    return hidden, unembed, targets


def _naive(hidden, unembed, targets, softcap=None, temperature=1.0):
    logits = jnp.einsum("BTD,VD->BTV", hidden, unembed)
    if softcap is not None:
        logits = softcap * jnp.tanh(logits / softcap)
    return token_logprobs(logits, targets, temperature=temperature), token_entropy(
        logits, temperature=temperature
    )


def test_token_logprobs_by_hand():
    # logits [0, ln 2, ln 3]: softmax = [1, 2, 3] / 6.
    logits = jnp.log(jnp.array([[[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]]]))
    lp = token_logprobs(logits, jnp.array([[2, 0]]))
    np.testing.assert_allclose(lp, [[math.log(3 / 6), math.log(1 / 6)]], rtol=1e-6)
    # Temperature 2 on logits ln[1, 4] gives softmax [1, 2] / 3.
    lp_t = token_logprobs(jnp.log(jnp.array([[[1.0, 4.0]]])), jnp.array([[1]]), temperature=2.0)
    np.testing.assert_allclose(lp_t, [[math.log(2 / 3)]], rtol=1e-6)


def test_token_logprobs_runs_in_float32_for_bfloat16_logits():
    logits = jnp.asarray(np.random.default_rng(1).normal(size=(1, 3, 7)), jnp.bfloat16)
    lp = token_logprobs(logits, jnp.array([[0, 3, 6]]))
    assert lp.dtype == jnp.float32
    ref = jax.nn.log_softmax(logits.astype(jnp.float32))[0, jnp.arange(3), jnp.array([0, 3, 6])]
    np.testing.assert_allclose(lp[0], ref, rtol=1e-6)


def test_token_logprobs_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="token_logprobs"):
        token_logprobs(jnp.zeros((2, 3, 5)), jnp.zeros((2, 4), jnp.int32))


def test_token_entropy_uniform_onehot_and_masked_vocab():
    uniform = jnp.zeros((1, 1, 8))
    np.testing.assert_allclose(token_entropy(uniform), [[math.log(8)]], rtol=1e-6)
    # -inf entries (a masked vocabulary) contribute 0, not NaN; two equal survivors give ln 2.
    masked = jnp.array([[[0.0, 0.0, -jnp.inf, -jnp.inf]]])
    np.testing.assert_allclose(token_entropy(masked), [[math.log(2)]], rtol=1e-6)
    peaked = jnp.array([[[1e4, 0.0, 0.0]]])
    np.testing.assert_allclose(token_entropy(peaked), [[0.0]], atol=1e-6)


def test_sequence_logprob_sums_masked_tokens():
    lp = jnp.array([[-1.0, -2.0, -3.0], [-0.5, -0.25, -9.0]])
    mask = jnp.array([[0, 1, 1], [1, 1, 0]])
    np.testing.assert_allclose(sequence_logprob(lp, mask), [-5.0, -0.75])


@pytest.mark.parametrize("chunk_size", [1, 3, 64])  # one token, a ragged last tile, one tile
@pytest.mark.parametrize("softcap", [None, 2.0])
def test_chunked_equals_naive(chunk_size, softcap):
    hidden, unembed, targets = _inputs()
    lp_ref, ent_ref = _naive(hidden, unembed, targets, softcap, temperature=0.7)
    fn = jax.jit(
        lambda h, w, t: chunked_token_logprobs(
            h, w, t, chunk_size=chunk_size, final_softcap=softcap, temperature=0.7, return_entropy=True
        )
    )
    lp, ent = fn(hidden, unembed, targets)
    np.testing.assert_allclose(lp, lp_ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ent, ent_ref, rtol=1e-5, atol=1e-5)
    lp_only = chunked_token_logprobs(
        hidden, unembed, targets, chunk_size=chunk_size, final_softcap=softcap, temperature=0.7
    )
    np.testing.assert_allclose(lp_only, lp_ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("softcap", [None, 3.0])
def test_chunked_gradients_equal_naive(softcap):
    hidden, unembed, targets = _inputs(seed=2)
    w_lp = jnp.asarray(np.random.default_rng(3).normal(size=(B, T)), jnp.float32)
    w_ent = jnp.asarray(np.random.default_rng(4).normal(size=(B, T)), jnp.float32)

    def objective(lp_ent):
        lp, ent = lp_ent
        return jnp.sum(lp * w_lp) + jnp.sum(ent * w_ent)

    naive_grad = jax.grad(lambda h, w: objective(_naive(h, w, targets, softcap)), argnums=(0, 1))
    chunked_grad = jax.jit(
        jax.grad(
            lambda h, w: objective(
                chunked_token_logprobs(
                    h, w, targets, chunk_size=3, final_softcap=softcap, return_entropy=True
                )
            ),
            argnums=(0, 1),
        )
    )
    for g, g_ref in zip(chunked_grad(hidden, unembed), naive_grad(hidden, unembed)):
        np.testing.assert_allclose(g, g_ref, rtol=1e-4, atol=1e-5)


def _all_avals(jaxpr):
    """Every intermediate aval of a closed jaxpr, recursing into scan / checkpoint / jit bodies."""
    for eqn in jaxpr.eqns:
        for v in eqn.outvars:
            yield v.aval
        for param in eqn.params.values():
            subs = param if isinstance(param, (list, tuple)) else [param]
            for sub in subs:
                inner = getattr(sub, "jaxpr", None)
                if inner is not None and hasattr(inner, "eqns"):
                    yield from _all_avals(inner)
                elif hasattr(sub, "eqns"):
                    yield from _all_avals(sub)


def test_chunked_never_builds_full_logits_forward_or_backward():
    b, t, d, v, c = 2, 64, 4, 1000, 8  # full logits: 128 000 floats; one tile: 8 000
    hidden = jnp.ones((b, t, d))
    unembed = jnp.ones((v, d))
    targets = jnp.zeros((b, t), jnp.int32)

    def loss(h, w):
        lp, ent = chunked_token_logprobs(h, w, targets, chunk_size=c, return_entropy=True)
        return jnp.sum(lp) + jnp.sum(ent)

    jaxpr = jax.make_jaxpr(jax.value_and_grad(loss, argnums=(0, 1)))(hidden, unembed).jaxpr
    sizes = [math.prod(a.shape) for a in _all_avals(jaxpr) if hasattr(a, "shape")]
    assert max(sizes) < b * t * v / 4, f"largest intermediate has {max(sizes)} elements"
    assert max(sizes) >= c * v  # the walk did reach the [C, V] tile inside the scan body
    # The naive formulation does build it: the check above can fail.
    naive = jax.make_jaxpr(jax.value_and_grad(lambda h, w: jnp.sum(_naive(h, w, targets)[0]), argnums=(0, 1)))
    assert max(math.prod(a.shape) for a in _all_avals(naive(hidden, unembed).jaxpr)) >= b * t * v


def test_chunked_matches_trl_chunked_logprob_kernel():
    torch = pytest.importorskip("torch")
    trl_kernels = pytest.importorskip("trl.kernels")
    hidden, unembed, targets = _inputs(seed=5)
    softcap = 2.5
    # trl/kernels/chunked_logprob.py ChunkedLogProbFunction.forward(hidden [N, H], weight [V, H], bias,
    # targets [N], temperature, chunk_size, final_logit_softcapping, logit_scale, outputs)
    lp_trl, ent_trl, *_ = trl_kernels.ChunkedLogProbFunction.apply(
        torch.tensor(np.asarray(hidden).reshape(B * T, D)),
        torch.tensor(np.asarray(unembed)),
        None,
        torch.tensor(np.asarray(targets).reshape(-1), dtype=torch.long),
        1.0,
        4,
        softcap,
        1.0,
        ("entropy",),
    )
    lp, ent = chunked_token_logprobs(
        hidden, unembed, targets, chunk_size=3, final_softcap=softcap, return_entropy=True
    )
    np.testing.assert_allclose(lp.reshape(-1), lp_trl.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ent.reshape(-1), ent_trl.numpy(), rtol=1e-5, atol=1e-5)


def test_chunked_rejects_bad_arguments():
    hidden, unembed, targets = _inputs()
    with pytest.raises(ValueError, match="chunk_size"):
        chunked_token_logprobs(hidden, unembed, targets, chunk_size=0)
    with pytest.raises(ValueError, match="unembed"):
        chunked_token_logprobs(hidden, unembed[:, :3], targets, chunk_size=2)


# one entry, a ragged last block (11 = 2*4 + 3), one block
@pytest.mark.parametrize("vocab_chunk", [1, 4, 11, 64])
@pytest.mark.parametrize("softcap", [None, 2.0])
def test_streamed_equals_naive(vocab_chunk, softcap):
    hidden, unembed, targets = _inputs(seed=1)
    lp_ref, _ = _naive(hidden, unembed, targets, softcap, temperature=0.7)
    logits = jnp.einsum("BTD,VD->BTV", hidden, unembed)
    if softcap is not None:
        logits = softcap * jnp.tanh(logits / softcap)
    fn = jax.jit(
        lambda h, w, t: streamed_token_logprobs(
            h, w, t, vocab_chunk=vocab_chunk, final_softcap=softcap, temperature=0.7
        )
    )
    lp, is_max = fn(hidden.reshape(B * T, D), unembed, targets.reshape(B * T))
    np.testing.assert_allclose(lp, lp_ref.reshape(-1), rtol=1e-5, atol=1e-5)
    want = jnp.argmax(logits, axis=-1).reshape(-1) == targets.reshape(-1)
    assert is_max.tolist() == want.tolist()


def test_streamed_counts_a_tied_maximum_as_most_likely_and_reads_no_full_logits():
    d, v = 4, 1000
    unembed = jnp.zeros((v, d)).at[7].set(1.0).at[900].set(1.0)  # entries 7 and 900 tie for the max
    hidden = jnp.ones((3, d))
    targets = jnp.array([7, 900, 8], jnp.int32)
    lp, is_max = streamed_token_logprobs(hidden, unembed, targets, vocab_chunk=64)
    assert is_max.tolist() == [True, True, False]
    lse = math.log(2 * math.exp(4.0) + (v - 2))
    np.testing.assert_allclose(lp, [4.0 - lse, 4.0 - lse, -lse], rtol=1e-6)
    jaxpr = jax.make_jaxpr(lambda h, w: streamed_token_logprobs(h, w, targets, vocab_chunk=64))(
        hidden, unembed
    )
    sizes = [math.prod(a.shape) for a in _all_avals(jaxpr.jaxpr) if hasattr(a, "shape")]
    others = [s for s in sizes if s != v * d]  # all but the table itself
    assert 3 * 64 <= max(others) < 3 * v / 4  # the [C, Vc] blocks were reached; no [C, V] logits exist


def test_streamed_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="do not fit"):
        streamed_token_logprobs(jnp.ones((3, 4)), jnp.ones((10, 4)), jnp.zeros((2,), jnp.int32))
