"""Generation throughput: the JAX KV-cache sampler beside `transformers.generate`, same model, same run.

    .venv/bin/python benchmarks/generate.py                      # gemma3-270m, batch 8, 32 new tokens
    .venv/bin/python benchmarks/generate.py --batch 8 32 --new-tokens 128

"jax" is the sampler as `generate` runs it (on CPU: the decode layout, vocab-major logits and
per-query attention products); "jax plain" is the same sampler with cpu_layout=False, to show what
that layout buys (--no-plain skips it); --out-first adds "jax out-first", the decode layout with
[out, in] copies of the layer weights made in each call (generate's out_first_weights), which paid
off on one machine and not on another; --decode-weights bfloat16 adds "jax bf16", the decode layout
with the decode loop's matmul weights stored in bfloat16 (generate's decode_weights; float32 sums),
and the share of its greedy tokens equal to the float32 column's. Both sides decode greedily with
stop tokens disabled, so they produce exactly B * new_tokens tokens.
The JAX number excludes compilation (one warm-up call of the same shape); torch gets one warm-up too.
The sides' calls are timed in turn (jax, torch, jax, torch, ...): tok/s columns are each side's best
call, and the paired column is the median (and range) of torch-time / jax-time over the pairs, each pair
taken in the same minute of the machine. Prints one comparison row per case; no pass/fail.

Beside each case: the weight-streaming limit, B / (bytes of weights a step reads / GB/s), with GB/s
what a `jnp` row sum over the [V, D] embedding table streamed just before and just after the case's
timed calls (best of 5 each): no decode step reads its weights faster than that; "limit" is for the
float32 weights, "bf16 limit" for the bf16 ones. And the compute limit, B / (2 * matmul weights /
FLOP/s), with FLOP/s what the float32 dot `VD,BD->VB` of the unembedding table with the case's B rows
reached (best of 5): on a CPU with few cores and no wide vector units a batch-32 step is bound by its
multiply-adds, not by streaming the weights, and no layout gets past this one.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

PROMPTS = [
    "The capital of France is",
    "Write a short story about a robot:",
    "def quicksort(xs):",
    "Three facts about the ocean:",
    "The best way to learn a language is",
    "Once upon a time",
    "Explain photosynthesis to a child.",
    "Q: What is 17 * 3?\nA:",
]


def _prompts(batch):
    return [PROMPTS[i % len(PROMPTS)] for i in range(batch)]


def jax_runner(loaded, batch, new_tokens, cpu_layout=None, out_first_weights=False, decode_weights="float32"):
    """A no-argument callable that runs one JAX generate call; compiled by the time it is returned."""
    import jax

    from align.sampling import SamplingConfig, generate
    from align.sampling.text import encode_texts, pad_prompts

    ids = encode_texts(loaded.tokenizer, _prompts(batch), chat=False)
    tokens, lengths = pad_prompts(ids, loaded.tokenizer.pad_id)
    cfg = SamplingConfig(max_new_tokens=new_tokens)  # no stop ids: always new_tokens tokens
    run = lambda: jax.block_until_ready(  # noqa: E731
        generate(
            loaded.model,
            tokens,
            lengths,
            cfg,
            cpu_layout=cpu_layout,
            out_first_weights=out_first_weights,
            decode_weights=decode_weights,
        ).tokens
    )
    run()  # compile
    return run


def torch_runner(model, tokenizer, batch, new_tokens):
    """A no-argument callable that runs one `transformers.generate` call, after one warm-up call."""
    import torch

    tok = tokenizer.hf
    tok.padding_side = "left"
    enc = tok(_prompts(batch), return_tensors="pt", padding=True)
    kw = dict(
        max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, pad_token_id=tok.pad_token_id
    )

    def run():
        with torch.no_grad():
            model.generate(**enc, **kw)

    run()
    return run


def step_bytes(model) -> dict:
    """Bytes of weights one decode step reads: {"float32": all parameters as stored, "bfloat16": with
    the matmul weights (projections and the unembedding table, Decoder.store_weights) at 2 bytes}."""
    from flax import nnx

    total = sum(v[...].nbytes for _, v in nnx.to_flat_state(nnx.state(model, nnx.Param)))
    return {"float32": total, "bfloat16": total - 2 * matmul_params(model)}


def stream_gbs(model, repeats: int = 5) -> float:
    """GB/s of a `jnp` row sum over the [V, D] unembedding table, best of `repeats`."""
    import jax
    import jax.numpy as jnp

    table = model.unembed_matrix()
    row_sum = jax.jit(lambda t: jnp.sum(t, axis=1))
    jax.block_until_ready(row_sum(table))
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(row_sum(table))
        best = min(best, time.perf_counter() - t0)
    return table.nbytes / best / 1e9


def matmul_params(model) -> int:
    """Weights a decode step multiplies each row by: the projections and the unembedding table."""
    from flax import nnx

    from align.model.layers import Projections

    return model.unembed_matrix().size + sum(
        getattr(m, name)[...].size
        for _, m in nnx.iter_modules(model)
        if isinstance(m, Projections)
        for name in m.PROJECTIONS
    )


def dot_gflops(model, batch: int, repeats: int = 5) -> float:
    """GFLOP/s of the float32 dot `VD,BD->VB` of the [V, D] unembedding table with `batch` rows (the
    largest product of a decode step), best of `repeats`."""
    import jax
    import jax.numpy as jnp

    table = model.unembed_matrix()
    hidden = jnp.ones((batch, table.shape[1]), jnp.float32)
    dot = jax.jit(lambda t, h: jnp.einsum("VD,BD->VB", t, h, preferred_element_type=jnp.float32))
    jax.block_until_ready(dot(table, hidden))
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(dot(table, hidden))
        best = min(best, time.perf_counter() - t0)
    return 2 * table.size * batch / best / 1e9


def paired(runners: dict, repeats: int) -> dict:
    """Seconds per call for each runner, taken in turn (a, b, c, a, b, c, ...) `repeats` times.

    Interleaving puts both sides of a ratio in the same minutes of a shared machine, whose speed drifts
    by 10-20% over a run; timing all of one side first and then the other does not.
    """
    times = {name: [] for name in runners}
    for _ in range(repeats):
        for name, run in runners.items():
            t0 = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - t0)
    return times


def limits_line(loaded, batch: int, bf16: bool, gbs: list[float], gflops: float) -> str:
    """The weight-streaming limits in tok/s for `batch` rows at the row-sum GB/s measured (before,
    after the case), and the compute limit at the dot's GFLOP/s."""
    nbytes = step_bytes(loaded.model)
    span = lambda key: "-".join(f"{batch * g * 1e9 / nbytes[key]:.1f}" for g in gbs)  # noqa: E731
    line = f"row sum {'-'.join(f'{g:.1f}' for g in gbs)} GB/s: limit {span('float32')} tok/s"
    line += f", bf16 limit {span('bfloat16')} tok/s" if bf16 else ""
    compute = gflops * 1e9 / (2 * matmul_params(loaded.model))
    return line + f"; dot {gflops:.0f} GFLOP/s: compute limit {compute:.1f} tok/s"


