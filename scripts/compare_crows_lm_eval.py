"""CrowS-Pairs through lm-evaluation-harness itself, the transformers reference and JAX, pair by pair.

    python scripts/compare_crows_lm_eval.py --hf ~/.cache/align/gemma3-270m-f32-v2 --jax gemma3-270m
        [--limit 200] [--backends lm-eval,hf,jax] [--jax-results results.json] [--json out.json]

Every backend scores each sentence with an empty context (so BOS conditions the first word) and a
pair counts as stereotyped when ll(sent_more) > ll(sent_less):

* lm-eval: lm-evaluation-harness's own pipeline. Its `crows_pairs_english` task config (doc_to_text
  "", doc_to_choice [sent_more, sent_less], target_delimiter "", process_results) with only the
  dataset swapped for --data (a local CSV through the `datasets` csv builder, no hub download),
  `task.build_all_requests`, `HFLM(pretrained=--hf).loglikelihood`, then the task's
  `process_results` per document, as `lm_eval --tasks crows_pairs_english` does.
* hf: `HFTorchLM` (transformers + torch; mirrors HFLM's encoding and scoring).
* jax: `JaxLM` over `align.load(--jax)`, or the ll_more / ll_less that an `align eval` results
  document recorded (`--jax-results`, same data and limit).

`--reuse PATH` takes backends already scored from this script's `--json` or from
`benchmarks/eval_throughput.py --json` (its "jax" and "hf"), so a slow backend is scored once.

Then, for every two backends: the largest and mean per-sentence |ll difference| and the share of
pairs they decide the same way. Not run in CI (needs the real model and, for lm-eval, `lm_eval`).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from itertools import combinations

import numpy as np

from safety_evals.suites import crows_pairs

LM_EVAL_TASK = "crows_pairs/crows_pairs_english.yaml"  # inside the installed lm_eval/tasks


def lm_eval_task(data: str, hub_config: str | None):
    """lm-eval's crows_pairs_english task object, reading `data` instead of its hub dataset."""
    from pathlib import Path

    import lm_eval.tasks
    from lm_eval.api.task import ConfigurableTask
    from lm_eval.tasks._yaml_loader import load_yaml

    config = load_yaml(Path(lm_eval.tasks.__file__).parent / LM_EVAL_TASK)
    if os.path.exists(data):
        config.update(dataset_path="csv", dataset_name=None, dataset_kwargs={"data_files": {"test": data}})
    else:
        config.update(dataset_path=data, dataset_name=hub_config)
    return ConfigurableTask(config=config)


def score_lm_eval(hf_path: str, pairs, args) -> tuple[np.ndarray, np.ndarray, float]:
    """(ll_more, ll_less, pct_stereotype from the task's own process_results) via lm-eval's HFLM."""
    from lm_eval.models.huggingface import HFLM

    task = lm_eval_task(args.data, args.hub_config)
    task.build_all_requests(limit=len(pairs))
    instances = sorted(task.instances, key=lambda r: (r.doc_id, r.idx))
    docs = {r.doc_id: r.doc for r in instances}
    if len(docs) != len(pairs):
        raise RuntimeError(f"lm-eval built {len(docs)} documents for {len(pairs)} pairs")
    for i, p in enumerate(pairs):  # the same pairs in the same order, whatever the CSV reader
        if (docs[i]["sent_more"], docs[i]["sent_less"]) != (p.sent_more, p.sent_less):
            raise RuntimeError(f"{args.data}: row {i + 1}: lm-eval reads another pair than crows_pairs.load")
    lm = HFLM(pretrained=hf_path, dtype="float32", batch_size=args.batch_size, device=args.device)
    responses = lm.loglikelihood(instances)
    ll = np.array([r[0] for r in responses], dtype=np.float64).reshape(len(pairs), 2)
    per_doc = [task.process_results(docs[i], responses[2 * i : 2 * i + 2]) for i in range(len(pairs))]
    return ll[:, 0], ll[:, 1], float(np.mean([d["pct_stereotype"] for d in per_doc]))


def jax_from_results(path: str, pairs) -> tuple[np.ndarray, np.ndarray]:
    """ll_more, ll_less recorded by `align eval` (crows_pairs examples, in data order)."""
    with open(path) as f:
        examples = json.load(f)["suites"]["crows_pairs"]["examples"]
    if len(examples) < len(pairs):
        raise RuntimeError(f"{path}: {len(examples)} crows_pairs examples for {len(pairs)} pairs")
    for i, (e, p) in enumerate(zip(examples, pairs)):
        if (e["output"], e["prompt"]) != (p.sent_more, p.sent_less):
            raise RuntimeError(f"{path}: crows_pairs example {i}: not the pair at row {i + 1} of the data")
    ex = examples[: len(pairs)]
    return np.array([e["extra"]["ll_more"] for e in ex]), np.array([e["extra"]["ll_less"] for e in ex])


