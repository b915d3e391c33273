"""align.rl: policy optimisation for language models (PPO, GRPO, DPO) on align.training's steps.

    rollout, metrics = make_rollout(policy, reference, critic, reward_fn, prompts, lengths,
                                    RolloutConfig(), rng)
    iterate = make_ppo_iteration(PPOConfig(), optimizer, reference, reward_fn)     # or make_grpo_iteration
    result = rl_loop(iterate, create_ppo_state(policy, critic, optimizer), prompt_batches,
                     RLLoopConfig(iterations=100), kl_coef=0.05, checkpointer=ckpt)
    step = make_dpo_step(DPOConfig(beta=0.1), optimizer, reference=reference)  # for align.training.train_loop

Pure pieces (advantages, KL, losses) take arrays and masks and return (value, metrics).
"""

# Advantages and masked statistics (pure)
from align.rl.advantages import (
    gae,
    group_relative_advantages,
    masked_mean,
    masked_var,
    rloo_advantages,
    whiten,
)
from align.rl.dpo import DPOConfig, dpo_loss_fn, make_dpo_step, pair_logprobs, precompute_reference
from align.rl.grpo import GRPOConfig, grpo_loss_fn, make_grpo_iteration

# KL estimators, controllers, shaped rewards (pure)
from align.rl.kl import (
    AdaptiveKLController,
    FixedKLController,
    kl_k1,
    kl_k2,
    kl_k3,
    per_token_kl_penalty_rewards,
)

# The RL host loop
from align.rl.loop import RLLoopConfig, RLResult, owned_train_state, resume, rl_loop

# Losses (pure)
from align.rl.losses import aggregate, clipped_surrogate, dpo_loss, grpo_loss, ppo_policy_loss, ppo_value_loss

# Algorithms
from align.rl.ppo import (
    PolicyAndValue,
    PPOConfig,
    create_ppo_state,
    make_ppo_iteration,
    ppo_advantages,
    ppo_loss,
)

# Rewards and rollouts
from align.rl.rewards import LengthReward, Mixture, RewardFn, TokenFraction, check_rewards
from align.rl.rollout import (
    Rollout,
    RolloutConfig,
    join_prompt_response,
    make_rollout,
    response_logprobs,
    response_values,
    rollout_metrics,
    sample_rollout,
    score_rollout,
)

__all__ = [
    "AdaptiveKLController",
    "DPOConfig",
    "FixedKLController",
    "GRPOConfig",
    "LengthReward",
    "Mixture",
    "PPOConfig",
    "PolicyAndValue",
    "RLLoopConfig",
    "RLResult",
    "RewardFn",
    "Rollout",
    "RolloutConfig",
    "TokenFraction",
    "aggregate",
    "check_rewards",
    "clipped_surrogate",
    "create_ppo_state",
    "dpo_loss",
    "dpo_loss_fn",
    "gae",
    "group_relative_advantages",
    "grpo_loss",
    "grpo_loss_fn",
    "join_prompt_response",
    "kl_k1",
    "kl_k2",
    "kl_k3",
    "make_dpo_step",
    "make_grpo_iteration",
    "make_ppo_iteration",
    "make_rollout",
    "masked_mean",
    "masked_var",
    "owned_train_state",
    "pair_logprobs",
    "per_token_kl_penalty_rewards",
    "ppo_advantages",
    "ppo_loss",
    "ppo_policy_loss",
    "ppo_value_loss",
    "precompute_reference",
    "response_logprobs",
    "response_values",
    "resume",
    "rl_loop",
    "rloo_advantages",
    "rollout_metrics",
    "sample_rollout",
    "score_rollout",
    "whiten",
]  # fmt: skip
