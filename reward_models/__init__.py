"""reward_models: Bradley-Terry training (fine-tuned or a linear probe) and held-out evaluation.

summary = run_rm_training(RMConfig(...))                      # train (resumable), exports to runs/rm/export
stats = evaluate_reward_model(rm, pairs, batch_size=8, length=256, lengths=chars)  # + length baseline

The reward model itself (model, loading, scoring) lives in `align.reward`, where RL and pipelines
import it from too.
"""

from reward_models.data import PairSource, RMDataOptions
from reward_models.evaluate import (
    evaluate_reward_model,
    length_report,
    paired_bootstrap,
    pairwise_stats,
    score_pairs,
)
from reward_models.losses import bradley_terry_loss, pairwise_accuracy
from reward_models.train import RMConfig, rm_loss, run_rm_training

__all__ = [
    "PairSource",
    "RMConfig",
    "RMDataOptions",
    "bradley_terry_loss",
    "evaluate_reward_model",
    "length_report",
    "paired_bootstrap",
    "pairwise_accuracy",
    "pairwise_stats",
    "rm_loss",
    "run_rm_training",
    "score_pairs",
]  # fmt: skip
