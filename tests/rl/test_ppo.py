"""PPO: analytic anchors on a real rollout, a toy task it must learn, and exact resume."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from align.data import DataOrder, batches, prompt_batch
from align.model import Decoder, ModelConfig
from align.model.heads import ScoreModel
from align.rl.advantages import masked_mean
from align.rl.loop import FromState, RLLoopConfig, resume, rl_loop, shared_frozen
from align.rl.ppo import (
    PolicyAndValue,
    PPOConfig,
    create_ppo_state,
    make_ppo_iteration,
    optimize_epochs,
    ppo_advantages,
    ppo_loss,
)
from align.rl.rewards import TokenFraction
from align.rl.rollout import RolloutConfig, make_rollout
from align.sampling import SamplingConfig
from align.training import Checkpointer, OptimConfig, make_optimizer, trainable_filter
from align.training.state import create_train_state

V = 32
TARGET = 20  # ~5% of the untrained policy's samples (seed 0): rare but not unseen
CONFIG = PPOConfig(
    rollout=RolloutConfig(SamplingConfig(max_new_tokens=8, temperature=1.0), logprob_chunk=64),
    ppo_epochs=2,
    minibatch_size=8,
    kl_coef=0.05,
    vf_coef=0.5,
)


def _models():
    cfg = ModelConfig.tiny(vocab_size=V)
    return Decoder(cfg, rngs=nnx.Rngs(0)), ScoreModel(Decoder(cfg, rngs=nnx.Rngs(1)), rngs=nnx.Rngs(2))


def _prompts(n=64, seed=0):
    rng = np.random.default_rng(seed)
    out = rng.integers(3, V, size=(n, 4)).astype(np.int32)
    out[:, 0] = 2
    return [row[: 2 + i % 3] for i, row in enumerate(out)]  # lengths 2..4


def _stream(prompts, position=None, rows=16):
    return batches(
        prompts,
        DataOrder(len(prompts), seed=1),
        position,
        rows,
        lambda items: prompt_batch(items, 4, padding="right", rows=rows),
    )


@pytest.fixture(scope="module")
def setup():
    policy, value = _models()
    optimizer = make_optimizer(OptimConfig(learning_rate=2e-3, total_steps=1000, schedule="constant"))
    iterate = make_ppo_iteration(CONFIG, optimizer, policy, TokenFraction(TARGET))
    return policy, value, optimizer, iterate


def test_ratio_is_one_and_kl_zero_when_policy_is_reference(setup):
    policy, value, _, _ = setup
    batch, _ = next(_stream(_prompts()))
    config = PPOConfig(rollout=CONFIG.rollout, missing_eos_penalty=0.5)
    rollout, metrics = make_rollout(
        policy,
        policy,
        value,
        TokenFraction(TARGET),
        batch["tokens"],
        batch["lengths"],
        config.rollout,
        jax.random.PRNGKey(0),
    )
    assert metrics["kl/ref"] == 0.0
    adv, returns, adv_metrics = ppo_advantages(rollout, jnp.float32(0.05), config)
    assert float(adv_metrics["reward/non_score"]) == 0.0  # zero KL: the penalty adds nothing
    # no stop ids: no response has an EOS, so every score pays the missing-EOS penalty
    assert float(adv_metrics["reward/shaped_score"]) == pytest.approx(
        float(jnp.mean(rollout.scores)) - 0.5, abs=1e-6
    )
    m = rollout.response_mask
    assert float(masked_mean(adv, m)) == pytest.approx(0.0, abs=1e-5)  # whitened
    _, lm = nnx.jit(ppo_loss, static_argnames="config")(
        PolicyAndValue(policy, value),
        {**rollout.as_batch(), "advantages": adv, "returns": returns},
        None,
        config=config,
    )
    assert float(lm["ratio_mean"]) == pytest.approx(1.0, abs=1e-6)
    assert float(lm["approx_kl"]) == pytest.approx(0.0, abs=1e-10)
    assert float(lm["clip_frac"]) == 0.0
    # rho == 1: the policy loss is -mean(A); the critic's values are the rollout's (no clipping active)
    assert float(lm["policy_loss"]) == pytest.approx(-float(masked_mean(adv, m)), abs=1e-6)
    assert float(lm["value_clip_frac"]) == 0.0
    expect_v = 0.5 * float(masked_mean(jnp.square(rollout.values - returns), m))
    assert float(lm["value_loss"]) == pytest.approx(expect_v, rel=1e-4)


def test_ppo_raises_the_reward_with_bounded_kl(setup):
    policy, value, optimizer, iterate = setup
    state = create_ppo_state(policy, value, optimizer, seed=0)
    result = rl_loop(
        iterate,
        state,
        _stream(_prompts()),
        RLLoopConfig(iterations=15, progress=False),
        kl_coef=CONFIG.kl_coef,
    )
    rewards = [row["reward/mean"] for row in result.logs]
    assert np.mean(rewards[:2]) < 0.1
    assert np.mean(rewards[-3:]) > np.mean(rewards[:2]) + 0.5, rewards
    kls = [row["kl/ref"] for row in result.logs]
    assert max(kls) < 16.0, kls  # always emitting TARGET would cost ~8 * -log(0.05) = 24 nats per response
    assert kls[0] == 0.0 and result.logs[0]["clip_frac"] < 0.5


def test_resume_continues_exactly(setup, tmp_path):
    policy, value, optimizer, iterate = setup
    prompts = _prompts()
    config = RLLoopConfig(iterations=4, progress=False)
    straight = rl_loop(
        iterate, create_ppo_state(policy, value, optimizer, seed=5), _stream(prompts), config, kl_coef=0.05
    )

    with Checkpointer(tmp_path / "ckpt", async_save=False) as ckpt:
        first = rl_loop(
            iterate,
            create_ppo_state(policy, value, optimizer, seed=5),
            _stream(prompts),
            RLLoopConfig(iterations=2, progress=False),
            kl_coef=0.05,
            checkpointer=ckpt,
        )
        assert first.iteration == 2
    with Checkpointer(tmp_path / "ckpt", async_save=False) as ckpt:
        fresh = create_ppo_state(policy, value, optimizer, seed=99)  # a different rng: must be overwritten
        r = resume(ckpt, fresh)
        assert r.iteration == 2 and r.data_position == first.data_position
        second = rl_loop(
            iterate,
            r.state,
            _stream(prompts, r.data_position),
            config,
            kl_coef=r.kl_coef,
            start_iteration=r.iteration,
            checkpointer=ckpt,
        )
    keys = ("reward/mean", "kl/ref", "policy_loss", "value_loss", "kl_coef")
    assert [[row[k] for k in keys] for row in second.logs] == [
        [row[k] for k in keys] for row in straight.logs[2:]
    ]
    for a, b in zip(jax.tree.leaves(second.state.params), jax.tree.leaves(straight.state.params)):
        np.testing.assert_array_equal(a, b)


def test_a_reference_sharing_the_states_frozen_arrays_trains_exactly_like_a_full_copy():
    policy, value = _models()
    trainable = trainable_filter("no_embeddings")  # the [V, D] tables are frozen: shareable
    optimizer = make_optimizer(OptimConfig(learning_rate=2e-3, total_steps=1000, schedule="constant"))
    shared = FromState(shared_frozen(policy, trainable, "policy"))
    logs = []
    for reference in (policy, shared):
        iterate = make_ppo_iteration(CONFIG, optimizer, reference, TokenFraction(TARGET))
        state = create_ppo_state(policy, value, optimizer, seed=3, trainable=trainable)
        result = rl_loop(
            iterate, state, _stream(_prompts()), RLLoopConfig(iterations=3, progress=False), kl_coef=0.05
        )
        logs.append([(row["kl/ref"], row["policy_loss"], row["reward/mean"]) for row in result.logs])
    assert logs[0] == logs[1] and logs[0][-1][0] > 0  # the policy moved, and both saw the same KL


def test_optimize_epochs_averages_each_metric_over_every_minibatch_step():
    # A stand-in step that counts its calls: 2 epochs x 3 minibatches, metric "i" = 1..6, "two_i" = 2i;
    # the mean leaves out the accumulation weight and the finiteness flag, and the rng moves on.
    calls = []

    def step(state, mb):
        calls.append(mb["x"].shape)
        i = jnp.float32(len(calls))
        return state, {"i": i, "two_i": 2 * i, "weight": jnp.float32(99.0), "finite": jnp.bool_(True)}

    state = create_train_state(nnx.Linear(2, 2, rngs=nnx.Rngs(0)), optax.sgd(0.1))
    batch = {"x": jnp.arange(12.0).reshape(6, 2)}
    out, metrics = optimize_epochs(step, state, batch, epochs=2, size=2)
    assert calls == [(2, 2)] * 6
    assert set(metrics) == {"i", "two_i"}
    np.testing.assert_allclose([metrics["i"], metrics["two_i"]], [3.5, 7.0])
    assert not np.array_equal(out.rng, state.rng)
