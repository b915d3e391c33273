"""RL-loop throughput: align's GRPO iteration beside TRL's GRPOTrainer (transformers, torch), CPU.

    python benchmarks/rl_step.py                               # preset:tiny, 4 prompts x G 4, P 64, M 32
    /work/tools/realrun python benchmarks/rl_step.py --model gemma3-270m --iterations 3 --side-timeout 1800

One iteration = sample B * G responses (B prompts, G each), score them (reference log-probs; JAX
also the policy's pi_old), reward them, group-relative advantages, one AdamW update on all B * G
rows. Both sides: the same weights (the JAX model is written as a HF directory for transformers by
a third process, so neither side's peak RSS holds the other's model), the same prompts, the same
reward, float32 weights and compute, temperature 1 without top-k / top-p, beta (k3 KL to a frozen
reference) 0.04 by default, clip 0.2, token-mean loss (align aggregation="token", TRL loss_type
"dapo"), AdamW lr 1e-6 constant, clip norm 1.0, no remat / gradient checkpointing (TRL's default
is on) unless --remat.

- JAX: `align.rl.grpo.make_grpo_iteration` (group_size G, num_iterations 1, minibatch_size B * G,
  so one update per iteration) driven by `align.rl.loop.rl_loop`; the time is its
  `iteration_seconds` (sampler rollout, one jitted scoring pass, host reward, the update step).
- TRL: `GRPOTrainer` with num_generations G, per_device_train_batch_size B * G,
  gradient_accumulation_steps 1, steps_per_generation 1 (generation_batch_size B * G, one optimizer
  step per generation), num_iterations 1; the time is on_step_begin -> on_step_end (generation,
  reference log-probs, forward, backward, optimizer step; the Trainer's logging is left out). With
  num_iterations 1 TRL skips pi_old (it reuses the training forward's detached log-probs), so the
  JAX side does one forward pass more.

Prompt length: each prompt is a text of words that the model's tokenizer (with <bos>, as TRL calls
it) turns into exactly P tokens; both sides use those ids (`prompt_sha` in each row). Response
length: every response has exactly M tokens: JAX samples with no stop ids, TRL with
`generation_kwargs={"min_new_tokens": M}` (the EOS ids are suppressed until M tokens) and
max_completion_length M; each row reports the response lengths it saw. Reward: the share of
vowels among the letters of the decoded response (skip_special_tokens), deterministic and
independent of the length. The first --warmup iterations (compilation) are not timed; s/it is
the median of the timed ones. One JSON row per side, then a summary row and a markdown row:

    side  model  B  G  P  M  s_per_it  it_per_s  peak_rss_mb  first_it_s  response_len  loadavg
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SIDES = ("jax", "trl")
# Common English words: whole tokens for Gemma's tokenizer, a few byte-pair merges for the tiny one.
WORDS = (
    "the of and to in is was for on that with as by at from his an were are which this be or has had "
    "not but first one their its new after who they have two her she been other when there all into "
    "time may years more most only over city some world would where later up such used many can state"
).split()


def peak_rss_mb() -> float:
    """VmHWM (peak resident set size) of this process in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def vowel_fraction(text: str) -> float:
    """The reward of both sides: the share of vowels among the letters (0 without letters)."""
    letters = [c for c in text.lower() if c.isalpha()]
    return sum(c in "aeiou" for c in letters) / max(len(letters), 1)


def vowel_reward(prompts, completions, **kwargs) -> list[float]:
    """vowel_fraction as a TRL reward function (completions decoded with skip_special_tokens)."""
    return [vowel_fraction(c) for c in completions]


