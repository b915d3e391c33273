"""SFT negative log-likelihood: hand values and parity with the torch / transformers loss TRL uses."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from align.training.logprobs import token_logprobs
from align.training.losses import nll_loss

IGNORE = -100


def test_nll_by_hand_is_a_token_mean_over_the_batch():
    token_lp = jnp.array([[-1.0, -2.0, -3.0], [-4.0, -5.0, -6.0]])
    mask = jnp.array([[0, 1, 1], [1, 0, 0]])
    loss, metrics = nll_loss(token_lp, mask)
    # (2 + 3 + 4) / 3 tokens, not the mean of per-row means (2.5 + 4) / 2.
    np.testing.assert_allclose(loss, 3.0)
    np.testing.assert_allclose(metrics["n_tokens"], 3.0)
    assert "accuracy" not in metrics


def test_nll_empty_mask_is_zero_not_nan():
    loss, metrics = jax.jit(nll_loss)(jnp.full((2, 3), -1.0), jnp.zeros((2, 3)))
    assert float(loss) == 0.0 and float(metrics["n_tokens"]) == 0.0


def test_nll_accuracy_by_hand():
    logits = jnp.array([[[3.0, 0.0], [0.0, 3.0], [3.0, 0.0]]])  # argmax 0, 1, 0
    targets = jnp.array([[0, 0, 1]])
    mask = jnp.array([[1, 1, 0]])
    _, metrics = nll_loss(token_logprobs(logits, targets), mask, logits=logits, targets=targets)
    np.testing.assert_allclose(metrics["accuracy"], 0.5)  # right, wrong, (masked)
    with pytest.raises(ValueError, match="both"):
        nll_loss(jnp.zeros((1, 3)), mask, logits=logits)


def _sft_batch(seed=0, b=3, length=7, v=13):
    """Random logits over a full sequence and HF-style labels: -100 on prompt and padding."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(b, length, v)).astype(np.float32) * 3
    labels = rng.integers(0, v, size=(b, length))
    labels[0, :3] = IGNORE  # prompt
    labels[1, :2] = IGNORE
    labels[1, 5:] = IGNORE  # right padding
    labels[2, :6] = IGNORE  # a single supervised token
    return logits, labels


def _ours(logits, labels):
    """Shift once (logits at t score the label at t + 1), then the masked token mean."""
    targets = labels[:, 1:]
    mask = targets != IGNORE
    token_lp = token_logprobs(logits[:, :-1], jnp.where(mask, targets, 0))
    return nll_loss(token_lp, mask)


def test_nll_equals_torch_cross_entropy_and_transformers_causal_lm_loss():
    torch = pytest.importorskip("torch")
    loss_utils = pytest.importorskip("transformers.loss.loss_utils")
    logits, labels = _sft_batch()
    loss, metrics = jax.jit(_ours)(logits, labels)

    # What TRL's SFTTrainer reduces to (trl/trainer/sft_trainer.py compute_loss: -log_probs.sum() /
    # label_mask.sum()), written as the classic shifted cross-entropy with ignore_index=-100.
    t_logits, t_labels = torch.tensor(logits), torch.tensor(labels)
    ce = torch.nn.functional.cross_entropy(
        t_logits[:, :-1].reshape(-1, logits.shape[-1]), t_labels[:, 1:].reshape(-1), ignore_index=IGNORE
    )
    # transformers' ForCausalLMLoss, the model-side loss (shifts internally).
    hf = loss_utils.ForCausalLMLoss(t_logits, t_labels, vocab_size=logits.shape[-1])
    np.testing.assert_allclose(float(loss), ce.item(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(float(loss), hf.item(), rtol=1e-6, atol=1e-6)
    assert float(metrics["n_tokens"]) == int((labels[:, 1:] != IGNORE).sum())


def test_nll_gradient_equals_torch():
    torch = pytest.importorskip("torch")
    logits, labels = _sft_batch(seed=1)
    grad = jax.grad(lambda z: _ours(z, jnp.asarray(labels))[0])(jnp.asarray(logits))
    t_logits = torch.tensor(logits, requires_grad=True)
    torch.nn.functional.cross_entropy(
        t_logits[:, :-1].reshape(-1, logits.shape[-1]),
        torch.tensor(labels)[:, 1:].reshape(-1),
        ignore_index=IGNORE,
    ).backward()
    np.testing.assert_allclose(grad, t_logits.grad.numpy(), rtol=1e-5, atol=1e-7)
    assert float(jnp.abs(grad[:, -1]).max()) == 0.0  # the last position predicts nothing


def test_nll_at_uniform_logits_is_log_vocab():
    v = 9
    loss, _ = nll_loss(token_logprobs(jnp.zeros((2, 4, v)), jnp.ones((2, 4), jnp.int32)), jnp.ones((2, 4)))
    np.testing.assert_allclose(loss, math.log(v), rtol=1e-6)
