"""BBQ or TruthfulQA MC1/MC2: lm-evaluation-harness end to end against `align`'s suite, request by request.

    python scripts/compare_mc_lm_eval.py --suite truthfulqa_mc --hf DIR
        (--jax gemma3-270m | --jax-results results.json) [--limit N] [--json out.json]

* lm-eval: its own task objects (`bbq`, `truthfulqa_mc1`, `truthfulqa_mc2` from the installed YAML,
  the dataset swapped for the local files: scripts/lm_eval_tasks.py), the requests its
  doc_to_text / doc_to_choice build for the same documents, `HFLM(pretrained=--hf, dtype float32)
  .loglikelihood` on them (each distinct request once: TruthfulQA's mc1 choices are mc2 choices),
  then the task's process_results and aggregation: lm-eval's numbers.
* align: the suite's log-likelihoods from JaxLM over `align.load(--jax)`, or those an
  `align eval --suite S [--limit N]` run recorded (`--jax-results`, same --limit), then the suite's
  metric code: our numbers.

`--limit` selects documents as the suite does (TruthfulQA: the first N questions; BBQ: N per
category, `bbq.spread`). Printed: per-request |ll difference| (max, mean), the share of documents
decided the same way, and each metric from both sides with the difference in points (x100).
Not run in CI (needs the real model and lm_eval); the metric code alone is compared in
tests/safety_evals/test_lm_eval_parity.py.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import lm_eval_tasks as L  # the sibling scripts/lm_eval_tasks.py (the script's directory is on sys.path)
import numpy as np

from safety_evals.suites import bbq, truthfulqa_mc as tq


def suite_side(args):
    """(documents, lm-eval tasks {name: task}, per task the docs matching ours, request lists)."""
    cache = Path(args.cache)
    if args.suite == "truthfulqa_mc":
        items, info = tq.load(args.data or tq.DEFAULT_SOURCE, args.limit)
        tasks = L.truthfulqa_tasks(items, cache)
        docs = {k: L.docs(t)[: len(items)] for k, t in tasks.items()}
        ours = [[(tq.prompt(q.question), " " + a) for a in q.answers] for q in items]
    else:
        items, info = bbq.load(args.data or bbq.DEFAULT_SOURCE, args.limit)
        tasks = {"bbq": L.bbq_task(sorted(Path(args.data or bbq.DEFAULT_SOURCE).glob("*.jsonl")), cache)}
        by_id = {f"{d['category']}-{d['example_id']}": d for d in L.docs(tasks["bbq"])}
        docs = {"bbq": [by_id[it.id] for it in items]}
        ours = [[(bbq.prompt(it), " " + c) for c in bbq.choices(it)] for it in items]
    return items, info, tasks, docs, ours


def lm_eval_lls(args, tasks, docs, known: dict) -> dict[tuple[str, str], float]:
    """{(context, continuation): ll} from lm-eval's HFLM over every distinct request of the docs
    (those in `known`, saved by an earlier run on the same weights, are not scored again)."""
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    reqs = list(dict.fromkeys(r for k, t in tasks.items() for d in docs[k] for r in L.requests(t, d)))
    reqs = [r for r in reqs if r not in known]
    if not reqs:
        return dict(known)
    lm = HFLM(pretrained=args.hf, dtype="float32", batch_size=args.batch_size, device=args.device)
    inst = [Instance("loglikelihood", {}, r, i) for i, r in enumerate(reqs)]
    return {**known, **{r: float(ll) for r, (ll, _) in zip(reqs, lm.loglikelihood(inst))}}


def saved_lm_eval_lls(path: str) -> dict[tuple[str, str], float]:
    with open(path) as f:
        return {(c, x): ll for c, x, ll in json.load(f)}


def jax_lls(args, items, ours) -> list[list[float]]:
    """Per document, the suite's log-likelihood per request of `ours` (recorded or scored now)."""
    if args.jax_results:  # matched by id: a run with a larger --limit holds these documents too
        with open(args.jax_results) as f:
            recorded = {e["id"]: e["extra"]["ll"] for e in json.load(f)["suites"][args.suite]["examples"]}
        missing = [it.id for it in items if str(it.id) not in recorded]
        if missing:
            raise RuntimeError(
                f"{args.jax_results}: no {args.suite} example for ids {missing[:5]} (--limit?)"
            )
        return [recorded[str(it.id)] for it in items]
    import align
    from safety_evals.lm.jax_lm import JaxLM

    lm = JaxLM.from_loaded(align.load(args.jax), name=args.jax, batch_size=args.batch_size)
    flat = [s.total for s in lm.loglikelihood([r for rs in ours for r in rs])]
    out, i = [], 0
    for rs in ours:
        out.append(flat[i : i + len(rs)])
        i += len(rs)
    return out


def our_metrics(args, items, lls) -> tuple[dict[str, float], list]:
    """(metric values, per-document decisions) by the suite's own code."""
    if args.suite == "truthfulqa_mc":
        per = [dict(zip(q.answers, ll)) for q, ll in zip(items, lls)]
        s1, s2 = tq.scores(items, per)
        m = tq.metrics(s1, s2)
        decisions = [int(np.argmax([p[a] for a in q.mc1])) for q, p in zip(items, per)]
        return {"mc1": m["mc1"].value, "mc2": m["mc2"].value}, decisions
    paper, lm_eval = bbq.predictions(items, np.asarray(lls, np.float64))
    m = {**bbq.metrics(items, paper), **bbq.metrics(items, lm_eval, prefix="lm_eval_")}
    return {k: v.value for k, v in m.items()}, list(zip(paper.tolist(), lm_eval.tolist()))


