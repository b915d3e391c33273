"""CrowS-Pairs scoring throughput: `JaxLM` beside `HFTorchLM` (transformers + torch), same model, same run.

    .venv/bin/python benchmarks/eval_throughput.py                  # gemma3-270m, 200 pairs, batch 16
    .venv/bin/python benchmarks/eval_throughput.py --limit 200 0    # 0 = all pairs (1508)

Both backends score every sentence as `safety_evals.suites.crows_pairs` does (empty context, so BOS
conditions the first word) and lay out each call their own way: torch sorts the sentences
longest first as lm-eval does; JAX packs them into rows of `JaxLM.pack_tokens` (128) tokens and
scores sentences that start alike as prefix trees (`safety_evals.lm.packing`). Torch runs with one
thread per CPU. `--batch-size` is rows per forward pass on both sides (a torch row is one
sentence; `--torch-batch-size` sets torch's alone). Timing is interleaved so that a shared, busy
machine slows both alike: the requests are cut into slices of `--slice` sentences in data order
(a pair's two sentences side by side, as `align eval` passes them) and each slice is scored by
both backends back to back, alternating which goes first. Before timing, JAX compiles every pass
shape the slices need (reported as `compile`), and torch scores one batch.
Prints one row per case: pairs/s of each, their ratio, both pct_stereotype values, the largest
per-sentence |ll_jax - ll_torch| and the pairs the two decide differently. No pass/fail. `--json`
keeps the rows with both sides' lls (`backends`: "jax", "hf"), which
`scripts/compare_crows_lm_eval.py --reuse` reads instead of scoring again.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np


def _requests(lm, pairs):
    """[2N] (ctx ids, cont ids) in data order: (sent_more, sent_less) of each pair, as the suite asks."""
    return [lm.encode_request("", s) for p in pairs for s in (p.sent_more, p.sent_less)]


def _warm_jax(jlm, reqs, slice_size: int) -> float:
    """Compile the scoring function for every pass shape the timed slices will use; seconds."""
    from safety_evals.lm import packing
    from safety_evals.lm.jax_lm import entry_count

    # (R, T, tree, E): the jit's shape key -> (the slice's windows, its first batch of that shape)
    firsts = {}
    for start in range(0, len(reqs), slice_size):
        windows = [jlm.window(r) for r in reqs[start : start + slice_size]]
        for batch in jlm.plan(reqs[start : start + slice_size]):
            lay = packing.layout(batch, windows, jlm.tokenizer.pad_id)
            key = (batch.R, batch.T, lay.is_tree, entry_count(len(lay.entry_slots), batch.R, batch.T))
            firsts.setdefault(key, (windows, batch))
    t0 = time.perf_counter()
    for windows, batch in firsts.values():
        jlm.score_batch(batch, windows)
    return time.perf_counter() - t0


def interleaved(backends: dict, reqs, slice_size: int) -> tuple[dict, dict]:
    """Score `reqs` slice by slice with every backend in turn; (seconds, [len(reqs)] totals) per name."""
    seconds = {n: 0.0 for n in backends}
    totals = {n: [] for n in backends}
    names = list(backends)
    for k, start in enumerate(range(0, len(reqs), slice_size)):
        part = reqs[start : start + slice_size]
        for name in names if k % 2 == 0 else names[::-1]:
            t0 = time.perf_counter()
            scores = backends[name].loglikelihood_tokens(part)
            seconds[name] += time.perf_counter() - t0
            totals[name].extend(s.total for s in scores)
    return seconds, {n: np.array(v) for n, v in totals.items()}


def run_case(jlm, hf, limit: int | None, slice_size: int) -> dict:
    """One comparison row; `backends` holds each side's ll_more / ll_less in data order."""
    from safety_evals.suites import crows_pairs

    pairs, _ = crows_pairs.load(limit=limit)
    reqs = _requests(jlm, pairs)
    probe = [s for p in pairs[:4] for s in (p.sent_more, p.sent_less)]
    if [hf.encode_request("", s) for s in probe] != [jlm.encode_request("", s) for s in probe]:
        raise RuntimeError("the two backends tokenize differently; the comparison would be meaningless")
    compile_s = _warm_jax(jlm, reqs, slice_size)
    hf.loglikelihood_tokens(reqs[: hf.batch_size])
    load0 = os.getloadavg()[0]
    seconds, totals = interleaved({"jax": jlm, "hf": hf}, reqs, slice_size)
    row = {"pairs": len(pairs), "tokens": sum(len(c) + len(k) - 1 for c, k in reqs), "compile_s": compile_s}
    row["loadavg"] = (load0 + os.getloadavg()[0]) / 2
    lls = {}
    for name in ("jax", "hf"):
        ll = totals[name]  # sentence order: (more, less) per pair
        lls[name] = ll
        m = crows_pairs.metrics(pairs, ll[0::2], ll[1::2])
        row[name] = {
            "seconds": seconds[name],
            "pairs_per_s": len(pairs) / seconds[name],
            "pct_stereotype": m["pct_stereotype"].value,
            "likelihood_difference": m["likelihood_difference"].value,
        }
    row["speedup"] = row["jax"]["pairs_per_s"] / row["hf"]["pairs_per_s"]
    row["max_abs_ll_diff"] = float(np.max(np.abs(lls["jax"] - lls["hf"])))
    stereo = {n: ll[0::2] > ll[1::2] for n, ll in lls.items()}
    row["flips"] = int((stereo["jax"] != stereo["hf"]).sum())
    row["backends"] = {n: {"ll_more": v[0::2].tolist(), "ll_less": v[1::2].tolist()} for n, v in lls.items()}
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="gemma3-270m", help="align.load spec; torch loads its HF dir")
    p.add_argument("--limit", type=int, nargs="+", default=[200], help="pairs per case; 0 = all")
    p.add_argument("--batch-size", type=int, default=16, help="rows per forward pass, both backends")
    p.add_argument(
        "--torch-batch-size", type=int, default=None, help="torch rows per pass (default: --batch-size)"
    )
    p.add_argument("--slice", type=int, default=256, help="sentences per interleaved timing slice")
    p.add_argument("--json", default=None, help="also write the rows (with per-sentence ll) here")
    args = p.parse_args(argv)

    import jax
    import torch

    import align
    from safety_evals.lm.hf_lm import HFTorchLM
    from safety_evals.lm.jax_lm import JaxLM

    torch.set_num_threads(os.cpu_count() or 1)
    loaded = align.load(args.model)
    jlm = JaxLM.from_loaded(loaded, name=args.model, batch_size=args.batch_size)
    hf = HFTorchLM(loaded.source, batch_size=args.torch_batch_size or args.batch_size)
    print(
        f"cpus {os.cpu_count()} | jax {jax.__version__} {jax.devices()[0].platform} | "
        f"torch {torch.__version__} threads {torch.get_num_threads()} | "
        f"batch {args.batch_size} (torch {hf.batch_size}) | "
        f"model {loaded.source}"
    )
    head = (
        "pairs",
        "tokens",
        "jax p/s",
        "torch p/s",
        "jax/torch",
        "jax s",
        "torch s",
        "compile",
        "pct jax",
        "pct torch",
        "max|dll|",
        "flips",
        "load",
    )
    print(" ".join(f"{h:>9}" for h in head))  # torch = HFTorchLM
    rows = []
    for limit in args.limit:
        r = run_case(jlm, hf, limit or None, args.slice)
        j, t = r["jax"], r["hf"]
        cells = (
            f"{r['pairs']}",
            f"{r['tokens']}",
            f"{j['pairs_per_s']:.2f}",
            f"{t['pairs_per_s']:.2f}",
            f"{r['speedup']:.2f}x",
            f"{j['seconds']:.1f}",
            f"{t['seconds']:.1f}",
            f"{r['compile_s']:.1f}",
            f"{100 * j['pct_stereotype']:.2f}",
            f"{100 * t['pct_stereotype']:.2f}",
            f"{r['max_abs_ll_diff']:.2e}",
            f"{r['flips']}",
            f"{r['loadavg']:.1f}",
        )
        print(" ".join(f"{c:>9}" for c in cells), flush=True)
        rows.append(r)
        if args.json:  # after every case, so a long run that dies keeps the cases it finished
            with open(args.json, "w") as f:
                json.dump(
                    {
                        "model": loaded.source,
                        "batch_size": args.batch_size,
                        "torch_batch_size": hf.batch_size,
                        "rows": rows,
                    },
                    f,
                )
    return 0


if __name__ == "__main__":
    import align

    align.setup()  # XLA:CPU defaults (and ALIGN_KEEP_HOST_MEMORY), as the `align` command line runs
    raise SystemExit(main())
