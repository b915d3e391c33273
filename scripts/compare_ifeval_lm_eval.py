"""IFEval through lm-evaluation-harness on the JAX model beside `align`'s own ifeval suite, prompt by prompt.

    python scripts/compare_ifeval_lm_eval.py --model gemma3-270m --limit 24 --max-new-tokens 192
        [--batch-size 8] [--data FILE] [--json out.json]

Both sides run on one `JaxLM` over `align.load(--model)` (loaded once), with the same prompts, greedy
decoding and the same number of new tokens:

* lm-eval: its evaluator (`lm_eval.simple_evaluate`) on its own `ifeval` task (the installed YAML:
  prompt = the raw `prompt` field, no chat template, `until: []`, greedy, its checkers and
  aggregation), the dataset swapped for the sample written locally (scripts/lm_eval_tasks.py), the
  model `safety_evals.lm.lm_eval_model.AlignLM` (what `align lm-eval run --model align` builds), and
  `max_gen_toks` overridden as `--gen_kwargs max_gen_toks=N` does.
* align: `safety_evals.suites.ifeval.score` with `IFEvalConfig(max_new_tokens=N)`.

The sample: the first `--limit` prompts of the file that the checkers can score here; without
NLTK's punkt_tab (no network to fetch it) the prompts needing it are skipped on both sides, and the
script says how many. Printed: per side the four accuracies and the wall time, then how many
responses differ and how many per-instruction results differ. Not run in CI (needs the real model);
tests/safety_evals/test_lm_eval_ifeval.py runs the same comparison on a tiny model.
"""

from __future__ import annotations

import argparse
import json
import time

import lm_eval_tasks as L  # the sibling scripts/lm_eval_tasks.py (the script's directory is on sys.path)

from safety_evals.suites import ifeval

METRICS = L.IFEVAL_METRICS


def lm_eval_side(lm, items, args) -> dict:
    out = L.run_ifeval(lm, items, args.cache, args.max_new_tokens)
    res, samples = out["results"]["ifeval"], sorted(out["samples"]["ifeval"], key=lambda s: s["doc_id"])
    return {
        "metrics": {m: float(res[f"{m},none"]) for m in METRICS},
        "responses": [s["resps"][0][0] for s in samples],
        "strict": [list(map(bool, s["inst_level_strict_acc"])) for s in samples],
        "loose": [list(map(bool, s["inst_level_loose_acc"])) for s in samples],
        "contexts": [s["arguments"][0][0] for s in samples],
    }


def align_side(jlm, items, args) -> dict:
    info = ifeval.DataInfo("sample", "", len(items))
    config = ifeval.IFEvalConfig(max_new_tokens=args.max_new_tokens, without_punkt=True)
    res = ifeval.score(jlm, items, info, config=config)
    return {
        "metrics": {m: res.metrics[m].value for m in METRICS},
        "responses": [e["output"] for e in res.examples],
        "strict": [list(e["extra"]["strict"]) for e in res.examples],
        "loose": [list(e["extra"]["loose"]) for e in res.examples],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="gemma3-270m", help="align.load spec")
    p.add_argument("--data", default=ifeval.DEFAULT_SOURCE)
    p.add_argument("--limit", type=int, default=24)
    p.add_argument("--max-new-tokens", type=int, default=192)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--cache", default="/tmp/compare_ifeval_lm_eval", help="where the sample file is written")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)

    import align
    from safety_evals.lm.jax_lm import JaxLM
    from safety_evals.lm.lm_eval_model import AlignLM

    items, skipped = L.ifeval_sample(args.data, args.limit)
    print(
        f"{len(items)} prompts ({skipped} before them skipped: need punkt_tab), "
        f"keys {items[0].key}..{items[-1].key}"
    )
    print(f"greedy, max_new_tokens {args.max_new_tokens}, batch {args.batch_size}, model {args.model}")
    jlm = JaxLM.from_loaded(align.load(args.model), name=args.model, batch_size=args.batch_size)
    sides, seconds = {}, {}
    for name, run in (("lm-eval", lambda: lm_eval_side(AlignLM(lm=jlm), items, args)), ("align", None)):
        start = time.perf_counter()
        sides[name] = run() if run else align_side(jlm, items, args)
        seconds[name] = time.perf_counter() - start
        m = sides[name]["metrics"]
        print(
            f"{name:<8} " + "  ".join(f"{k} {100 * v:.2f}" for k, v in m.items()) + f"  {seconds[name]:.0f}s"
        )
    a, b = sides["lm-eval"], sides["align"]
    same_context = sum(c == it.prompt for c, it in zip(a["contexts"], items))
    diff_resp = sum(x != y for x, y in zip(a["responses"], b["responses"]))
    diff_inst = sum(x != y for k in ("strict", "loose") for r, s in zip(a[k], b[k]) for x, y in zip(r, s))
    n_inst = sum(len(it.instruction_id_list) for it in items)
    print(f"contexts equal to the suite's prompts: {same_context} of {len(items)}")
    print(
        f"responses that differ: {diff_resp} of {len(items)}; "
        f"instruction results that differ: {diff_inst} of {2 * n_inst} (strict and loose)"
    )
    print(
        "metric differences (points): "
        + ", ".join(f"{k} {100 * (a['metrics'][k] - b['metrics'][k]):+.2f}" for k in METRICS)
    )
    if args.json:
        doc = {
            "n": len(items),
            "keys": [it.key for it in items],
            "skipped_punkt": skipped,
            "seconds": seconds,
        }
        doc |= {"max_new_tokens": args.max_new_tokens, "batch_size": args.batch_size, "model": args.model}
        with open(args.json, "w") as f:
            json.dump(doc | {"sides": sides}, f)
    return 0 if diff_resp == 0 and a["metrics"] == b["metrics"] else 1


if __name__ == "__main__":
    import align

    align.setup()  # XLA:CPU defaults, as the `align` command line runs
    raise SystemExit(main())
