"""PPO policy/value, GRPO and DPO losses: analytic anchors, hand cases and parity with TRL.

TRL parity calls TRL's own loss code (DPOTrainer._compute_loss, GRPOTrainer._compute_loss from the
installed trl 1.16) on a duck-typed stand-in for the trainer: the model forward is replaced by a
function returning the per-token log-probs we chose, so no model, tokenizer or accelerator is built.
"""

import collections
import math
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from align.rl.losses import aggregate, clipped_surrogate, dpo_loss, grpo_loss, ppo_policy_loss, ppo_value_loss

LN2 = math.log(2)


# ---------------------------------------------------------------------------------------------- PPO


def test_ppo_ratio_one_is_the_unclipped_surrogate_with_zero_kl():
    rng = np.random.default_rng(0)
    logp = jnp.asarray(rng.normal(size=(3, 4)), jnp.float32)
    adv = jnp.asarray(rng.normal(size=(3, 4)), jnp.float32)
    mask = jnp.array([[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1]])
    loss, metrics = jax.jit(ppo_policy_loss)(logp, logp, adv, mask)
    expected = -np.sum(np.asarray(adv) * np.asarray(mask)) / 9
    np.testing.assert_allclose(loss, expected, rtol=1e-6)
    assert float(metrics["clip_frac"]) == 0.0 and float(metrics["approx_kl"]) == 0.0
    np.testing.assert_allclose(metrics["ratio_mean"], 1.0)
    # d rho / d logp = rho = 1, so the gradient is the policy-gradient -A * m / sum(m).
    grad = jax.grad(lambda lp: ppo_policy_loss(lp, jax.lax.stop_gradient(logp), adv, mask)[0])(logp)
    np.testing.assert_allclose(grad, -np.asarray(adv) * np.asarray(mask) / 9, rtol=1e-6)


def test_ppo_clip_fraction_and_loss_by_hand():
    ratio = jnp.array([[1.5, 0.5, 1.1, 0.7]])
    adv = jnp.array([[1.0, 1.0, -1.0, -1.0]])
    loss, metrics = ppo_policy_loss(jnp.log(ratio), jnp.zeros((1, 4)), adv, jnp.ones((1, 4)), 0.2)
    # token 0: A > 0, rho 1.5 > 1.2      -> clipped, loss -1.2
    # token 1: A > 0, rho 0.5 < 0.8      -> max(-0.5, -0.8) = -0.5 keeps the unclipped branch
    # token 2: A < 0, rho 1.1 in range   -> 1.1
    # token 3: A < 0, rho 0.7 < 0.8      -> max(0.7, 0.8) = 0.8, clipped
    np.testing.assert_allclose(loss, (-1.2 - 0.5 + 1.1 + 0.8) / 4, rtol=1e-6)
    np.testing.assert_allclose(metrics["clip_frac"], 0.5)
    # Clip-higher: upper bound 1 + 0.6 frees token 0 (-1.5), token 3 stays clipped.
    loss_hi, m_hi = ppo_policy_loss(
        jnp.log(ratio), jnp.zeros((1, 4)), adv, jnp.ones((1, 4)), 0.2, clip_eps_high=0.6
    )
    np.testing.assert_allclose(loss_hi, (-1.5 - 0.5 + 1.1 + 0.8) / 4, rtol=1e-6)
    np.testing.assert_allclose(m_hi["clip_frac"], 0.25)


def test_clipped_tokens_get_zero_gradient():
    log_ratio = jnp.log(jnp.array([1.5, 0.5, 1.1, 0.7]))
    adv = jnp.array([1.0, 1.0, -1.0, -1.0])
    grad = jax.grad(lambda lr: jnp.sum(clipped_surrogate(lr, adv, 0.2, 0.2)[0]))(log_ratio)
    np.testing.assert_allclose(grad, [0.0, -0.5, 1.1, 0.0], rtol=1e-6)


