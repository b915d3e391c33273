"""What JSON mode costs in decoding: the same sampler with and without the JSON constraint, same run.

    .venv/bin/python benchmarks/json_mode.py                       # gemma3-270m, batch 8, 64 new tokens
    .venv/bin/python benchmarks/json_mode.py --batch 1 8 --new-tokens 64

Prompts are IFEval's that ask for JSON (chat template). Both sides decode greedily with stop tokens
disabled, so each call makes exactly B * new_tokens tokens (in JSON mode, once the value is whole,
the rest are whitespace). Compilation is excluded (one warm-up call each); the sides are timed in
turn (free, json, free, json, ...): tok/s columns are each side's best call, and the paired column
is the median (and range) of json-time / free-time over the pairs. Also printed: the one-off cost of
building the tables for the tokenizer (json_tables, once per tokenizer in a process).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from generate import paired  # benchmarks/generate.py: the sides timed in turn


def runner(loaded, prompts, new_tokens, tables):
    """A no-argument callable that runs one generate call; compiled by the time it is returned."""
    import jax

    from align.sampling import SamplingConfig, generate
    from align.sampling.text import encode_texts, pad_prompts

    tokens, lengths = pad_prompts(encode_texts(loaded.tokenizer, prompts, chat=True), loaded.tokenizer.pad_id)
    cfg = SamplingConfig(max_new_tokens=new_tokens)  # no stop ids: always new_tokens tokens
    run = lambda: jax.block_until_ready(  # noqa: E731
        generate(loaded.model, tokens, lengths, cfg, json_tables=tables).tokens
    )
    t0 = time.perf_counter()
    out = run()  # compile
    return run, time.perf_counter() - t0, out


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="gemma3-270m")
    parser.add_argument("--batch", type=int, nargs="+", default=[8])
    parser.add_argument("--new-tokens", type=int, nargs="+", default=[64])
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per side, taken in turn")
    args = parser.parse_args()
    import align
    from align.data_dir import data_path
    from align.sampling.json_mode import json_tables

    loaded = align.load(args.model)
    t0 = time.perf_counter()
    tables = json_tables(loaded.tokenizer, loaded.config.vocab_size)
    print(
        f"model {loaded.source} | tables for {loaded.config.vocab_size} tokens built in "
        f"{time.perf_counter() - t0:.1f}s ({tables.bracket_ids.shape[0]} bracket tokens run on device)"
    )
    with open(data_path("ifeval/input_data.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    asks = [r["prompt"] for r in rows if "detectable_format:json_format" in r["instruction_id_list"]]
    print(
        f"{'batch':>5} {'new':>5} {'free tok/s':>10} {'json tok/s':>10} {'json/free':>9} "
        f"{'paired time json/free: median (range)':>38} {'compile free/json s':>20}"
    )
    for batch in args.batch:
        prompts = [asks[i % len(asks)] for i in range(batch)]
        for new in args.new_tokens:
            free, c_free, _ = runner(loaded, prompts, new, None)
            constrained, c_json, out = runner(loaded, prompts, new, tables)
            for row in out:  # the timed calls' outputs parse (whitespace after the value)
                json.loads(loaded.tokenizer.decode(row))
            times = paired({"free": free, "json": constrained}, args.repeats)
            rate = {k: batch * new / min(v) for k, v in times.items()}
            ratios = [j / f for f, j in zip(times["free"], times["json"])]
            lo, mid, hi = min(ratios), statistics.median(ratios), max(ratios)
            print(
                f"{batch:>5} {new:>5} {rate['free']:>10.1f} {rate['json']:>10.1f} "
                f"{rate['json'] / rate['free']:>8.2f}x {mid:>28.2f}x ({lo:.2f}-{hi:.2f}) "
                f"{c_free:>10.1f}/{c_json:.1f}",
                flush=True,
            )


if __name__ == "__main__":
    import align

    align.setup()
    main()
