"""pipelines.stages.rlhf's pieces that need no model: the comparison of the held-out samples before and
after training (summary.json's reward_gain, eval_samples.jsonl)."""

import math

import pytest

from pipelines.stages import rlhf
from pipelines.stages.rl_eval import compare_samples


def _samples(tag: str, rewards: list[float]) -> list[dict]:
    return [{"prompt": f"p{i}", "response": f"{tag}{i}", "reward": r} for i, r in enumerate(rewards)]


def test_compare_samples_pairs_each_prompts_rewards_and_keeps_the_first_n():
    before, after = _samples("b", [0.0, 1.0, 2.0]), _samples("a", [1.0, 1.0, 4.0])
    entries, rows = compare_samples(before, after, 2)
    # per prompt after - before = [1, 0, 2]: mean 1, sample std 1, stderr 1/sqrt(3); 2 of 3 rose
    stderr = 1 / math.sqrt(3)
    assert entries == {
        "reward_gain": {
            "mean": 1.0,
            "stderr": pytest.approx(stderr),
            "ci_low": pytest.approx(1 - 1.96 * stderr),
            "ci_high": pytest.approx(1 + 1.96 * stderr),
            "wins": pytest.approx(2 / 3),
            "n": 3,
        }
    }
    assert rows == [
        {"prompt": "p0", "before": "b0", "reward_before": 0.0, "after": "a0", "reward_after": 1.0},
        {"prompt": "p1", "before": "b1", "reward_before": 1.0, "after": "a1", "reward_after": 1.0},
    ]


def test_the_stage_compares_with_eval_samples():
    config = rlhf.RLHFConfig(output_dir="unused", eval=rlhf.RLEvalOptions(samples=1))
    entries, rows = rlhf.RLHF_STAGE.compare(config, _samples("b", [0.0, 1.0]), _samples("a", [0.5, 0.5]))
    assert entries["reward_gain"]["mean"] == 0.0 and entries["reward_gain"]["wins"] == 0.5
    assert [r["prompt"] for r in rows] == ["p0"]  # eval.samples = 1
