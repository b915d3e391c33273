"""reward_models: a decoder + scalar head trained with Bradley-Terry; HF export; held-out evaluation; scoring.

summary = run_rm_training(RMConfig(...))                      # train (resumable)
rm, tok = load_reward_model("runs/rm/export")                  # HF sequence-classification dir
rewards = score(rm, tok, prompts, responses)                   # float32 [n]
"""

from reward_models.evaluate import evaluate_reward_model, pairwise_stats, score_pairs, wilson_interval
from reward_models.losses import bradley_terry_loss, pairwise_accuracy
from reward_models.model import (
    RewardModel,
    build_reward_model,
    is_reward_model_dir,
    load_reward_model,
    pair_rewards,
    save_reward_model,
)
from reward_models.score import RewardScorer, score
from reward_models.train import RMConfig, RMDataOptions, rm_loss, run_rm_training

__all__ = [
    "RMConfig",
    "RMDataOptions",
    "RewardModel",
    "RewardScorer",
    "bradley_terry_loss",
    "build_reward_model",
    "evaluate_reward_model",
    "is_reward_model_dir",
    "load_reward_model",
    "pair_rewards",
    "pairwise_accuracy",
    "pairwise_stats",
    "rm_loss",
    "run_rm_training",
    "save_reward_model",
    "score",
    "score_pairs",
    "wilson_interval",
]  # fmt: skip