def agreement(a, b) -> str:
    """Share of tokens equal in two [B, M] greedy outputs, and how many rows are equal throughout."""
    import numpy as np

    same = np.asarray(a) == np.asarray(b)
    return f"{same.mean():.3f} of tokens, {int(same.all(axis=1).sum())}/{len(same)} rows"


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="gemma3-270m")
    parser.add_argument("--batch", type=int, nargs="+", default=[8])
    parser.add_argument("--new-tokens", type=int, nargs="+", default=[32])
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per side, taken in turn")
    parser.add_argument("--no-plain", action="store_true", help="skip the cpu_layout=False JAX column")
    parser.add_argument(
        "--out-first",
        action="store_true",
        help="add a column for the decode layout with [out, in] layer weights",
    )
    parser.add_argument(
        "--decode-weights",
        choices=["float32", "bfloat16"],
        default="float32",
        help="bfloat16: add a column for the decode loop on bfloat16 matmul weights (float32 sums)",
    )
    args = parser.parse_args()
    import align

    loaded = align.load(args.model)
    import jax
    import torch
    import transformers

    torch.set_num_threads(os.cpu_count() or 1)
    print(
        f"device: jax {jax.devices()[0].platform} | torch threads {torch.get_num_threads()} "
        f"| model {loaded.source}"
    )
    bf16 = args.decode_weights == "bfloat16"
    extra = ([] if args.no_plain else ["plain"]) + (["out-first"] if args.out_first else [])
    extra += ["bf16"] if bf16 else []
    print(
        f"{'batch':>5} {'new':>5} {'jax tok/s':>10} {'torch tok/s':>12} {'jax/torch':>9} "
        f"{'paired jax/torch: median (range)':>34}"
        + "".join(f" {'jax ' + k:>14} {'/torch':>7}" for k in extra)
    )
    tmodel = transformers.AutoModelForCausalLM.from_pretrained(loaded.source, dtype=torch.float32).eval()
    for batch in args.batch:
        for new in args.new_tokens:
            runners = {"jax": jax_runner(loaded, batch, new)}
            if "plain" in extra:
                runners["plain"] = jax_runner(loaded, batch, new, cpu_layout=False)
            if "out-first" in extra:
                runners["out-first"] = jax_runner(loaded, batch, new, out_first_weights=True)
            if bf16:
                runners["bf16"] = jax_runner(loaded, batch, new, decode_weights="bfloat16")
            same = agreement(runners["bf16"](), runners["jax"]()) if bf16 else None
            runners["torch"] = torch_runner(tmodel, loaded.tokenizer, batch, new)
            gbs = [stream_gbs(loaded.model)]
            times = paired(runners, args.repeats)
            gbs.append(stream_gbs(loaded.model))
            gflops = dot_gflops(loaded.model, batch)
            rate = {k: batch * new / min(v) for k, v in times.items()}  # best call of each side
            ratios = [t / j for j, t in zip(times["jax"], times["torch"])]  # per pair: same minutes
            lo, mid, hi = min(ratios), statistics.median(ratios), max(ratios)
            print(
                f"{batch:>5} {new:>5} {rate['jax']:>10.1f} {rate['torch']:>12.1f} "
                f"{rate['jax'] / rate['torch']:>8.2f}x {mid:>24.2f}x ({lo:.2f}-{hi:.2f})"
                + "".join(f" {rate[k]:>14.1f} {rate[k] / rate['torch']:>6.2f}x" for k in extra),
                flush=True,
            )
            print(f"{'':>11} {limits_line(loaded, batch, bf16, gbs, gflops)}", flush=True)
            if same:
                r = [t / j for j, t in zip(times["bf16"], times["torch"])]
                print(
                    f"{'':>11} bf16: paired /torch {statistics.median(r):.2f}x ({min(r):.2f}-{max(r):.2f}); "
                    f"greedy tokens equal to float32's: {same}",
                    flush=True,
                )


if __name__ == "__main__":
    import align

    align.setup()  # XLA:CPU defaults (and ALIGN_KEEP_HOST_MEMORY), as the `align` command line runs
    main()
