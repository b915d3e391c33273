"""How cost grows: train-step time and peak memory against sequence length and batch.

    .venv/bin/python benchmarks/scaling.py                       # 2-layer gemma3-270m shape, CPU-sized
    .venv/bin/python benchmarks/scaling.py --layers 18 --lengths 512 1024 2048 4096 8192

Each case runs in a fresh subprocess (peak RSS = VmHWM of that process) and times a jitted
forward + backward of the SFT loss (chunked cross-entropy, so [B, T, V] logits never exist), once
with query-chunked attention (the default) and once with dense [T, S] attention, so the quadratic
memory of materialised attention shows up as the gap between the two columns. Random weights.
One row per case; no pass/fail.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys


def run_case(layers: int, vocab: int, batch: int, length: int, chunk: int | None, steps: int) -> dict:
    import time

    import jax
    import jax.numpy as jnp
    from flax import nnx

    from align.model import Decoder, ModelConfig
    from align.training.logprobs import chunked_token_logprobs

    cfg = ModelConfig.gemma3_270m()
    cfg = cfg.replace(
        num_layers=layers, vocab_size=vocab, layer_types=ModelConfig.gemma3_pattern(layers)[:layers]
    )
    if layers < 6:  # keep one global layer in short stacks so full attention is measured too
        cfg = cfg.replace(layer_types=cfg.layer_types[:-1] + ("global",))
    model = Decoder(cfg, rngs=nnx.Rngs(0), attn_chunk=chunk, remat=True)
    tokens = jax.random.randint(jax.random.PRNGKey(0), (batch, length), 0, vocab)
    pos = jnp.broadcast_to(jnp.arange(length), (batch, length))
    seg = jnp.ones((batch, length), jnp.int32)

    @nnx.jit
    def step(model):
        def loss(m):
            h = m.hidden(tokens, pos, seg)
            lp = chunked_token_logprobs(h, m.unembed_matrix(), jnp.roll(tokens, -1, 1), chunk_size=1024)
            return -jnp.mean(lp)

        return nnx.value_and_grad(loss)(model)

    jax.block_until_ready(step(model))  # compile
    t0 = time.perf_counter()
    for _ in range(steps):
        jax.block_until_ready(step(model))
    dt = (time.perf_counter() - t0) / steps
    with open("/proc/self/status") as f:
        hwm_kb = next(int(line.split()[1]) for line in f if line.startswith("VmHWM"))
    return {"step_s": dt, "tokens_per_s": batch * length / dt, "peak_gib": hwm_kb / 2**20}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--vocab", type=int, default=262_144)
    p.add_argument("--lengths", type=int, nargs="+", default=[512, 1024, 2048, 4096, 8192])
    p.add_argument(
        "--batches", type=int, nargs="+", default=[1, 2, 4], help="batch sizes tried at --batch-length"
    )
    p.add_argument("--batch-length", type=int, default=1024)
    p.add_argument("--chunk", type=int, default=512, help="query chunk of the memory-linear attention")
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--case", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.case:
        print(json.dumps(run_case(**json.loads(args.case))))
        return

    def measure(batch, length, chunk):
        case = dict(
            layers=args.layers, vocab=args.vocab, batch=batch, length=length, chunk=chunk, steps=args.steps
        )
        out = subprocess.run(
            [sys.executable, __file__, "--case", json.dumps(case)], capture_output=True, text=True
        )
        if out.returncode:
            return None
        return json.loads(out.stdout.strip().splitlines()[-1])

    print(f"gemma3-270m shape, {args.layers} layers, vocab {args.vocab}, remat, chunked CE, CPU")
    print(
        f"{'B':>3} {'T':>6} | {'chunked s/step':>14} {'tok/s':>8} {'peak GiB':>8} | "
        f"{'dense s/step':>12} {'tok/s':>8} {'peak GiB':>8}"
    )
    cases = [(1, t) for t in args.lengths] + [(b, args.batch_length) for b in args.batches if b != 1]
    for batch, length in cases:
        row = [measure(batch, length, args.chunk), measure(batch, length, None)]
        cells = [
            f"{r['step_s']:>14.2f} {r['tokens_per_s']:>8.0f} {r['peak_gib']:>8.2f}"
            if r
            else f"{'failed':>32}"
            for r in row
        ]
        print(f"{batch:>3} {length:>6} | {cells[0]} | {cells[1]}", flush=True)


if __name__ == "__main__":
    import align

    align.setup()  # XLA:CPU defaults (and ALIGN_KEEP_HOST_MEMORY), as the `align` command line runs
    main()
