"""Real multi-process runs: 2 processes x 2 CPU devices joined by jax.distributed, against one process
with 4 devices on the same global mesh (fsdp=4, so every parameter is split across both processes).

(c) process 1 SIGKILLed right after a checkpoint, every process restarted: the run resumes and its
    metrics.jsonl holds the single-process losses step for step;
(a) SFT steps (the same run, 1-4 before the kill, 5-6 after): the same per-step losses and held-out
    losses, the same data report (each process tokenized a share), the same exported weights
    (gathered from both hosts), and only process 0 wrote run files;
(b) `align eval --mesh 1,4,1` on the export, the weights and each batch's rows split over both processes:
    CrowS-Pairs (log-likelihoods) and IFEval (greedy generations) give the same results document, and
    only process 0 writes it;
(d) PPO, GRPO, distillation, DPO and reward-model fine-tuning on HH rows: each process tokenizes a
    share of the prompts (pairs) and collates only the rows it holds (align.rl.feed); metrics.jsonl
    row for row, the summary, the exported weights, and only process 0 wrote run files;
(e) the reward-model probe's cached feature pass: each process tokenizes only its rows of every batch,
    cold, warm and partly warm, and gets the cache-less features.
One 2-process run serves them all: each launch costs seconds of imports and compiling
(tests.multihost.cases, conftest.py). Every test that reads the launches lives in this one file:
conftest's fixtures are per pytest-xdist worker, and `--dist loadfile` sends a second file to the
other worker, which would launch everything again beside the first (test_launch.py checks this).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from align.training import read_metrics
from tests.multihost.cases import CROWS, HH, IFEVAL, STEPS, export_weights, losses, reports
from tests.reward_models.test_probe_cache_shares import LOST
from tests.reward_models.test_probe_shares import BY_WIDTH

# The first test sets up the session's launches (conftest.py: every stage, one process and two):
# minutes on a loaded 2-core machine, past pytest's default per-test limit; the harness's own
# per-launch TIMEOUT still stops a hung run.
pytestmark = pytest.mark.timeout(3 * 900)

# Float32 on the same mesh shape, but the cross-process all-reduce (gloo) sums in another order than
# XLA inside one process: SFT losses and eval metrics measured within 2.3e-7 relative (float32
# rounding), the exported weights within 2.8e-6 absolute after 6 Adam steps at lr 1e-2 (|w| <= 0.57).
RTOL = 1e-6
WEIGHT_ATOL = 2e-5


def test_sigkill_of_one_process_then_restart_resumes_exactly(single, multi):
    root, first, stopped_early = multi
    assert first[1].returncode == -9, "\n".join(r.describe() for r in first)
    assert stopped_early
    summary = json.loads((root / "run" / "summary.json").read_text())
    # step 4 when its checkpoint was committed before process 0 was killed, else step 2
    assert summary["step"] == STEPS and summary["resumed_from"] in (2, 4), summary["resumed_from"]
    got, want = losses(root / "run"), losses(single)
    assert [s for s, _ in got] == list(range(1, STEPS + 1))  # the log reads as one uninterrupted run
    np.testing.assert_allclose([v for _, v in got], [v for _, v in want], rtol=RTOL, atol=0)


def test_sft_matches_one_process_and_only_process_0_writes(single, multi):
    root, _, _ = multi
    run = root / "run"
    a, b = (json.loads((d / "summary.json").read_text()) for d in (run, single))
    # the report of the training set each process tokenized a share of: that of the whole set
    assert a["data"] == b["data"] and a["data"]["train"]["sequences"] == 18
    for key in ("eval_before", "eval_after"):
        np.testing.assert_allclose(a[key]["loss"], b[key]["loss"], rtol=RTOL)
    wa, wb = export_weights(run), export_weights(single)
    assert sorted(wa) == sorted(wb)
    for name in wa:  # every tensor was split over both hosts (fsdp=4): gathered, not truncated
        np.testing.assert_allclose(wa[name], wb[name], rtol=0, atol=WEIGHT_ATOL, err_msg=name)
    second = reports(root, 1)
    ok = [0] * (9 if HH.exists() else 3)  # sft, eval (, ppo, grpo, distill, distill top-k, dpo, rm), probe
    assert [r["exit_codes"] for r in second] in ([[], ok], [ok, []])  # killed, then finished
    assert [w for r in second for w in r["writes"]] == []
    (last,) = reports(root, 0)  # process 0 of the first launch was SIGKILLed before reporting
    assert last["exit_codes"] == ok
    written = set(last["writes"])
    for name in ("metrics.jsonl", "config.yaml", "summary.json", "eval.json"):
        assert name in written, (name, sorted(written))
    # the export is written to a temporary sibling, renamed into place by process 0
    assert any(w.startswith("tb/") for w in written) and "export" in written


def test_eval_on_the_mesh_matches_one_process_and_only_process_0_writes(single, multi):
    root = multi[0]
    a, b = (json.loads((d / "eval.json").read_text())["suites"] for d in (root / "run", single))
    assert all(s["status"] == "ok" for s in (*a.values(), *b.values())), (a, b)
    assert a["crows_pairs"]["data"]["n"] == len(CROWS) and a["ifeval"]["data"]["n"] == len(IFEVAL)
    for suite in ("crows_pairs", "ifeval"):
        got, want = ({k: m["value"] for k, m in s[suite]["metrics"].items()} for s in (a, b))
        assert got.keys() == want.keys()
        for k in want:
            np.testing.assert_allclose(got[k], want[k], rtol=RTOL, err_msg=f"{suite}: {k}")
    # every sentence's log-likelihood (sums of 44-77 token log-probs, -300 to -500 nats)
    for x, y in zip(a["crows_pairs"]["examples"], b["crows_pairs"]["examples"], strict=True):
        for k in ("ll_more", "ll_less"):
            np.testing.assert_allclose(x["extra"][k], y["extra"][k], rtol=RTOL, err_msg=f"pair {y['id']}")
    # the greedy generations, token for token
    outputs = [[e["output"] for e in s["ifeval"]["examples"]] for s in (a, b)]
    assert outputs[0] == outputs[1] and all(outputs[1]), outputs
    assert "eval.json" in reports(root, 0)[-1]["writes"]
    assert not any("eval.json" in r["writes"] for r in reports(root, 1))


# ---- (d) RL, distillation, DPO ----------------------------------------------------------------

needs_hh = pytest.mark.skipif(not HH.exists(), reason=f"{HH} (shared benchmark data) is not here")

# Float32 on the same mesh shape; gloo's cross-process sums run in another order than XLA's in one
# process. Measured (2 processes x 2 devices against 1 x 4, fsdp=4, |w| <= 0.55 everywhere):
#   PPO      2 iterations: metrics within 2.7e-6 relative, float32 noise around a zero policy loss
#            within 3e-8 absolute (1.04e-7 on an AVX2-only AMD EPYC: the step-1 loss, 3.4e-5, is a
#            sum of O(1) per-token terms that cancel; held to PPO_ATOL); held-out KL within 5.4e-7;
#            weights within 6.3e-6
#   GRPO     2 iterations, letter-share reward (mean 0.15, no group all equal): metrics within 2.9e-6
#            relative (the rollout KL); weights within 3.2e-7 at the 99.99th percentile, one element
#            of 91776 off by 4.8e-5
#   distill  4 steps, one on-policy: metrics within 1.5e-7 relative; weights within 4.5e-7
#   DPO      3 steps: metrics within 6.3e-7 relative but the implicit rewards and margins, which are
#            beta x (log-prob differences of ~150-nat sequences): within 7.6e-7 absolute (1 float32
#            ulp at 150 is 1.5e-5, times beta 0.1); weights as GRPO's, one element off by 3.1e-5
# Adam turns float32 noise in a near-zero gradient into a step of up to lr (1e-3 here): the weights
# are held to WEIGHT_ATOL but for at most WEIGHT_OUTLIERS of the elements, held to WEIGHT_MAX.
RL_RTOL, RL_ATOL = 1e-5, 1e-7
PPO_ATOL, DPO_ATOL = 5e-7, 2e-6
WEIGHT_MAX, WEIGHT_OUTLIERS = 2e-4, 1e-4
TIMING = ("iteration_seconds", "rollout/seconds", "rollout/tokens_per_s", "tokens_per_s", "seconds")
RUN_FILES = ("config.yaml", "metrics.jsonl", "summary.json")


def assert_rows_close(got: dict, want: dict, where: str, rtol=RL_RTOL, atol=RL_ATOL, skip=()) -> None:
    assert got.keys() == want.keys(), where
    for k in sorted(set(want) - set(TIMING) - set(skip)):
        np.testing.assert_allclose(got[k], want[k], rtol=rtol, atol=atol, err_msg=f"{where}: {k}")


def assert_weights_close(run, single) -> None:
    """The exported weights (gathered from both hosts: fsdp=4 splits every tensor) agree."""
    wa, wb = export_weights(run), export_weights(single)
    assert sorted(wa) == sorted(wb)
    diff = np.concatenate([np.abs(wa[k] - wb[k]).ravel() for k in wb])
    assert diff.max() <= WEIGHT_MAX, diff.max()
    assert np.mean(diff > WEIGHT_ATOL) <= WEIGHT_OUTLIERS, np.sort(diff)[-10:]


def assert_same_run(run, single, steps: int, atol=RL_ATOL, skip_first=()) -> dict:
    """Two runs of a stage agree: metrics.jsonl row for row (steps 1..steps, then any held-out row at
    the last), the summary's data report and evaluations, the exported weights; returns the summary.
    skip_first: metrics left out at step 1 and in the held-out evaluation before training."""
    got, want = (read_metrics(d / "metrics.jsonl") for d in (run, single))
    assert [r["step"] for r in got] == [r["step"] for r in want]
    assert sorted({r["step"] for r in want}) == list(range(1, steps + 1))
    for a, b in zip(got, want):
        skip = skip_first if b["step"] == 1 else ()
        assert_rows_close(a, b, f"{run.name} step {b['step']}", RL_RTOL, atol, skip)
    a, b = (json.loads((d / "summary.json").read_text()) for d in (run, single))
    assert a.keys() == b.keys() and a["data"] == b["data"]  # the report of the shared tokenizing
    for key in ("train_last", "eval_before", "eval_after", "reward_gain"):
        if b.get(key) is not None:
            assert_rows_close(a[key], b[key], key, RL_RTOL, atol, skip_first if key == "eval_before" else ())
    assert_weights_close(run, single)
    return a


def assert_only_process_0_wrote(root, stage: str, names=RUN_FILES) -> None:
    assert [w for r in reports(root, 1) for w in r["writes"]] == []
    mine = [w for w in reports(root, 0)[-1]["writes"] if w.startswith(f"{stage}/")]
    written = {w.removeprefix(f"{stage}/") for w in mine}
    for name in names:
        assert name in written, (name, sorted(written))
    assert any(w.startswith("tb/") for w in written) and "export" in written


@needs_hh
def test_ppo_iterations_match_one_process_and_only_process_0_writes(single, multi):
    root = multi[0]
    summary = assert_same_run(root / "run" / "ppo", single / "ppo", steps=2, atol=PPO_ATOL)
    assert summary["optimizer_steps"] == 2
    assert_only_process_0_wrote(root, "ppo", (*RUN_FILES, "eval_before.json", "eval_samples.jsonl"))


@needs_hh
def test_grpo_with_nonzero_rewards_matches_one_process_and_only_process_0_writes(single, multi):
    root = multi[0]
    rows = read_metrics(single / "grpo" / "metrics.jsonl")
    # the comparison means something: rewards differ within groups, so the updates are not zero
    assert all(r["reward/mean"] > 0 and r["groups/all_equal_frac"] < 1 for r in rows), rows
    assert all(r["advantages/abs_mean"] > 0.1 and r["grad_norm"] > 0.1 for r in rows), rows
    summary = assert_same_run(root / "run" / "grpo", single / "grpo", steps=2)
    assert summary["optimizer_steps"] == 2 and summary["algorithm"] == "grpo"
    assert_only_process_0_wrote(root, "grpo")


@needs_hh
def test_distill_matches_one_process_and_only_process_0_writes(single, multi):
    root = multi[0]
    summary = assert_same_run(root / "run" / "distill", single / "distill", steps=4)
    assert summary["on_policy_steps"] == 1
    assert_only_process_0_wrote(root, "distill", (*RUN_FILES, "eval_before.json"))


@needs_hh
def test_distill_on_stored_topk_matches_one_process_and_only_process_0_writes(single, multi):
    """The teacher's top-k pass with each process laying out only its rows of every chunk, then the
    student alone on the stored targets: the same run as one process's."""
    root = multi[0]
    summary = assert_same_run(root / "run" / "distill_topk", single / "distill_topk", steps=3)
    assert summary["on_policy_steps"] == 0 and summary["data"]["train"]["sequences"] == 12
    assert_only_process_0_wrote(root, "distill_topk", (*RUN_FILES, "eval_before.json"))


