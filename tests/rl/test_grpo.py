"""GRPO: group layout and advantages on a real rollout, the first-update anchor, and a toy task
it must learn."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from align.data import DataOrder, batches, prompt_batch
from align.model import Decoder, ModelConfig
from align.rl.grpo import GRPOConfig, grpo_loss_fn, make_grpo_iteration, repeat_prompts
from align.rl.loop import RLLoopConfig, owned_train_state, rl_loop
from align.rl.rewards import TokenFraction
from align.rl.rollout import RolloutConfig, make_rollout
from align.sampling import SamplingConfig
from align.training import OptimConfig, make_optimizer

V = 32
TARGET = 20  # ~5% of the untrained policy's samples (seed 0)
CONFIG = GRPOConfig(
    rollout=RolloutConfig(SamplingConfig(max_new_tokens=8, temperature=1.0), logprob_chunk=64),
    group_size=4,
    num_iterations=2,
    minibatch_size=16,
    beta=0.04,
)


def _prompt_stream(rows=8):
    rng = np.random.default_rng(0)
    prompts = rng.integers(3, V, size=(32, 4)).astype(np.int32)
    prompts[:, 0] = 2
    return batches(
        list(prompts),
        DataOrder(32, seed=0),
        None,
        rows,
        lambda items: prompt_batch(items, 4, padding="right", rows=rows),
    )


def test_repeat_prompts_layout():
    tokens, lengths = repeat_prompts({"tokens": np.array([[2, 5], [2, 6]]), "lengths": np.array([2, 1])}, 3)
    np.testing.assert_array_equal(tokens, [[2, 5]] * 3 + [[2, 6]] * 3)
    np.testing.assert_array_equal(lengths, [2, 2, 2, 1, 1, 1])


def test_first_update_is_minus_mean_advantage_with_zero_kl():
    policy = Decoder(ModelConfig.tiny(vocab_size=V), rngs=nnx.Rngs(0))
    prompts, _ = next(_prompt_stream(rows=4))
    tokens, lengths = repeat_prompts(prompts, 4)
    rollout, _ = make_rollout(
        policy, policy, None, TokenFraction(TARGET), tokens, lengths, CONFIG.rollout, jax.random.PRNGKey(1)
    )
    np.testing.assert_array_equal(rollout.values, 0.0)  # no critic
    adv = jnp.asarray(np.random.default_rng(0).normal(size=16), jnp.float32)
    loss, m = nnx.jit(grpo_loss_fn, static_argnames="config")(
        policy, {**rollout.as_batch(), "advantages": adv}, None, config=CONFIG
    )
    mask = np.asarray(rollout.response_mask)
    token_mean_adv = float((np.asarray(adv)[:, None] * mask).sum() / mask.sum())
    assert float(m["ratio_mean"]) == pytest.approx(1.0, abs=1e-6)
    assert float(m["kl"]) == pytest.approx(0.0, abs=1e-7)
    assert float(loss) == pytest.approx(-token_mean_adv, abs=1e-5)


def test_grpo_raises_the_reward_with_bounded_kl():
    policy = Decoder(ModelConfig.tiny(vocab_size=V), rngs=nnx.Rngs(0))
    optimizer = make_optimizer(OptimConfig(learning_rate=2e-3, total_steps=1000, schedule="constant"))
    iterate = make_grpo_iteration(CONFIG, optimizer, policy, TokenFraction(TARGET))
    result = rl_loop(
        iterate,
        owned_train_state(policy, optimizer),
        _prompt_stream(),
        RLLoopConfig(iterations=15, progress=False),
        kl_coef=CONFIG.beta,
    )
    rewards = [row["reward/mean"] for row in result.logs]
    assert np.mean(rewards[:2]) < 0.1
    assert np.mean(rewards[-3:]) > np.mean(rewards[:2]) + 0.5, rewards
    kls = [row["kl/ref"] for row in result.logs]
    # always emitting TARGET would cost ~8 * -log(0.05) = 24 nats per response
    assert kls[0] == 0.0 and max(kls) < 16.0, kls
    assert result.kl_coef == pytest.approx(CONFIG.beta)  # GRPO's beta is fixed
