"""Generation throughput: the JAX KV-cache sampler beside `transformers.generate`, same model, same run.

    .venv/bin/python benchmarks/generate.py                      # gemma3-270m, batch 8, 32 new tokens
    .venv/bin/python benchmarks/generate.py --batch 8 32 --new-tokens 128

"jax" is the sampler as `generate` runs it (on CPU: the decode layout, [out, in] weights and
vocab-major logits); "jax plain" is the same sampler with cpu_layout=False, the weights as trained,
to show what that layout buys (--no-plain skips it). Both sides decode greedily with stop tokens
disabled, so they produce exactly B * new_tokens tokens.
The JAX number excludes compilation (one warm-up call of the same shape); torch gets one warm-up too.
Prints one comparison row per case; no pass/fail.
"""

from __future__ import annotations

import argparse
import os
import time

PROMPTS = ["The capital of France is", "Write a short story about a robot:", "def quicksort(xs):",
           "Three facts about the ocean:", "The best way to learn a language is", "Once upon a time",
           "Explain photosynthesis to a child.", "Q: What is 17 * 3?\nA:"]


def _prompts(batch):
    return [PROMPTS[i % len(PROMPTS)] for i in range(batch)]


def bench_jax(loaded, batch, new_tokens, repeats, cpu_layout=None):
    import jax
    import numpy as np

    from align.sampling import SamplingConfig, generate
    from align.sampling.text import bucket, encode_prompts

    ids = encode_prompts(loaded.tokenizer, _prompts(batch), chat=False)
    tokens = np.zeros((batch, bucket(max(map(len, ids)))), np.int32)
    for i, r in enumerate(ids):
        tokens[i, : len(r)] = r
    lengths = np.array([len(r) for r in ids], np.int32)
    cfg = SamplingConfig(max_new_tokens=new_tokens)  # no stop ids: always new_tokens tokens
    run = lambda: generate(loaded.model, tokens, lengths, cfg, cpu_layout=cpu_layout).tokens  # noqa: E731
    jax.block_until_ready(run())  # compile
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(run())
        best = min(best, time.perf_counter() - t0)
    return batch * new_tokens / best


def bench_torch(path, tokenizer, batch, new_tokens, repeats):
    import torch
    import transformers

    model = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    tok = tokenizer.hf
    tok.padding_side = "left"
    enc = tok(_prompts(batch), return_tensors="pt", padding=True)
    kw = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, pad_token_id=tok.pad_token_id)
    with torch.no_grad():
        model.generate(**enc, **kw)
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            model.generate(**enc, **kw)
            best = min(best, time.perf_counter() - t0)
    return batch * new_tokens / best


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="gemma3-270m")
    parser.add_argument("--batch", type=int, nargs="+", default=[8])
    parser.add_argument("--new-tokens", type=int, nargs="+", default=[32])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--no-plain", action="store_true", help="skip the cpu_layout=False JAX column")
    args = parser.parse_args()
    import align

    loaded = align.load(args.model)
    import jax
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    print(f"device: jax {jax.devices()[0].platform} | torch threads {torch.get_num_threads()} | model {loaded.source}")
    print(f"{'batch':>5} {'new':>5} {'jax tok/s':>10} {'jax plain':>10} {'torch tok/s':>12} {'jax/torch':>9} "
          f"{'plain/torch':>11}")
    for batch in args.batch:
        for new in args.new_tokens:
            j = bench_jax(loaded, batch, new, args.repeats)
            p = float("nan") if args.no_plain else bench_jax(loaded, batch, new, args.repeats, cpu_layout=False)
            t = bench_torch(loaded.source, loaded.tokenizer, batch, new, args.repeats)
            print(f"{batch:>5} {new:>5} {j:>10.1f} {p:>10.1f} {t:>12.1f} {j / t:>8.2f}x {p / t:>10.2f}x", flush=True)


if __name__ == "__main__":
    main()