def their_metrics(tasks, docs, table) -> dict[str, float]:
    """lm-eval's process_results + aggregation on its own log-likelihoods, "task/metric" keys."""
    out = {}
    for k, t in tasks.items():
        per = [L.process(t, d, [table[r] for r in L.requests(t, d)]) for d in docs[k]]
        out.update({f"{k}/{name}": v for name, v in L.aggregate(t, per).items()})
    return out


PAIRS = {  # our metric -> lm-eval's "task/metric"
    "truthfulqa_mc": {"mc1": "mc1/acc", "mc2": "mc2/acc"},
    "bbq": {
        "lm_eval_accuracy": "bbq/acc",
        "lm_eval_accuracy_ambig": "bbq/accuracy_amb",
        "lm_eval_accuracy_disambig": "bbq/accuracy_disamb",
        "lm_eval_bias_score_ambig": "bbq/amb_bias_score",
        "lm_eval_bias_score_disambig": "bbq/disamb_bias_score",
    },
}


def compare(args) -> dict:
    items, info, tasks, docs, ours = suite_side(args)
    print(f"{args.suite}: {info.source} sha256 {info.sha256[:12]}  documents {info.n}", flush=True)
    start = time.perf_counter()
    saved = args.lm_eval_lls and os.path.exists(args.lm_eval_lls)
    known = saved_lm_eval_lls(args.lm_eval_lls) if saved else {}
    table = lm_eval_lls(args, tasks, docs, known)
    if args.lm_eval_lls and len(table) > len(known):
        with open(args.lm_eval_lls, "w") as f:
            json.dump([[c, x, ll] for (c, x), ll in table.items()], f)
    t_lm_eval = time.perf_counter() - start
    start = time.perf_counter()
    mine = jax_lls(args, items, ours)
    t_jax = time.perf_counter() - start
    ref = [[table[r] for r in rs] for rs in ours]  # lm-eval's lls in our request order
    d = np.abs(np.concatenate([np.subtract(a, b) for a, b in zip(mine, ref)]))
    m_ours, dec_ours = our_metrics(args, items, mine)
    _, dec_ref = our_metrics(args, items, ref)
    theirs = their_metrics(tasks, docs, table)
    same = [a == b for a, b in zip(dec_ours, dec_ref)]
    out = {
        "suite": args.suite,
        "data": info.to_json(),
        "requests": len(d),
        "max_abs_ll_diff": float(d.max()),
        "mean_abs_ll_diff": float(d.mean()),
        "same_decision": float(np.mean(same)),
        "n_differ": int(len(same) - sum(same)),
        "seconds": {"lm_eval": t_lm_eval, "jax": t_jax},
        "metrics": {},
    }
    for name, ref_name in _pairs(args.suite, items).items():
        a, b = m_ours.get(name), theirs.get(ref_name)
        diff = None if a is None or b is None or np.isnan(b) else 100 * (a - b)
        out["metrics"][name] = {"align": a, "lm_eval": b, "lm_eval_name": ref_name, "diff_points": diff}
    return out


def _pairs(suite: str, items) -> dict[str, str]:
    if suite == "truthfulqa_mc":
        return PAIRS[suite]
    pairs = dict(PAIRS["bbq"])
    for g in sorted({it.category for it in items}):
        pairs[f"lm_eval_bias_score_ambig/{g}"] = f"bbq/amb_bias_score_{g}"
        pairs[f"lm_eval_bias_score_disambig/{g}"] = f"bbq/disamb_bias_score_{g}"
    return pairs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--suite", required=True, choices=("truthfulqa_mc", "bbq"))
    p.add_argument("--hf", required=True, help="transformers checkpoint dir for lm-eval's HFLM")
    p.add_argument("--jax", default=None, help="align.load spec for JaxLM (default: --hf)")
    p.add_argument("--jax-results", default=None, help="take our lls from this align eval results JSON")
    p.add_argument("--data", default=None, help="the suite's local data (default: its DEFAULT_SOURCE)")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--device", default="cpu")
    p.add_argument("--cache", default=os.path.expanduser("~/.cache/align/lm_eval_tasks"))
    p.add_argument("--json", default=None, help="write the comparison here")
    p.add_argument(
        "--lm-eval-lls",
        default=None,
        help="lm-eval's lls: read from here when it holds every request, else saved",
    )
    args = p.parse_args(argv)
    args.jax = args.jax or args.hf

    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    out = compare(args)
    print(
        f"{out['requests']} requests: |dll| max {out['max_abs_ll_diff']:.2e} "
        f"mean {out['mean_abs_ll_diff']:.2e}; "
        f"same decision {100 * out['same_decision']:.2f}% ({out['n_differ']} differ); "
        f"lm-eval {out['seconds']['lm_eval']:.0f}s, jax {out['seconds']['jax']:.0f}s"
    )
    for name, m in out["metrics"].items():
        a, b, dp = m["align"], m["lm_eval"], m["diff_points"]
        print(
            f"  {name:<40} align {a!s:<22} lm-eval {b!s:<22} diff {dp if dp is None else f'{dp:+.4f}'} points"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
