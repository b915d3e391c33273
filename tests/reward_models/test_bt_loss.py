"""Bradley-Terry reward-model loss: hand values, symmetry, and parity with TRL's RewardTrainer."""

import collections
import math
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from reward_models.losses import bradley_terry_loss, pairwise_accuracy


def _softplus(x):
    return math.log1p(math.exp(x))  # -log sigmoid(x) = softplus(-x)


def test_bt_by_hand():
    loss, metrics = jax.jit(bradley_terry_loss)(jnp.array([1.0, 0.0]), jnp.array([0.0, 0.0]))
    np.testing.assert_allclose(loss, (_softplus(-1.0) + math.log(2)) / 2, rtol=1e-6)
    np.testing.assert_allclose(metrics["accuracy"], 0.5)  # the tie counts as wrong
    np.testing.assert_allclose(metrics["margin"], 0.5)
    np.testing.assert_allclose(metrics["reward_mean"], 0.25)


def test_bt_margin_and_centering_by_hand():
    r_c, r_r = jnp.array([2.0]), jnp.array([1.0])
    loss, _ = bradley_terry_loss(r_c, r_r, margin=jnp.array([1.0]))
    np.testing.assert_allclose(loss, math.log(2), rtol=1e-6)  # 2 - 1 - 1 = 0
    loss_c, _ = bradley_terry_loss(r_c, r_r, center_coef=0.01)
    np.testing.assert_allclose(loss_c, _softplus(-1.0) + 0.01 * 9.0, rtol=1e-6)


def test_bt_swapping_the_pair_changes_the_loss_by_the_margin():
    # -log s(d) - (-log s(-d)) = -d for each pair: the loss is not symmetric, its gradient is.
    rng = np.random.default_rng(0)
    r_c, r_r = jnp.asarray(rng.normal(size=5)), jnp.asarray(rng.normal(size=5))
    forward, _ = bradley_terry_loss(r_c, r_r)
    backward, _ = bradley_terry_loss(r_r, r_c)
    np.testing.assert_allclose(forward - backward, -jnp.mean(r_c - r_r), rtol=1e-5)
    g_c, g_r = jax.grad(lambda c, r: bradley_terry_loss(c, r)[0], argnums=(0, 1))(r_c, r_r)
    np.testing.assert_allclose(g_c, -g_r, rtol=1e-6)
    assert bool(jnp.all(g_c < 0))  # raising the chosen reward always lowers the loss


def test_pairwise_accuracy_on_a_separable_set():
    r_c = jnp.array([3.0, 2.0, 1.0, 0.5])
    r_r = jnp.array([0.0, 2.5, 0.0, 0.5])
    np.testing.assert_allclose(pairwise_accuracy(r_c, r_r), 0.5)


def test_bt_rejects_bad_shapes():
    with pytest.raises(ValueError, match="r_rejected"):
        bradley_terry_loss(jnp.zeros(3), jnp.zeros(2))


class _Accelerator:
    def gather_for_metrics(self, x):
        return x

    gather = gather_for_metrics


@pytest.mark.parametrize(("use_margin", "center"), [(False, None), (True, None), (True, 0.01)])
def test_bt_equals_trl_reward_trainer(use_margin, center):
    torch = pytest.importorskip("torch")
    reward_trainer = pytest.importorskip("trl.trainer.reward_trainer")
    rng = np.random.default_rng(1)
    r_c = rng.normal(size=6).astype(np.float32)
    r_r = rng.normal(size=6).astype(np.float32)
    margin = rng.uniform(0, 1, size=6).astype(np.float32)
    # trl/trainer/reward_trainer.py RewardTrainer.compute_loss: the model scores the batch
    # [chosen; rejected] and returns logits [2B, 1].
    logits = torch.tensor(np.concatenate([r_c, r_r]))[:, None]
    model = lambda **_: types.SimpleNamespace(logits=logits)
    model.training = True
    trainer = types.SimpleNamespace(
        model=model,
        args=types.SimpleNamespace(center_rewards_coefficient=center),
        accelerator=_Accelerator(),
        _metrics=collections.defaultdict(lambda: collections.defaultdict(list)),
        _total_train_tokens=0,
        _tp_size=1,
    )
    inputs = {"attention_mask": torch.ones((12, 4), dtype=torch.long)}
    if use_margin:
        inputs["margin"] = torch.tensor(margin)
    trl_loss = reward_trainer.RewardTrainer.compute_loss(trainer, model, inputs).item()
    trl_metrics = {k: v[-1] for k, v in trainer._metrics["train"].items()}

    loss, metrics = bradley_terry_loss(
        jnp.asarray(r_c),
        jnp.asarray(r_r),
        margin=jnp.asarray(margin) if use_margin else None,
        center_coef=center or 0.0,
    )
    np.testing.assert_allclose(float(loss), trl_loss, rtol=1e-6)
    np.testing.assert_allclose(float(metrics["accuracy"]), trl_metrics["accuracy"], rtol=1e-6)
    np.testing.assert_allclose(float(metrics["margin"]), trl_metrics["margin"], rtol=1e-5)
    np.testing.assert_allclose(
        float(metrics["reward_mean"]), trl_metrics["mean_reward"], rtol=1e-5, atol=1e-7
    )