def prompt_texts(hf_tokenizer, count: int, length: int, seed: int = 0) -> list[str]:
    """`count` texts of words that `hf_tokenizer(text)` (<bos> included) turns into exactly `length` ids."""
    tail = [*WORDS, *".,;:!?"]
    texts = []
    for i in range(count):
        rng, text = random.Random(seed * 1000 + i), ""
        while True:
            for w in rng.sample(WORDS, len(WORDS)) + tail:  # random words first, then short fillers
                candidate = f"{text} {w}" if text and w in WORDS else text + w
                n = len(hf_tokenizer(candidate)["input_ids"])
                if n <= length:
                    break
            else:
                raise ValueError(f"no text of exactly {length} tokens for prompt {i}: {text!r} is short")
            text = candidate
            if n == length:
                break
        texts.append(text)
    return texts


def prompt_ids(hf_tokenizer, args) -> tuple[list[str], list[list[int]], str]:
    """(texts, their token ids as TRL tokenizes them, a digest of the ids)."""
    texts = prompt_texts(hf_tokenizer, args.prompts, args.prompt_len)
    ids = [list(map(int, x)) for x in hf_tokenizer(texts)["input_ids"]]
    return texts, ids, hashlib.sha256(json.dumps(ids).encode()).hexdigest()[:12]


def load(args):
    from align.hub import ModelOptions, load_model

    return load_model(ModelOptions(spec=args.model, remat=args.remat))


def worker_export(args) -> dict:
    """Write a transformers-loadable directory holding exactly the weights the JAX side trains."""
    from align.model.hf_io import save_hf_dir

    model, tokenizer = load(args)
    return {"path": str(save_hf_dir(model, Path(args.hf_dir), tokenizer=tokenizer.hf))}


