"""SFT train-step throughput and peak memory: align's JAX step beside TRL's SFTTrainer (transformers, torch).

    python benchmarks/train_step.py                      # gemma3-270m, batch 4, seq 512
    python benchmarks/train_step.py --preset tiny --steps 5
    python benchmarks/train_step.py --sides jax --dtype bfloat16 --trainable no_embeddings
    python benchmarks/train_step.py --sides jax,jax-merged --trainable lora --lora-rank 8

`--trainable lora` trains rank-`--lora-rank` adapters on every projection (JAX sides only): `jax` applies
them on the activations (align.training.lora), `jax-merged` through merged weights W + s A B, the
formulation align used before, kept here for comparison only.

Each side runs in a fresh subprocess (`--worker SIDE`) so its peak resident memory is its own: VmHWM
from /proc/self/status (what XLA and torch allocate on the host is invisible to tracemalloc). Both
sides train the same weights (the JAX model is written as a HF directory for transformers, in a third
subprocess, so that neither side's peak holds the other's model) on the same
random token batch, every token supervised, AdamW with the same hyper-parameters; the first
`--warmup` steps (compilation, allocator warm-up) are not timed.

`--dtype` is the compute dtype on both sides; the weights and the Adam moments stay float32 on both, so
both do the same work. JAX: param_dtype float32, activations in --dtype (align's default mixed precision,
exact Adam updates). TRL: the model is loaded in float32 and, with bfloat16, trained under torch's bf16
CPU autocast (`SFTConfig(bf16=True)`), which runs the matmuls in bfloat16 on float32 master weights.
(Loading TRL's weights in pure bfloat16, as this script did before, compared a bf16-weight torch run
with a float32-weight JAX run.) Each worker reports its weights' dtype (`param_dtype`) and TRL the dtype
its first projection computes in (`compute_dtype`). One row per case:

    side  model  B  T  dtype  step_s  tokens_per_s  peak_rss_mb  first_step_s
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from align import host_memory

ROOT = Path(__file__).resolve().parents[1]


def peak_rss_mb() -> float:
    """VmHWM (peak resident set size) of this process in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def random_tokens(args, vocab_size: int):
    import numpy as np

    return (
        np.random.default_rng(0).integers(3, min(vocab_size, 32_000), (args.batch, args.seq)).astype(np.int32)
    )


def load(args):
    from align.hub import ModelOptions, load_model

    spec = f"preset:{args.preset}" if args.preset else args.model
    # float32 weights whatever --dtype (the compute dtype): the TRL side keeps float32 weights too
    return load_model(ModelOptions(spec=spec, dtype=args.dtype, param_dtype="float32", remat=args.remat))


def worker_jax(args) -> dict:
    import jax
    import numpy as np

    from align.training import (
        OptimConfig,
        create_train_state,
        make_optimizer,
        make_train_step,
        trainable_filter,
    )
    from pipelines.stages.sft import sft_loss

    model, _ = load(args)
    if args.trainable == "lora":
        model = lora_model(model, args.lora_rank, merged=args.lora_merged)
    tokens = random_tokens(args, model.config.vocab_size)
    B, T = tokens.shape
    batch = {
        "tokens": tokens,
        "positions": np.tile(np.arange(T, dtype=np.int32), (B, 1)),
        "segment_ids": np.ones((B, T), np.int32),
        "targets": np.roll(tokens, -1, 1),
        "loss_mask": np.ones((B, T), np.float32),
    }
    batch["loss_mask"][:, -1] = 0
    optim = OptimConfig(
        learning_rate=1e-5, total_steps=10_000, weight_decay=0.0, clip_norm=1.0, schedule="constant"
    )
    optimizer = make_optimizer(optim)
    state = create_train_state(model, optimizer, trainable=trainable_filter(args.trainable))
    del model
    step = make_train_step(sft_loss(args.chunk_size), optimizer)
    times = []
    for _ in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        state, metrics = step(state, batch)
        jax.block_until_ready(metrics)
        times.append(time.perf_counter() - t0)
    return {
        "first_step_s": times[0],
        "step_s": float(np.median(times[args.warmup :])),
        "loss": float(metrics["loss"]),
        "param_dtype": sorted({str(x.dtype) for x in jax.tree.leaves(state.params)}),
    }


