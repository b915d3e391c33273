"""Held-out evaluation of a reward model: pairwise accuracy with a 95% interval, reward statistics,
and the same accuracy beside the length-only baseline.

Accuracy counts a pair as correct when r_chosen > r_rejected (ties are wrong, as in
reward_models.losses.pairwise_accuracy). The interval is Wilson's score interval for a binomial
proportion (align.intervals.wilson_ci), which stays inside [0, 1] and behaves at small n; 50% is
chance. With no pairs every statistic is None (JSON null): there is nothing to measure, and None keeps
summary.json valid JSON where NaN would not.

A reward model can reach well above chance by learning length alone ("the longer answer wins"
scores about 0.6 on HH helpful-base), so `length_report` puts it beside that baseline on the same
pairs: the baseline's accuracy (ties 0.5), the paired difference RM - length with a paired bootstrap
interval (both are scored on the same pairs, so their errors are correlated and two separate
intervals would overstate the uncertainty of the difference), and the RM's accuracy on the
length-matched pairs, where length cannot tell the two answers apart.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
from flax import nnx

from align.data import TokenizedPair, preference_batch
from align.distributed import host_array
from align.intervals import wilson_ci
from align.model.heads import ScoreModel
from align.model.sharding import jit_on_mesh, shard_rows, shard_state
from align.reward.model import pair_rewards


LENGTH_TOLERANCE = 0.1  # length-matched: |len_c - len_r| <= 10% of the longer response


def length_scores(lengths: np.ndarray) -> np.ndarray:
    """Per-pair score [n] of "the longer chosen answer wins" on lengths [n, 2] (chosen, rejected):
    1 when the chosen response is longer, 0 when shorter, 0.5 on a tie (a coin flip's expectation)."""
    lengths = np.asarray(lengths, np.float64).reshape(-1, 2)
    return 0.5 * (1.0 + np.sign(lengths[:, 0] - lengths[:, 1]))


def length_matched(lengths: np.ndarray, tolerance: float = LENGTH_TOLERANCE) -> np.ndarray:
    """Mask [n] of the pairs whose lengths differ by at most `tolerance` of the longer one."""
    lengths = np.asarray(lengths, np.float64).reshape(-1, 2)
    return np.abs(lengths[:, 0] - lengths[:, 1]) <= tolerance * lengths.max(axis=1)


def paired_bootstrap(a: np.ndarray, b: np.ndarray, *, resamples: int = 10_000, seed: int = 0) -> dict:
    """mean(a - b) with a percentile-bootstrap 95% interval that resamples the pairs (a_i, b_i) together
    (Efron & Tibshirani 1993, ch. 13): the interval of the difference of two scores on the same items.
    All None when there is no pair."""
    d = np.asarray(a, np.float64) - np.asarray(b, np.float64)  # [n]
    n = len(d)
    if n == 0:
        return {"mean": None, "ci_low": None, "ci_high": None, "n": 0}
    idx = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    low, high = np.percentile(d[idx].mean(axis=1), [2.5, 97.5])
    return {"mean": float(d.mean()), "ci_low": float(low), "ci_high": float(high), "n": n}


def _proportion(scores: np.ndarray) -> dict:
    """Mean of per-pair scores in [0, 1] with its Wilson interval (a half score counts half)."""
    n = len(scores)
    low, high = wilson_ci(float(scores.sum()), n)
    return {"accuracy": float(scores.mean()) if n else None, "ci_low": low, "ci_high": high, "n": n}


def length_report(rewards: np.ndarray, lengths: np.ndarray, tolerance: float = LENGTH_TOLERANCE) -> dict:
    """The reward model (rewards [n, 2]) against the length-only baseline on the same pairs (lengths
    [n, 2]): {"length": baseline accuracy, "rm_minus_length": paired difference, "length_matched":
    RM and baseline accuracy on the length-matched pairs}. RM ties count as wrong, as in pairwise_stats."""
    rewards = np.asarray(rewards, np.float64).reshape(-1, 2)
    rm = (rewards[:, 0] > rewards[:, 1]).astype(np.float64)  # [n]
    by_length = length_scores(lengths)
    matched = length_matched(lengths, tolerance)
    return {
        "length": _proportion(by_length),
        "rm_minus_length": paired_bootstrap(rm, by_length),
        "length_matched": {
            **_proportion(rm[matched]),
            "tolerance": tolerance,
            "length_accuracy": _proportion(by_length[matched])["accuracy"],
        },
    }


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
def _pair_forward(graphdef, mesh=None):
    """One jitted forward per (model structure, mesh), reused across evaluations (compiled once per
    shape), traced under the mesh so the decoder's activation constraints split the batch's rows."""
    return jit_on_mesh(lambda state, batch: pair_rewards(nnx.merge(graphdef, state), batch), mesh)


def score_pairs(
    model: ScoreModel,
    pairs: Sequence[TokenizedPair],
    *,
    batch_size: int,
    length: int,
    pad_id: int = 0,
    progress=None,
    mesh=None,
) -> np.ndarray:
    """Rewards [n, 2] of tokenized pairs, `batch_size` pairs per (fixed-shape [batch_size, P, T])
    forward. `progress(k)` is called with the number of pairs after each batch (tqdm's update).

    mesh: the weights placed by the rules table (as they already are after training on it) and each
    batch's pairs split over its data axes; it may span several processes: each builds every batch,
    places only its devices' rows (`shard_rows`) and reads all the rewards back (`host_array`), so
    every process returns the same [n, 2]. None: wherever the model is, the batch as numpy."""
    if not pairs:
        return np.zeros((0, 2), np.float32)
    graphdef, state = nnx.split(model)
    if mesh is not None:
        state = shard_state(state, mesh)
    forward, out = _pair_forward(graphdef, mesh), []
    for i in range(0, len(pairs), batch_size):
        n = min(batch_size, len(pairs) - i)
        batch = preference_batch([pairs[j] for j in range(i, i + n)], length, rows=batch_size, pad_id=pad_id)
        keys = ("tokens", "positions", "segment_ids", "loss_mask")  # loss_mask: the response, for pooling
        batch = {k: batch[k] for k in keys}
        out.append(host_array(forward(state, batch if mesh is None else shard_rows(batch, mesh)))[:n])
        if progress is not None:
            progress(n)
    return np.concatenate(out)


def evaluate_reward_model(
    model: ScoreModel,
    pairs: Sequence[TokenizedPair],
    *,
    batch_size: int,
    length: int,
    pad_id: int = 0,
    progress: bool = False,
    lengths: np.ndarray | None = None,
    tolerance: float = LENGTH_TOLERANCE,
    files: Sequence[str] = (),
    mesh=None,
) -> dict:
    """reward_report of the model's rewards on `pairs` (with a tqdm bar when `progress`): with the
    response `lengths` [n, 2] its length_report, with `files` [n] per file too. mesh: score_pairs'."""
    from tqdm.auto import tqdm

    with tqdm(total=len(pairs), desc="rm eval", unit="pair", dynamic_ncols=True, disable=not progress) as bar:
        rewards = score_pairs(
            model, pairs, batch_size=batch_size, length=length, pad_id=pad_id, progress=bar.update, mesh=mesh
        )
    return reward_report(rewards, lengths, files, tolerance)


def reward_report(
    rewards: np.ndarray,
    lengths: np.ndarray | None = None,
    files: Sequence[str] = (),
    tolerance: float = LENGTH_TOLERANCE,
) -> dict:
    """pairwise_stats of rewards [n, 2], with `lengths` [n, 2] their length_report, and with `files`
    [n] (each pair's source file) both again per file under "by_file" (two files or more)."""
    stats = pairwise_stats(rewards)
    if lengths is None:
        return stats
    stats |= length_report(rewards, lengths, tolerance)
    names = list(dict.fromkeys(files))
    if len(names) > 1:
        of = np.asarray(files)
        stats["by_file"] = {
            name: pairwise_stats(rewards[of == name])
            | length_report(rewards[of == name], lengths[of == name], tolerance)
            for name in names
        }
    return stats