class DecodedReward:
    """align RewardFn: vowel_fraction of each response's decoded text, as TRL decodes it."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def __call__(self, prompt, prompt_mask, response, response_mask):
        import numpy as np

        response, mask = np.asarray(response), np.asarray(response_mask) > 0
        texts = [self.tokenizer.decode(row[m]) for row, m in zip(response, mask, strict=True)]
        return np.asarray([vowel_fraction(t) for t in texts], np.float32)


def worker_jax(args) -> dict:
    import numpy as np

    from align.rl.grpo import GRPOConfig, make_grpo_iteration
    from align.rl.loop import RLLoopConfig, owned_train_state, rl_loop
    from align.rl.rollout import RolloutConfig
    from align.sampling import SamplingConfig
    from align.training import OptimConfig, make_optimizer

    model, tokenizer = load(args)
    _, ids, sha = prompt_ids(tokenizer.hf, args)
    sampling = SamplingConfig(
        max_new_tokens=args.new_tokens, temperature=1.0, stop_ids=(), pad_id=tokenizer.pad_id
    )  # no stop ids: every response is exactly M tokens
    config = GRPOConfig(
        rollout=RolloutConfig(sampling),
        group_size=args.group,
        num_iterations=1,
        minibatch_size=args.prompts * args.group,
        beta=args.beta,
        clip_eps=0.2,
        aggregation="token",
    )
    optimizer = make_optimizer(
        OptimConfig(
            learning_rate=args.lr, total_steps=10**6, weight_decay=0.0, clip_norm=1.0, schedule="constant"
        )
    )
    iterate = make_grpo_iteration(config, optimizer, model, DecodedReward(tokenizer))
    prompts = {"tokens": np.asarray(ids, np.int32), "lengths": np.full(len(ids), args.prompt_len, np.int32)}
    n = args.warmup + args.iterations
    result = rl_loop(
        iterate,
        owned_train_state(model, optimizer, seed=args.seed),
        iter([(prompts, None)] * n),
        RLLoopConfig(iterations=n, progress=False),
        kl_coef=args.beta,
    )
    times = [row["iteration_seconds"] for row in result.logs]
    return {
        **_timing(times, args.warmup),
        "response_len": sorted({row["response/length"] for row in result.logs}),
        "reward_mean": result.logs[-1]["reward/mean"],
        "prompt_sha": sha,
    }


def _timing(times: list[float], warmup: int) -> dict:
    import numpy as np

    s = float(np.median(times[warmup:]))
    return {"first_it_s": times[0], "s_per_it": s, "it_per_s": 1.0 / s, "times_s": times}


def worker_trl(args) -> dict:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    model = AutoModelForCausalLM.from_pretrained(args.hf_dir, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(args.hf_dir)
    texts, _, sha = prompt_ids(tokenizer, args)
    starts, times = [], []

    class Timer(TrainerCallback):
        def on_step_begin(self, *a, **k):
            starts.append(time.perf_counter())

        def on_step_end(self, *a, **k):
            times.append(time.perf_counter() - starts[-1])

    M, rows = args.new_tokens, args.prompts * args.group
    config = GRPOConfig(
        output_dir=tempfile.mkdtemp(prefix="rl_step_trl_"),
        num_generations=args.group,
        per_device_train_batch_size=rows,  # completions, i.e. B prompts x G
        gradient_accumulation_steps=1,
        steps_per_generation=1,  # one optimizer step per generation batch
        num_iterations=1,
        max_steps=args.warmup + args.iterations,
        max_completion_length=M,
        generation_kwargs={"min_new_tokens": M},  # EOS suppressed until M tokens: all exactly M
        temperature=1.0,
        top_p=1.0,
        top_k=0,
        beta=args.beta,
        epsilon=0.2,
        loss_type="dapo",
        scale_rewards="group",
        learning_rate=args.lr,
        lr_scheduler_type="constant",
        optim="adamw_torch",
        weight_decay=0.0,
        max_grad_norm=1.0,
        gradient_checkpointing=args.remat,
        bf16=False,
        use_cpu=True,
        use_vllm=False,
        report_to=[],
        logging_steps=1,
        save_strategy="no",
        dataloader_num_workers=0,
        disable_tqdm=True,
        seed=args.seed,
    )
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=vowel_reward,
        args=config,
        train_dataset=Dataset.from_dict({"prompt": texts}),
        processing_class=tokenizer,
        callbacks=[Timer()],
    )
    trainer.train()
    logs = [r for r in trainer.state.log_history if "completions/mean_length" in r]
    lengths = {r[k] for r in logs for k in ("completions/min_length", "completions/max_length")}
    return {
        **_timing(times, args.warmup),
        "response_len": sorted(lengths),
        "reward_mean": logs[-1].get("reward"),
        "prompt_sha": sha,
    }


WORKERS = {"export": worker_export, "jax": worker_jax, "trl": worker_trl}


def run_worker(side: str, args) -> dict:
    """The worker's JSON row; on a timeout a `timed_out_s` row, on a failure an `error` row."""
    cmd = [sys.executable, __file__, *args.argv, "--worker", side, "--hf-dir", args.hf_dir]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    try:  # a side too slow for the limit is a result, not a crash
        proc = subprocess.run(
            cmd, check=False, capture_output=True, text=True, env=env, timeout=args.side_timeout
        )
    except subprocess.TimeoutExpired:
        return {"timed_out_s": args.side_timeout}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    return {"error": (proc.stderr or proc.stdout)[-1500:]}


def summary(rows: dict[str, dict], args) -> dict:
    """The comparison of the sides that finished: JAX it/s over TRL it/s when both did."""
    jax, trl = rows.get("jax", {}), rows.get("trl", {})
    ratio = jax["it_per_s"] / trl["it_per_s"] if "it_per_s" in jax and "it_per_s" in trl else None
    same = jax.get("prompt_sha") == trl.get("prompt_sha") if jax and trl else None
    return {**_case(args), "side": "summary", "jax_over_trl": ratio, "same_prompts": same}


def markdown_row(rows: dict[str, dict], s: dict) -> str:
    def cell(r):
        if "s_per_it" in r:
            return f"{r['s_per_it']:.2f} ({r['it_per_s']:.3f})"
        return f"timed out at {r['timed_out_s']:.0f} s" if "timed_out_s" in r else "-"

    def rss(r):
        return f"{r['peak_rss_mb']:.0f}" if "peak_rss_mb" in r else "-"

    j, t = rows.get("jax", {}), rows.get("trl", {})
    ratio = f"{s['jax_over_trl']:.2f}x" if s["jax_over_trl"] is not None else "-"
    return (
        f"| `{s['model']}` | {s['B']} x {s['G']} | {s['P']} | {s['M']} | {cell(j)} | {cell(t)} | {ratio} "
        f"| {rss(j)} / {rss(t)} MB | {' '.join(f'{x:.2f}' for x in s['loadavg'])} |"
    )