def lora_model(base, rank: int, *, merged: bool):
    """base with rank-`rank` adapters on every projection; merged=True: the old W + s A B forward."""
    from flax import nnx

    from align.training.lora import LoRAConfig, LoRADecoder

    class MergedLoRADecoder(LoRADecoder):
        def hidden(self, tokens, positions, segment_ids, *, attn_mask=None):
            return self.merged().hidden(tokens, positions, segment_ids, attn_mask=attn_mask)

        def unembed_matrix(self):
            return self.merged().unembed_matrix()

    cls = MergedLoRADecoder if merged else LoRADecoder
    return cls(base, LoRAConfig(rank=rank, alpha=2.0 * rank), rngs=nnx.Rngs(0))


def worker_export(args) -> dict:
    """Write a transformers-loadable directory holding exactly the weights the JAX side trains."""
    from align.model.hf_io import save_hf_dir

    model, tokenizer = load(args)
    return {"path": str(save_hf_dir(model, Path(args.hf_dir), tokenizer=tokenizer.hf))}


def worker_trl(args) -> dict:
    import numpy as np
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    # float32 master weights; bfloat16 compute comes from autocast (bf16=True below), as on the JAX side
    model = AutoModelForCausalLM.from_pretrained(
        args.hf_dir, dtype=torch.float32, attn_implementation="eager"
    )
    tokenizer = AutoTokenizer.from_pretrained(args.hf_dir)
    if args.trainable == "no_embeddings":
        model.get_input_embeddings().weight.requires_grad_(False)
    tokens = random_tokens(args, model.config.vocab_size)
    data = Dataset.from_dict({"input_ids": [row.tolist() for row in tokens] * (args.warmup + args.steps)})
    times, starts, compute = [], [], set()
    first = next(m for m in model.modules() if isinstance(m, torch.nn.Linear))
    first.register_forward_hook(lambda module, inputs, output: compute.add(str(output.dtype)))

    class Timer(TrainerCallback):
        def on_step_begin(self, *a, **k):
            starts.append(time.perf_counter())

        def on_step_end(self, *a, **k):
            times.append(time.perf_counter() - starts[-1])

    config = SFTConfig(
        output_dir=tempfile.mkdtemp(),
        per_device_train_batch_size=args.batch,
        max_length=args.seq,
        max_steps=args.warmup + args.steps,
        learning_rate=1e-5,
        weight_decay=0.0,
        max_grad_norm=1.0,
        lr_scheduler_type="constant",
        optim="adamw_torch",
        logging_steps=10_000,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        bf16=args.dtype == "bfloat16",
        gradient_checkpointing=args.remat,
        dataloader_num_workers=0,
        packing=False,
        seed=0,
        disable_tqdm=True,
    )
    trainer = SFTTrainer(
        model=model, args=config, train_dataset=data, processing_class=tokenizer, callbacks=[Timer()]
    )
    out = trainer.train()
    return {
        "first_step_s": times[0],
        "step_s": float(np.median(times[args.warmup :])),
        "loss": float(out.training_loss),
        "param_dtype": sorted(
            {str(p.dtype).removeprefix("torch.") for p in model.parameters() if p.requires_grad}
        ),
        "compute_dtype": sorted(d.removeprefix("torch.") for d in compute),
    }


# "+mem": the side under align/host_memory.py's glibc malloc settings (one arena, no mmap, no
# trimming): through ALIGN_KEEP_HOST_MEMORY for JAX, the same settings as glibc tunables for TRL.
SIDE_ENV = {
    "jax": ("jax", {host_memory.ENV: "0"}),
    "jax-merged": ("jax", {host_memory.ENV: "0"}),
    "jax+mem": ("jax", {host_memory.ENV: "1"}),
    "trl+mem": ("trl", {"GLIBC_TUNABLES": host_memory.GLIBC_TUNABLES}),
}