def test_ppo_value_loss_by_hand():
    values, old = jnp.array([[1.0, 2.0, 5.0]]), jnp.array([[0.5, 2.0, 0.0]])
    returns, mask = jnp.array([[2.0, 0.0, 0.0]]), jnp.array([[1, 1, 0]])
    loss, metrics = jax.jit(ppo_value_loss)(values, old, returns, mask, 0.2)
    # token 0: V_clip = 0.5 + 0.2 = 0.7, max((1-2)^2, (0.7-2)^2) = 1.69 (clipped); token 1: 4.
    np.testing.assert_allclose(loss, 0.5 * (1.69 + 4.0) / 2, rtol=1e-6)
    np.testing.assert_allclose(metrics["value_clip_frac"], 0.5)
    np.testing.assert_allclose(metrics["value_mean"], 1.5)


def test_aggregation_modes_by_hand():
    per_token = jnp.array([[1.0, 3.0, 0.0], [6.0, 0.0, 0.0]])
    mask = jnp.array([[1, 1, 0], [1, 0, 0]])
    np.testing.assert_allclose(aggregate(per_token, mask, "token"), 10.0 / 3)
    np.testing.assert_allclose(aggregate(per_token, mask, "sequence"), (2.0 + 6.0) / 2)
    with pytest.raises(ValueError, match="aggregation"):
        aggregate(per_token, mask, "sum")


def test_shape_errors_name_the_fields():
    with pytest.raises(ValueError, match="old_logp"):
        ppo_policy_loss(jnp.zeros((2, 3)), jnp.zeros((2, 4)), jnp.zeros((2, 3)), jnp.ones((2, 3)))
    with pytest.raises(ValueError, match="advantages"):
        grpo_loss(jnp.zeros((2, 3)), jnp.zeros((2, 3)), None, jnp.zeros((3,)), jnp.ones((2, 3)))
    with pytest.raises(ValueError, match="ref_logp"):
        grpo_loss(jnp.zeros((2, 3)), jnp.zeros((2, 3)), None, jnp.zeros((2,)), jnp.ones((2, 3)), beta=0.1)


# --------------------------------------------------------------------------------------------- GRPO


def test_grpo_on_policy_equals_minus_token_mean_advantage_and_zero_kl():
    logp = jnp.array([[-1.0, -2.0, -3.0], [-0.5, -0.5, -0.5]])
    mask = jnp.array([[1, 1, 1], [1, 0, 0]])
    adv = jnp.array([1.0, -2.0])
    fn = jax.jit(grpo_loss, static_argnames=("aggregation",))
    loss, metrics = fn(logp, logp, logp, adv, mask, 0.2, 0.04, aggregation="token")
    np.testing.assert_allclose(loss, -(3 * 1.0 - 2.0) / 4, rtol=1e-6)
    assert float(metrics["kl"]) == 0.0 and float(metrics["clip_frac"]) == 0.0
    loss_seq, _ = fn(logp, logp, logp, adv, mask, 0.2, 0.04, aggregation="sequence")
    np.testing.assert_allclose(loss_seq, -(1.0 - 2.0) / 2, rtol=1e-6)


class _Accelerator:
    """Single-process stand-in for accelerate.Accelerator (gather / reduce are identities)."""

    device = "cpu"
    num_processes = 1
    sync_gradients = True

    def gather(self, x):
        return x

    gather_for_metrics = gather

    def reduce(self, x, reduction="sum"):
        return x


def _metric_store():
    return collections.defaultdict(lambda: collections.defaultdict(list))


def _trl_grpo(torch, logp, old, ref, adv, mask, eps, beta, loss_type):
    """TRL's GRPOTrainer._compute_loss (trl/trainer/grpo_trainer.py) on given per-token log-probs."""
    from trl.trainer.grpo_trainer import GRPOTrainer

    logp = torch.tensor(logp, requires_grad=True)
    trainer = types.SimpleNamespace(
        _get_per_token_logps_and_entropies=lambda *a, **k: (logp, torch.zeros_like(logp), None),
        top_entropy_quantile=1.0,
        off_policy_mask_threshold=None,
        importance_sampling_level="token",
        beta=beta,
        args=types.SimpleNamespace(use_bias_correction_kl=False, delta=None),
        loss_type=loss_type,
        epsilon_low=eps,
        epsilon_high=eps,
        use_vllm=False,
        vllm_importance_sampling_correction=False,
        model=types.SimpleNamespace(training=True),
        current_gradient_accumulation_steps=1,
        _entropy_bonus_enabled=False,
        aux_loss_enabled=False,
        _metrics=_metric_store(),
        accelerator=_Accelerator(),
    )
    b, t = mask.shape
    inputs = {
        "prompt_ids": torch.zeros((b, 2), dtype=torch.long),
        "prompt_mask": torch.ones((b, 2), dtype=torch.long),
        "completion_ids": torch.zeros((b, t), dtype=torch.long),
        "completion_mask": torch.tensor(mask),
        "advantages": torch.tensor(adv),
        "old_per_token_logps": torch.tensor(old),
        "ref_per_token_logps": torch.tensor(ref),
    }
    loss = GRPOTrainer._compute_loss(trainer, None, inputs)
    loss.backward()
    metrics = {k: v[-1] for k, v in trainer._metrics["train"].items()}
    return loss.item(), metrics, logp.grad.numpy()


