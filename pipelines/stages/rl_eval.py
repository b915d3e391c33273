"""Held-out evaluation of an RL policy: reward-model score (and KL to the reference) of its responses."""

from __future__ import annotations

import jax
import numpy as np

from align import distributed
from align.data import Tokenizer, prompt_batch
from align.model.sharding import shard_rows
from align.rl.rewards import RewardFn
from align.rl.rollout import RolloutConfig, make_rollout
from align.training.stage import Evaluation


def evaluate_policy(
    policy,
    reference,
    reward_fn: RewardFn,
    prompts: list,
    tokenizer: Tokenizer,
    *,
    rollout: RolloutConfig,
    batch_size: int,
    prompt_length: int,
    seed: int,
    progress: bool = False,
    mesh=None,
) -> Evaluation:
    """Reward (and KL to the reference) of the policy's responses to held-out prompts.

    Sampled like the rollouts, with a fixed key per batch, so the starting and the trained policy
    see the same noise; the response rows are decoded for eval_samples.jsonl. mesh: the models'; each
    batch's rows are split over its data axes.
    """
    from tqdm.auto import tqdm

    rows, length = batch_size, prompt_length
    scores, kls, lengths, samples = [], [], [], []
    bar = tqdm(total=len(prompts), desc="rl eval", unit="prompt", dynamic_ncols=True, disable=not progress)
    for i in range(0, len(prompts), rows):
        chunk = prompts[i : i + rows]
        # Pad the last batch with copies of the first prompt (one jit shape); their rows are dropped.
        batch = prompt_batch(
            chunk + [chunk[0]] * (rows - len(chunk)),
            length,
            padding="right",
            rows=rows,
            pad_id=tokenizer.pad_id,
        )
        if mesh is not None:
            batch = shard_rows({k: batch[k] for k in ("tokens", "lengths")}, mesh)
        key = jax.random.fold_in(jax.random.PRNGKey(seed), i)
        # `result`, not `rollout`: that name is the config every batch is sampled with
        result, _ = make_rollout(
            policy, reference, None, reward_fn, batch["tokens"], batch["lengths"], rollout, key
        )
        # rows spread over hosts: gathered (collectives, in the same order on every process)
        n, m = len(chunk), distributed.host_array(result.response_mask)
        response = distributed.host_array(result.response)
        scores += distributed.host_array(result.scores)[:n].tolist()
        kls += (distributed.host_array(result.logprobs - result.ref_logprobs) * m).sum(-1)[:n].tolist()
        lengths += m.sum(-1)[:n].tolist()
        bar.update(n)
        for b in range(n):
            samples.append(
                {
                    "prompt": tokenizer.decode(chunk[b], skip_special=False),
                    "response": tokenizer.decode(response[b][: int(m[b].sum())]),
                    "reward": scores[i + b],
                }
            )
    bar.close()
    s = np.asarray(scores)
    metrics = {
        "reward/mean": float(s.mean()),
        "reward/stderr": float(s.std(ddof=1) / np.sqrt(len(s))) if len(s) > 1 else 0.0,
        "kl/ref": float(np.mean(kls)),
        "response/length": float(np.mean(lengths)),
        "n": len(s),
    }
    return Evaluation(metrics, samples)


def paired_gain(before: list[float], after: list[float]) -> dict:
    """after - before per held-out prompt (same prompt, same sampling key): mean, its standard error,
    a 95% normal interval, and the share of prompts whose reward rose.

    What n cannot define is None, never NaN (summary.json must stay strict JSON, as the results files
    are): the stderr and interval with fewer than two prompts, the mean and wins too with none."""
    d = np.asarray(after, np.float64) - np.asarray(before, np.float64)
    n = len(d)
    mean = float(d.mean()) if n else None
    wins = float(np.mean(d > 0)) if n else None
    if n < 2:
        return {"mean": mean, "stderr": None, "ci_low": None, "ci_high": None, "wins": wins, "n": n}
    stderr = float(d.std(ddof=1) / np.sqrt(n))
    return {
        "mean": mean,
        "stderr": stderr,
        "ci_low": mean - 1.96 * stderr,
        "ci_high": mean + 1.96 * stderr,
        "wins": wins,
        "n": n,
    }


def compare_samples(before: list[dict], after: list[dict], n: int) -> tuple[dict, list[dict]]:
    """The paired reward gain (summary.json's "reward_gain"), and eval_samples.jsonl's rows: the first n
    held-out prompts with the responses before and after training."""
    gain = paired_gain([s["reward"] for s in before], [s["reward"] for s in after])
    rows = [
        {
            "prompt": b["prompt"],
            "before": b["response"],
            "reward_before": b["reward"],
            "after": a["response"],
            "reward_after": a["reward"],
        }
        for b, a in list(zip(before, after))[:n]
    ]
    return {"reward_gain": gain}, rows