@needs_hh
def test_dpo_matches_one_process_and_only_process_0_writes(single, multi):
    root = multi[0]
    # at step 1 and before training the policy is the reference: every margin is 0 up to float32
    # noise, and the accuracy counts the margins above 0 (eval_before's: 0 against 0.25 measured on
    # an AVX2-only AMD EPYC)
    summary = assert_same_run(root / "run" / "dpo", single / "dpo", 3, DPO_ATOL, skip_first=("accuracy",))
    assert summary["data"]["train"]["pairs"] == 12  # 16 rows, a quarter held out
    assert_only_process_0_wrote(root, "dpo", (*RUN_FILES, "eval_before.json"))


def _numbers(report: dict, prefix: str = "") -> dict:
    """{dotted key: number} of a nested report (the reward model's evaluations nest the length baseline)."""
    out = {}
    for k, v in report.items():
        if isinstance(v, dict):
            out |= _numbers(v, f"{prefix}{k}.")
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[prefix + k] = v
    return out


@needs_hh
def test_reward_model_matches_one_process_and_only_process_0_writes(single, multi):
    """`align rm` fine-tuning on fsdp=4 over both processes: the same losses, the same held-out
    evaluation before and after (its pairs scored on the mesh, each process placing its rows), the same
    exported weights; only process 0 wrote."""
    root = multi[0]
    run, alone = root / "run" / "rm", single / "rm"
    got, want = (read_metrics(d / "metrics.jsonl") for d in (run, alone))
    assert [r["step"] for r in got] == [r["step"] for r in want] and {r["step"] for r in want} == {1, 2, 3}
    for a, b in zip(got, want):  # the last step's row carries the held-out evaluation, nested
        assert_rows_close(_numbers(a), _numbers(b), f"rm step {b['step']}")
    a, b = (json.loads((d / "summary.json").read_text()) for d in (run, alone))
    assert a["data"] == b["data"] and a["data"]["heldout_pairs"] == 4
    for key in ("eval_before", "eval_after"):
        assert_rows_close(_numbers(a[key]), _numbers(b[key]), key)
        assert a[key]["n"] == 4 and a[key]["length"]["n"] == 4
    assert a["eval_after"]["margin_mean"] != a["eval_before"]["margin_mean"]  # the steps moved the rewards
    assert_weights_close(run, alone)
    assert_only_process_0_wrote(root, "rm", (*RUN_FILES, "eval_before.json"))


