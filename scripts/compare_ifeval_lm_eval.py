"""IFEval through lm-evaluation-harness on the JAX model beside `align`'s own ifeval suite, prompt by prompt.

    python scripts/compare_ifeval_lm_eval.py --model gemma3-270m --limit 24 --max-new-tokens 128
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
responses differ and which per-instruction results differ. lm-eval's letter_frequency checker draws a
random letter when the instruction's is not a-z (IFEval keys 1122 and 1129; `ifeval.draws_at_random`):
our suite seeds that draw per prompt, lm-eval draws from its run's state, so the two verdicts may
differ there; the accuracies are then also printed without those prompts. Exit code 0 when every
response is equal and only such draws differ. Not run in CI (needs the real model);
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


def report(items, sides: dict) -> tuple[int, list[tuple]]:
    """Print how the two sides differ; (responses that differ, [(key, instruction, strict|loose,
    drawn at random)] per differing instruction result). Adds "metrics_deterministic" to each side
    when some prompts have a checker that draws at random."""
    a, b = sides["lm-eval"], sides["align"]
    same_context = sum(c == it.prompt for c, it in zip(a["contexts"], items))
    diff_resp = sum(x != y for x, y in zip(a["responses"], b["responses"]))
    rand = [[ifeval.draws_at_random(i, k) for i, k in zip(it.instruction_id_list, it.kwargs)] for it in items]
    diffs = [
        (items[p].key, items[p].instruction_id_list[j], kind, rand[p][j])
        for kind in ("strict", "loose")
        for p, (r, s) in enumerate(zip(a[kind], b[kind]))
        for j, (x, y) in enumerate(zip(r, s))
        if x != y
    ]
    n_inst = sum(len(it.instruction_id_list) for it in items)
    print(f"contexts equal to the suite's prompts: {same_context} of {len(items)}")
    print(
        f"responses that differ: {diff_resp} of {len(items)}; "
        f"instruction results that differ: {len(diffs)} of {2 * n_inst} (strict and loose)"
    )
    for key, inst, kind, drawn in diffs:
        print(f"  key {key} {inst} ({kind}){': the checker draws its letter at random' if drawn else ''}")
    print(
        "metric differences (points): "
        + ", ".join(f"{k} {100 * (a['metrics'][k] - b['metrics'][k]):+.2f}" for k in METRICS)
    )
    fixed = [p for p in range(len(items)) if not any(rand[p])]
    if len(fixed) < len(items):  # the same four metrics on the prompts whose checkers are all deterministic
        for name, side in sides.items():
            m = ifeval.metrics([side["strict"][p] for p in fixed], [side["loose"][p] for p in fixed])
            side["metrics_deterministic"] = {k: m[k].value for k in METRICS}
            print(
                f"{name:<8} without the {len(items) - len(fixed)} random-letter prompts: "
                + "  ".join(f"{k} {100 * v:.2f}" for k, v in side["metrics_deterministic"].items())
            )
    return diff_resp, diffs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="gemma3-270m", help="align.load spec")
    p.add_argument("--data", default=ifeval.DEFAULT_SOURCE)
    p.add_argument("--limit", type=int, default=24)
    p.add_argument("--max-new-tokens", type=int, default=128)
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
    diff_resp, diffs = report(items, sides)
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
    return 0 if diff_resp == 0 and all(drawn for *_, drawn in diffs) else 1


if __name__ == "__main__":
    import align

    align.setup()  # XLA:CPU defaults, as the `align` command line runs
    raise SystemExit(main())
