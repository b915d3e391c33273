"""Held-out evaluation of a reward model: pairwise accuracy with a 95% interval, reward statistics.

Accuracy counts a pair as correct when r_chosen > r_rejected (ties are wrong, as in
reward_models.losses.pairwise_accuracy). The interval is Wilson's score interval for a binomial
proportion (align.intervals.wilson_ci), which stays inside [0, 1] and behaves at small n; 50% is
chance. With no pairs every statistic is None (JSON null): there is nothing to measure, and None keeps
summary.json valid JSON where NaN would not.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import numpy as np
from flax import nnx

from align.data import TokenizedPair, preference_batch
from align.intervals import wilson_ci
from align.model.heads import ScoreModel
from align.reward.model import pair_rewards


def pairwise_stats(rewards: np.ndarray) -> dict[str, float | int | None]:
    """Metrics of rewards [n, 2] (column 0 chosen, 1 rejected); every statistic None when n = 0."""
    rewards = np.asarray(rewards, np.float64).reshape(-1, 2)
    n = len(rewards)
    diff = rewards[:, 0] - rewards[:, 1]
    k = int(np.sum(diff > 0))
    low, high = wilson_ci(k, n)
    stats = {"accuracy": k / n if n else None, "ci_low": low, "ci_high": high, "n": n}
    stats["ties"] = int(np.sum(diff == 0))
    moments = {
        "margin_mean": diff.mean,
        "margin_std": diff.std,
        "reward_mean": rewards.mean,
        "reward_std": rewards.std,
        "chosen_mean": rewards[:, 0].mean,
        "rejected_mean": rewards[:, 1].mean,
    }
    return stats | {name: float(fn()) if n else None for name, fn in moments.items()}


@functools.lru_cache(maxsize=8)
def _pair_forward(graphdef):
    """One jitted forward per model structure, reused across evaluations (compiled once per shape)."""
    return jax.jit(lambda state, batch: pair_rewards(nnx.merge(graphdef, state), batch))


def map_pairs(
    forward,
    state,
    pairs: Sequence[TokenizedPair],
    *,
    batch_size: int,
    length: int,
    pad_id: int = 0,
    progress=None,
) -> np.ndarray:
    """`forward(state, batch)` on fixed-shape [batch_size, P, T] batches of `pairs`; the real rows of every
    batch, concatenated. `progress(k)` is called with the number of pairs after each batch (tqdm's update)."""
    out = []
    for i in range(0, len(pairs), batch_size):
        chunk = pairs[i : i + batch_size]
        batch = preference_batch(chunk, length, rows=batch_size, pad_id=pad_id)
        out.append(
            np.asarray(forward(state, {k: batch[k] for k in ("tokens", "positions", "segment_ids")}))[
                : len(chunk)
            ]
        )
        if progress is not None:
            progress(len(chunk))
    return np.concatenate(out)


def score_pairs(
    model: ScoreModel,
    pairs: Sequence[TokenizedPair],
    *,
    batch_size: int,
    length: int,
    pad_id: int = 0,
    progress=None,
) -> np.ndarray:
    """Rewards [n, 2] of tokenized pairs, `batch_size` pairs per (fixed-shape) forward."""
    if not pairs:
        return np.zeros((0, 2), np.float32)
    graphdef, state = nnx.split(model)
    return map_pairs(
        _pair_forward(graphdef),
        state,
        pairs,
        batch_size=batch_size,
        length=length,
        pad_id=pad_id,
        progress=progress,
    )


def evaluate_reward_model(
    model: ScoreModel,
    pairs: Sequence[TokenizedPair],
    *,
    batch_size: int,
    length: int,
    pad_id: int = 0,
    progress: bool = False,
) -> dict[str, float]:
    """pairwise_stats of the model's rewards on `pairs` (with a tqdm bar when `progress`)."""
    from tqdm.auto import tqdm

    with tqdm(total=len(pairs), desc="rm eval", unit="pair", dynamic_ncols=True, disable=not progress) as bar:
        rewards = score_pairs(
            model, pairs, batch_size=batch_size, length=length, pad_id=pad_id, progress=bar.update
        )
    return pairwise_stats(rewards)