# ---- (e) the probe's cached feature pass -------------------------------------------------------


def test_probe_pass_each_process_tokenizes_only_its_rows_through_the_cache(single, multi):
    """The pass on 10 pairs in batches of 4 (test_probe_cache_shares.KWARGS), data=2 x fsdp=2: plain,
    then through one cache cold, warm and partly warm (entries LOST removed); every pass gives every
    process the cache-less features, bit for bit where the cache-less batches are kept, and those of
    one process. tests/reward_models/test_probe_cache_shares.py checks the same with threads."""
    probe = multi[0] / "probe"
    runs = [dict(np.load(probe / f"process-{p}.npz")) for p in range(2)]
    assert [tuple(r["rows"]) for r in runs] == [(0, 2), (2, 4)]  # the data axis spans the processes
    mine = [{5, 6, 9, 0, 3, 4}, {7, 8, 1, 2}]  # rows 0-1 and 2-3 of the batches of BY_WIDTH
    assert BY_WIDTH == [5, 6, 7, 8, 9, 0, 1, 2, 3, 4]
    want = runs[0]["plain"]
    # one process on the same mesh (the single launch's pass): measured bit for bit, held to 1e-6
    alone = np.load(single.parent / "probe" / "process-0.npz")["plain"]
    np.testing.assert_allclose(want, alone, rtol=1e-6, atol=1e-6)
    for p, run in enumerate(runs):
        for name in ("plain", "cold", "warm", "partly_warm"):
            read = run[f"{name}_read"].tolist()
            extra = {2} if (name, p) == ("partly_warm", 0) else set()  # its row of the batch [5 2]
            assert len(read) == len(set(read)) and set(read) == mine[p] | extra, (p, name)
        for name in ("plain", "cold", "warm"):
            np.testing.assert_array_equal(run[name], want)
        kept = np.delete(np.arange(10), LOST)
        np.testing.assert_array_equal(run["partly_warm"][kept], want[kept])
        np.testing.assert_allclose(run["partly_warm"], want, rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(run["partly_warm"], runs[0]["partly_warm"])
    assert len(list((probe / "cache").glob("*.npy"))) == 10