def run_worker(side: str, args) -> dict:
    worker, extra_env = SIDE_ENV.get(side, (side, {}))
    cmd = [sys.executable, __file__, "--worker", worker, "--hf-dir", args.hf_dir] + args.argv
    if side == "jax-merged":
        cmd.append("--lora-merged")
    env = {**os.environ, "PYTHONPATH": str(ROOT), **extra_env}
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env, timeout=args.timeout)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    return {"side": side, "error": (proc.stderr or proc.stdout)[-1500:]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="gemma3-270m", help="any align.load spec")
    p.add_argument("--preset", default=None, help="a random-init preset instead of --model (e.g. tiny)")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seq", type=int, default=512)
    p.add_argument("--steps", type=int, default=3, help="timed steps")
    p.add_argument("--warmup", type=int, default=1, help="untimed first steps (compilation)")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"], help="compute dtype")
    p.add_argument("--trainable", default="all", choices=["all", "no_embeddings", "lora"])
    p.add_argument("--lora-rank", type=int, default=8, help="with --trainable lora")
    p.add_argument("--lora-merged", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--remat", action="store_true", help="JAX remat / torch gradient checkpointing")
    p.add_argument("--chunk-size", type=int, default=1024, help="JAX loss: tokens per logits tile")
    p.add_argument(
        "--sides",
        default="jax,trl",
        help="comma list of jax, trl, jax+mem, trl+mem "
        "(+mem: align/host_memory.py's malloc settings; jax-merged: LoRA through "
        "merged weights)",
    )
    p.add_argument("--timeout", type=int, default=3600)
    p.add_argument("--json", default=None, help="also write the rows here")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--hf-dir", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.worker:
        result = {"jax": worker_jax, "trl": worker_trl, "export": worker_export}[args.worker](args)
        print(json.dumps({"side": args.worker, **result, "peak_rss_mb": peak_rss_mb()}))
        return 0
    model = f"preset:{args.preset}" if args.preset else args.model
    rows = []
    sides = args.sides.split(",")
    if args.trainable == "lora" and any(SIDE_ENV.get(side, (side,))[0] == "trl" for side in sides):
        p.error("--trainable lora runs the JAX sides only (jax, jax-merged, jax+mem)")
    with tempfile.TemporaryDirectory() as tmp:  # the HF copy of the weights, for the trl side
        args.hf_dir = str(Path(tmp) / "hf")
        if any(SIDE_ENV.get(side, (side,))[0] == "trl" for side in sides):
            exported = run_worker("export", args)
            if "error" in exported:
                print(f"export of the JAX weights for transformers failed: {exported['error']}")
                return 1
        print(
            f"{'side':<8} {'model':<14} {'B':>2} {'T':>5} {'dtype':<9} {'step_s':>8} {'tokens/s':>9} "
            f"{'peak_rss_mb':>11} {'first_step_s':>12}"
        )
        for side in sides:
            r = run_worker(side, args)
            r.update(model=model, batch=args.batch, seq=args.seq, dtype=args.dtype, trainable=args.trainable)
            if "error" in r:
                print(f"{side:<8} {model:<14} failed: {r['error']}")
            else:
                r["tokens_per_s"] = args.batch * args.seq / r["step_s"]
                print(
                    f"{side:<8} {model:<14} {args.batch:>2} {args.seq:>5} {args.dtype:<9} "
                    f"{r['step_s']:>8.3f} {r['tokens_per_s']:>9.1f} {r['peak_rss_mb']:>11.0f} "
                    f"{r['first_step_s']:>12.2f}",
                    flush=True,
                )
            rows.append({**r, "side": side})
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    import align

    align.setup()  # XLA:CPU defaults (and ALIGN_KEEP_HOST_MEMORY), as the `align` command line runs
    sys.exit(main())