@pytest.mark.parametrize(("aggregation", "trl_loss_type"), [("sequence", "grpo"), ("token", "bnpo")])
@pytest.mark.parametrize("beta", [0.0, 0.04])
def test_grpo_equals_trl(aggregation, trl_loss_type, beta):
    torch = pytest.importorskip("torch")
    pytest.importorskip("trl")
    rng = np.random.default_rng(1)
    mask = np.array([[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1]], np.int64)
    logp = (rng.normal(size=(3, 4)) * 0.3 - 1).astype(np.float32)
    old = (logp + rng.normal(size=(3, 4)) * 0.3).astype(np.float32)  # some ratios leave [0.8, 1.2]
    ref = (logp + rng.normal(size=(3, 4)) * 0.3).astype(np.float32)
    adv = np.array([1.0, -0.5, 0.3], np.float32)
    trl_loss, trl_metrics, trl_grad = _trl_grpo(torch, logp, old, ref, adv, mask, 0.2, beta, trl_loss_type)
    assert trl_metrics["clip_ratio/region_mean"] > 0  # the case exercises clipping

    def ours(lp):
        return grpo_loss(lp, old, ref, adv, mask, 0.2, beta, aggregation)

    (loss, metrics), grad = jax.value_and_grad(ours, has_aux=True)(jnp.asarray(logp))
    np.testing.assert_allclose(float(loss), trl_loss, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(grad, trl_grad, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(metrics["clip_frac"], trl_metrics["clip_ratio/region_mean"], rtol=1e-6)
    if beta:
        np.testing.assert_allclose(metrics["kl"], trl_metrics["kl"], rtol=1e-6)


# ---------------------------------------------------------------------------------------------- DPO


def test_dpo_is_ln2_when_policy_equals_reference():
    lp_c, lp_r = jnp.array([-3.0, -7.0, -1.0]), jnp.array([-2.0, -9.0, -4.0])
    loss, metrics = jax.jit(dpo_loss)(lp_c, lp_r, lp_c, lp_r, 0.1)
    np.testing.assert_allclose(loss, LN2, rtol=1e-6)
    assert float(metrics["margin"]) == 0.0 and float(metrics["accuracy"]) == 0.0
    # dL/d log pi(y_c) = -beta * sigmoid(0) / B per example.
    grad = jax.grad(lambda c: dpo_loss(c, lp_r, lp_c, lp_r, 0.1)[0])(lp_c)
    np.testing.assert_allclose(grad, np.full(3, -0.1 * 0.5 / 3), rtol=1e-6)
    loss_ipo, _ = dpo_loss(lp_c, lp_r, lp_c, lp_r, 0.1, "ipo")
    np.testing.assert_allclose(loss_ipo, (1 / (2 * 0.1)) ** 2, rtol=1e-6)  # (0 - 1/(2 beta))^2


def test_dpo_label_smoothing_by_hand():
    # h = (0 - -1) - (0 - 1) = 2, beta h = 1; cDPO: -(1 - eps) log s(1) - eps log s(-1).
    loss, metrics = dpo_loss(
        jnp.array([0.0]), jnp.array([0.0]), jnp.array([-1.0]), jnp.array([1.0]), 0.5, label_smoothing=0.1
    )
    softplus = lambda x: math.log1p(math.exp(x))  # -log sigmoid(x) = softplus(-x)
    np.testing.assert_allclose(loss, 0.9 * softplus(-1.0) + 0.1 * softplus(1.0), rtol=1e-6)
    np.testing.assert_allclose(metrics["rewards/chosen"], 0.5)
    np.testing.assert_allclose(metrics["rewards/rejected"], -0.5)
    np.testing.assert_allclose(metrics["accuracy"], 1.0)
    np.testing.assert_allclose(metrics["margin"], 1.0)
    with pytest.raises(ValueError, match="loss_type"):
        dpo_loss(jnp.zeros(1), jnp.zeros(1), jnp.zeros(1), jnp.zeros(1), 0.1, "hinge")


def _trl_dpo(torch, token_lp, completion_mask, ref_chosen, ref_rejected, beta, loss_type):
    """TRL's DPOTrainer._compute_loss (trl/trainer/dpo_trainer.py) with precomputed reference log-probs.

    `token_lp` [2B, L-1] are the fused-head per-token log-probs of the [chosen; rejected] batch.
    """
    from trl.trainer.dpo_trainer import DPOTrainer

    per_token = torch.tensor(token_lp)

    def model(**_):
        zeros = torch.zeros_like(per_token)
        return types.SimpleNamespace(
            log_probs=per_token, entropy=zeros, mean_logits=zeros, is_top1=zeros.bool()
        )

    model.training = True
    trainer = types.SimpleNamespace(
        model=model,
        accelerator=_Accelerator(),
        aux_loss_enabled=False,
        ld_alpha=None,
        precompute_ref_logps=True,
        f_divergence_type="reverse_kl",
        loss_types=[loss_type],
        loss_weights=[1.0],
        beta=beta,
        use_weighting=False,
        label_smoothing=0.0,
        _metrics=_metric_store(),
        _total_train_tokens=0,
        _tp_size=1,
    )
    cm = torch.tensor(completion_mask)
    inputs = {
        "input_ids": torch.zeros(cm.shape, dtype=torch.long),
        "attention_mask": torch.ones_like(cm),
        "completion_mask": cm,
        "ref_chosen_logps": torch.tensor(ref_chosen),
        "ref_rejected_logps": torch.tensor(ref_rejected),
    }
    loss = DPOTrainer._compute_loss(trainer, model, inputs, False)
    return loss.item(), {k: v[-1] for k, v in trainer._metrics["train"].items()}


@pytest.mark.parametrize("loss_type", ["sigmoid", "ipo"])
def test_dpo_equals_trl(loss_type):
    torch = pytest.importorskip("torch")
    pytest.importorskip("trl")
    rng = np.random.default_rng(2)
    b = 3
    completion_mask = np.array([[0, 0, 1, 1, 1, 0], [0, 1, 1, 1, 1, 1], [0, 0, 0, 1, 0, 0]] * 2, np.int64)
    shift = completion_mask[:, 1:]
    token_lp = ((rng.normal(size=shift.shape) * 0.5 - 1) * shift).astype(np.float32)
    ref_c = np.array([-3.0, -4.0, -1.0], np.float32)
    ref_r = np.array([-2.0, -5.0, -1.5], np.float32)
    beta = 0.1
    trl_loss, trl_m = _trl_dpo(torch, token_lp, completion_mask, ref_c, ref_r, beta, loss_type)

    seq_lp = token_lp.sum(-1)  # = sequence_logprob(token_lp, shift)
    lengths = shift.sum(-1).astype(np.float32)
    extra = {"chosen_lengths": lengths[:b], "rejected_lengths": lengths[b:]} if loss_type == "ipo" else {}
    loss, m = dpo_loss(seq_lp[:b], seq_lp[b:], ref_c, ref_r, beta, loss_type, **extra)
    np.testing.assert_allclose(float(loss), trl_loss, rtol=1e-6)
    for ours, theirs in [
        ("rewards/chosen", "rewards/chosen"),
        ("rewards/rejected", "rewards/rejected"),
        ("accuracy", "rewards/accuracies"),
        ("margin", "rewards/margins"),
    ]:
        np.testing.assert_allclose(float(m[ours]), trl_m[theirs], rtol=1e-5, atol=1e-7, err_msg=ours)
