"""Distillation step throughput: align's JAX step beside TRL's GKD loss (transformers, torch), CPU.

    python benchmarks/distill_step.py                                  # tiny preset teacher, B 4 x 128
    python benchmarks/distill_step.py --teacher gemma3-270m --batch 2 --seq 128 --steps 3
    python benchmarks/distill_step.py --teacher runs/quickstart/variants/chat --beta 0 --batch 2 --seq 128 \
        --keep first_n --num-layers 9 --steps 2 --warmup 1 --side-timeout 1500 --out rows.jsonl
                                                      # gemma-3-270m -> its first 9 layers (the nano config)

Both sides train the same student (the teacher's even layers, or with `--keep first_n --num-layers N`
its first N, align.rl.distill.student_from_teacher)
against the same frozen teacher on the same random token batch, every token supervised, off-policy
(GKD lambda = 0), generalized JSD with the same beta, AdamW (lr 1e-5, clip 1.0), float32.

TRL side: one step is `GKDTrainer.compute_loss` (called unbound with the teacher and beta it reads:
student forward, teacher forward under no_grad, `generalized_jsd_loss` on the full [B, T, V] logits),
then backward and torch's AdamW step; the HF Trainer's loop around it is left out, which if anything
favours TRL. JAX side: align's jitted step (teacher forward, chunked JSD, student backward, AdamW).
Each side runs in its own subprocess; the first --warmup steps (compilation) are not timed; the
median of the timed steps is reported. One JSON row per side:

    side  teacher  student  B  T  beta  step_s  tokens_per_s  peak_rss_mb  first_step_s  loss
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _pair(args):
    from align.hub import ModelOptions, load_model
    from align.rl.distill import kept_layers, student_from_teacher

    teacher, tokenizer = load_model(ModelOptions(spec=args.teacher))
    keep = kept_layers(teacher.config.num_layers, args.keep, args.num_layers)
    student = student_from_teacher(teacher, keep)
    return student, teacher, tokenizer


def _tokens(args, vocab: int):
    import numpy as np

    return np.random.default_rng(0).integers(3, min(vocab, 32_000), (args.batch, args.seq)).astype(np.int32)


def worker_prep(args) -> dict:
    from align.model.hf_io import save_hf_dir

    student, teacher, tokenizer = _pair(args)
    save_hf_dir(student, Path(args.hf_dir) / "student", tokenizer=tokenizer.hf)
    save_hf_dir(teacher, Path(args.hf_dir) / "teacher", tokenizer=tokenizer.hf)
    return {}


def worker_jax(args) -> dict:
    import jax
    import numpy as np

    from align.rl.distill import Distiller, DistillLoss, distill_loss_fn, student_only
    from align.training import OptimConfig, create_train_state, make_optimizer, make_train_step

    student, teacher, _ = _pair(args)
    optimizer = make_optimizer(
        OptimConfig(learning_rate=1e-5, warmup_steps=0, total_steps=10**6, weight_decay=0.0, clip_norm=1.0)
    )
    state = create_train_state(Distiller(student, teacher), optimizer, trainable=student_only("all"))
    loss = DistillLoss(beta=args.beta, chunk_size=args.chunk_size, vocab_chunk=args.vocab_chunk)
    step = make_train_step(distill_loss_fn(loss), optimizer)
    tokens = _tokens(args, teacher.config.vocab_size)
    B, T = tokens.shape
    mask = np.ones((B, T), np.float32)
    mask[:, -1] = 0  # the last token has no target (TRL's shift drops it too)
    batch = {
        "tokens": tokens,
        "positions": np.tile(np.arange(T, dtype=np.int32), (B, 1)),
        "segment_ids": np.ones((B, T), np.int32),
        "targets": np.concatenate([tokens[:, 1:], np.zeros((B, 1), np.int32)], 1),
        "loss_mask": mask,
    }
    times, value = [], None
    for _ in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        state, metrics = step(state, batch)
        value = float(jax.device_get(metrics["loss"]))
        times.append(time.perf_counter() - t0)
    return {"first_step_s": times[0], "step_s": float(np.median(times[args.warmup :])), "loss": value}


def worker_trl(args) -> dict:
    import types

    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM
    from trl.experimental.gkd.gkd_trainer import GKDTrainer

    def load(name):
        path = Path(args.hf_dir) / name
        return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="eager")

    student, teacher = load("student"), load("teacher")
    student.train()
    trainer = types.SimpleNamespace(
        teacher_model=teacher, beta=args.beta, generalized_jsd_loss=GKDTrainer.generalized_jsd_loss
    )
    optimizer = torch.optim.AdamW(student.parameters(), lr=1e-5, weight_decay=0.0)
    ids = torch.tensor(_tokens(args, student.config.vocab_size), dtype=torch.long)
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone()}
    times, value = [], None
    for _ in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        loss = GKDTrainer.compute_loss(trainer, student, inputs)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        value = float(loss.detach())
        times.append(time.perf_counter() - t0)
    return {"first_step_s": times[0], "step_s": float(np.median(times[args.warmup :])), "loss": value}


WORKERS = {"prep": worker_prep, "jax": worker_jax, "trl": worker_trl}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teacher", default="preset:tiny", help="model spec of the teacher")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--beta", type=float, default=0.5)
    p.add_argument("--keep", default="every_other", choices=("every_other", "first_n"), help="student layers")
    p.add_argument("--num-layers", type=int, default=0, help="with --keep first_n: how many")
    p.add_argument("--chunk-size", type=int, default=256)
    p.add_argument("--vocab-chunk", type=int, default=None)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--sides", default="jax,trl")
    p.add_argument("--side-timeout", type=float, default=None, help="seconds per side (a row says so)")
    p.add_argument("--out", default=None, help="JSON-lines file the rows are appended to")
    p.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    p.add_argument("--hf-dir", help=argparse.SUPPRESS)
    return p


def main() -> None:
    args = _parser().parse_args()
    if args.worker:
        if args.worker != "trl":
            import align

            align.setup()
        row = WORKERS[args.worker](args)
        print(json.dumps({**row, "peak_rss_mb": peak_rss_mb()}))
        return
    hf_dir = tempfile.mkdtemp(prefix="distill_bench_")  # the exported teacher and student (GBs)
    try:
        _run_sides(args, hf_dir)
    finally:
        shutil.rmtree(hf_dir, ignore_errors=True)


def _run_sides(args, hf_dir: str) -> None:
    argv = sys.argv[1:]
    for side in ["prep", *args.sides.split(",")]:
        cmd = [sys.executable, __file__, *argv, "--worker", side, "--hf-dir", hf_dir]
        head = {"side": side, "teacher": args.teacher, "student": _student_name(args), "B": args.batch,
                "T": args.seq, "beta": args.beta}  # fmt: skip
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=args.side_timeout)
        except subprocess.TimeoutExpired:  # a side too slow for the limit is a result, not a crash
            _emit({**head, "timed_out_s": args.side_timeout}, args.out)
            continue
        if proc.returncode:
            sys.exit(f"{side} failed:\n{proc.stderr[-3000:]}")
        if side == "prep":
            continue
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        _emit({**head, **row, "tokens_per_s": args.batch * args.seq / row["step_s"]}, args.out)


def _student_name(args) -> str:
    return args.keep if args.keep == "every_other" else f"first_{args.num_layers}"


def _emit(row: dict, out: str | None) -> None:
    print(json.dumps(row), flush=True)
    if out:
        with open(out, "a") as f:
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