def _case(args) -> dict:
    return {
        "model": args.model,
        "B": args.prompts,
        "G": args.group,
        "P": args.prompt_len,
        "M": args.new_tokens,
        "beta": args.beta,
        "loadavg": list(os.getloadavg()),
    }


def _emit(row: dict, out: str | None) -> None:
    print(json.dumps(row), flush=True)
    if out:
        with open(out, "a") as f:
            f.write(json.dumps(row) + "\n")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="preset:tiny", help="any align.load spec, e.g. gemma3-270m")
    p.add_argument("--prompts", type=int, default=4, help="B: distinct prompts per iteration")
    p.add_argument("--group", type=int, default=4, help="G: responses per prompt (>= 2)")
    p.add_argument("--prompt-len", type=int, default=64, help="P: tokens per prompt, <bos> included")
    p.add_argument("--new-tokens", type=int, default=32, help="M: tokens per response")
    p.add_argument("--iterations", type=int, default=3, help="timed iterations")
    p.add_argument("--warmup", type=int, default=1, help="untimed first iterations (compilation)")
    p.add_argument("--beta", type=float, default=0.04, help="k3 KL weight (0: no reference pass)")
    p.add_argument("--lr", type=float, default=1e-6)
    p.add_argument("--remat", action="store_true", help="JAX remat / torch gradient checkpointing")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sides", default="jax,trl", help="comma list of jax, trl")
    p.add_argument("--side-timeout", type=float, default=None, help="seconds per side (a row says so)")
    p.add_argument("--out", default=None, help="JSON-lines file the rows are appended to")
    p.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    p.add_argument("--hf-dir", help=argparse.SUPPRESS)
    return p


def parse_args(argv=None) -> argparse.Namespace:
    p = _parser()
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    args.side_list = [s for s in args.sides.split(",") if s]
    if not args.side_list or set(args.side_list) - set(SIDES):
        p.error(f"--sides {args.sides!r}: expected a comma list of {', '.join(SIDES)}")
    if args.group < 2:
        p.error(f"--group {args.group}: group-relative advantages need at least 2 responses per prompt")
    for name in ("prompts", "new_tokens", "iterations"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} {getattr(args, name)}: must be at least 1")
    if args.prompt_len < 2:
        p.error(f"--prompt-len {args.prompt_len}: <bos> and at least one word need 2 tokens")
    for name in ("warmup", "beta"):
        if getattr(args, name) < 0:
            p.error(f"--{name} {getattr(args, name)}: must not be negative")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker:
        if args.worker != "trl":
            import align

            align.setup()  # XLA:CPU defaults, as the `align` command line runs
        row = WORKERS[args.worker](args)
        print(json.dumps({**row, "peak_rss_mb": peak_rss_mb()}))
        return 0
    rows = {}
    with tempfile.TemporaryDirectory(prefix="rl_step_") as tmp:  # the HF copy of the weights for TRL
        args.hf_dir = str(Path(tmp) / "hf")
        if "trl" in args.side_list:
            exported = run_worker("export", args)
            if "path" not in exported:
                print(f"export of the JAX weights for transformers failed: {exported}", file=sys.stderr)
                return 1
        for side in args.side_list:
            rows[side] = {**_case(args), "side": side, **run_worker(side, args)}
            _emit(rows[side], args.out)
    s = summary(rows, args)
    _emit(s, args.out)
    print(
        "| model | B x G | P | M | JAX s/it (it/s) | TRL s/it (it/s) | JAX / TRL | peak RSS JAX / TRL "
        "| load average |\n|---|---|---|---|---|---|---|---|---|\n" + markdown_row(rows, s)
    )
    return 1 if any("error" in r for r in rows.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
