"""align.reward: the reward model's one home: model, pair rewards, HF export and loading, batched scoring.

    rm = build_reward_model(backbone)                     # decoder + fresh scalar head (ScoreModel)
    save_reward_model(rm, "out/export", tokenizer=tok)    # HF <Family>ForSequenceClassification
    rm, tok = load_reward_model("out/export")
    rewards = RewardScorer(rm, tok).score(prompts, responses)   # float32 [n]

Training (Bradley-Terry fine-tuning, the linear probe) and held-out evaluation are `reward_models`;
the reward model as an RL reward is `align.rl.rewards.ScoreModelReward`.
"""

from align.model.heads import ScoreModel
from align.reward.model import (
    HEAD_BIAS,
    RewardModel,
    backbone_of,
    build_reward_model,
    is_reward_model_dir,
    load_reward_model,
    pair_pooled_hidden,
    pair_rewards,
    save_reward_model,
)
from align.reward.score import RewardScorer, score

__all__ = [
    "HEAD_BIAS",
    "RewardModel",
    "RewardScorer",
    "ScoreModel",
    "backbone_of",
    "build_reward_model",
    "is_reward_model_dir",
    "load_reward_model",
    "pair_pooled_hidden",
    "pair_rewards",
    "save_reward_model",
    "score",
]