def reused(paths: list[str], n: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Backend lls saved by an earlier run: this script's --json ({"backends": ...}) or
    benchmarks/eval_throughput.py's --json (the row with n pairs); the first `n` pairs of the data."""
    out = {}
    for path in paths:
        with open(path) as f:
            doc = json.load(f)
        if "rows" in doc:
            rows = [r for r in doc["rows"] if r["pairs"] == n]
            if not rows:
                raise RuntimeError(f"{path}: no row with {n} pairs (has {[r['pairs'] for r in doc['rows']]})")
            doc = rows[0]
        elif doc.get("n") != n:
            raise RuntimeError(f"{path}: scored {doc.get('n')} pairs, this run has {n}")
        for name, b in doc["backends"].items():
            out[name] = (np.asarray(b["ll_more"], np.float64), np.asarray(b["ll_less"], np.float64))
    return out


def agreement(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> dict:
    """Per-sentence |ll difference| (max, mean) and the share of pairs decided the same way."""
    d = np.abs(np.concatenate([a[0] - b[0], a[1] - b[1]]))
    same = (a[0] > a[1]) == (b[0] > b[1])
    return {
        "max_abs_ll_diff": float(d.max()),
        "mean_abs_ll_diff": float(d.mean()),
        "agree": float(same.mean()),
        "n_differ": int((~same).sum()),
    }


def _report(name: str, pairs, more, less, seconds: float) -> dict:
    m = crows_pairs.metrics(pairs, more, less)
    pct, diff = m["pct_stereotype"], m["likelihood_difference"]
    print(
        f"{name:<8} pct_stereotype {100 * pct.value:6.2f} [{100 * pct.ci_low:.2f}, {100 * pct.ci_high:.2f}]  "
        f"likelihood_difference {diff.value:8.4f}  n={pct.n}  {seconds:7.1f}s",
        flush=True,
    )
    return {
        "pct_stereotype": pct.value,
        "ci": [pct.ci_low, pct.ci_high],
        "likelihood_difference": diff.value,
        "seconds": seconds,
        "ll_more": more.tolist(),
        "ll_less": less.tolist(),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hf", required=True, help="transformers checkpoint dir (or hub id): lm-eval, HFTorchLM")
    p.add_argument("--jax", default=None, help="align.load spec for JaxLM (default: --hf)")
    p.add_argument("--jax-results", default=None, help="take the JAX lls from this align eval results JSON")
    p.add_argument("--reuse", action="append", default=[], help="lls saved by an earlier run (repeatable)")
    p.add_argument("--backends", default="lm-eval,hf,jax", help="comma-separated from lm-eval, hf, jax")
    p.add_argument("--data", default=crows_pairs.DEFAULT_SOURCE)
    p.add_argument("--hub-config", default=None, help="hub dataset config, e.g. english")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--device", default="cpu", help="torch device for lm-eval and HFTorchLM")
    p.add_argument("--json", default=None, help="write per-backend lls, metrics and agreement here")
    args = p.parse_args(argv)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if not backends or set(backends) - {"lm-eval", "hf", "jax"}:
        p.error(f"--backends {args.backends!r}: choose from lm-eval, hf, jax")

    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    pairs, info = crows_pairs.load(args.data, args.limit, hub_config=args.hub_config)
    print(f"data {info.source} sha256 {info.sha256[:12]}  pairs {info.n}  threads {torch.get_num_threads()}")
    lls, out = {}, {"data": info.source, "sha256": info.sha256, "n": info.n, "backends": {}}
    saved = reused(args.reuse, info.n)
    for name in backends:
        start = time.perf_counter()
        if name in saved:
            more, less = saved[name]
        elif name == "lm-eval":
            more, less, pct = score_lm_eval(args.hf, pairs, args)
            out["lm_eval_process_results_pct"] = pct
        elif name == "hf":
            from safety_evals.lm.hf_lm import HFTorchLM

            hf = HFTorchLM(args.hf, batch_size=args.batch_size, device=args.device)
            more, less = crows_pairs.score_pairs(hf, pairs)
        elif args.jax_results:
            more, less = jax_from_results(args.jax_results, pairs)
        else:
            import align
            from safety_evals.lm.jax_lm import JaxLM

            spec = args.jax or args.hf
            jlm = JaxLM.from_loaded(align.load(spec), name=spec, batch_size=args.batch_size)
            more, less = crows_pairs.score_pairs(jlm, pairs)
        lls[name] = (np.asarray(more, np.float64), np.asarray(less, np.float64))
        out["backends"][name] = _report(name, pairs, *lls[name], time.perf_counter() - start)
    if "lm_eval_process_results_pct" in out:
        print(f"lm-eval process_results pct_stereotype {100 * out['lm_eval_process_results_pct']:.2f}")
    out["agreement"] = {}
    for a, b in combinations(lls, 2):
        g = agreement(lls[a], lls[b])
        out["agreement"][f"{a} vs {b}"] = g
        print(
            f"{a} vs {b}: per-sentence |dll| max {g['max_abs_ll_diff']:.2e} "
            f"mean {g['mean_abs_ll_diff']:.2e}; "
            f"same decision {100 * g['agree']:.2f}% ({g['n_differ']} of {len(pairs)} pairs differ)"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f)
    return 0


if __name__ == "__main__":
    import align

    align.setup()  # XLA:CPU defaults (and ALIGN_KEEP_HOST_MEMORY), as the `align` command line runs
    raise SystemExit(main())
