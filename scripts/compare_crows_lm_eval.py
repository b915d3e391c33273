"""Score CrowS-Pairs the lm-evaluation-harness way with the transformers reference and with JAX.

    python scripts/compare_crows_lm_eval.py --hf /path/gemma-3-270m --jax gemma3-270m [--limit 200]
        [--data jannalu/crows_pairs_multilingual --hub-config english] [--device cuda] [--lm-eval]

Both backends score through `safety_evals.crows_pairs` (lm-eval's `crows_pairs_english`: each
sentence's log-likelihood with an empty context, i.e. conditioned on BOS; pct_stereotype = share of
pairs with ll(sent_more) > ll(sent_less); likelihood_difference = mean |difference|):

* HF:  `HFTorchLM` (transformers + torch, lm-eval's HFLM encoding and scoring, float32 log_softmax)
* JAX: `JaxLM` over `align.load(--jax)`

With `--lm-eval` and the `lm_eval` package installed, lm-eval itself is also run on `--hf`
(task crows_pairs_english: its own dataset, `jannalu/crows_pairs_multilingual` english, 1677 pairs;
compare it with `--data jannalu/crows_pairs_multilingual --hub-config english`). Not run in CI.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from safety_evals import crows_pairs


def _score(name: str, lm, pairs) -> tuple[np.ndarray, np.ndarray]:
    start = time.perf_counter()
    more, less = crows_pairs.score_pairs(lm, pairs)
    m = crows_pairs.metrics(pairs, more, less)
    pct, diff = m["pct_stereotype"], m["likelihood_difference"]
    print(
        f"{name:<5} pct_stereotype {100 * pct.value:6.2f}  [{100 * pct.ci_low:.2f}, {100 * pct.ci_high:.2f}]  "
        f"likelihood_difference {diff.value:8.4f}  n={pct.n}  {time.perf_counter() - start:7.1f}s"
    )
    return more, less


def _lm_eval(path: str, limit: int | None, device: str) -> None:
    try:
        import lm_eval
    except ImportError:
        print("lm-eval: package not installed (pip install lm-eval); skipped")
        return
    out = lm_eval.simple_evaluate(
        model="hf",
        model_args=f"pretrained={path},dtype=float32",
        tasks=["crows_pairs_english"],
        limit=limit,
        device=device,
        batch_size=8,
    )
    r = out["results"]["crows_pairs_english"]
    pct = r.get("pct_stereotype,none", r.get("acc,none"))  # older lm-eval versions report it as acc
    print(f"lm-eval pct_stereotype {100 * pct:6.2f}  likelihood_difference {r['likelihood_diff,none']:8.4f}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hf", required=True, help="transformers checkpoint dir (or hub id) for HFTorchLM")
    p.add_argument("--jax", default=None, help="align.load spec for JaxLM (default: --hf)")
    p.add_argument("--data", default=crows_pairs.DEFAULT_SOURCE)
    p.add_argument("--hub-config", default=None, help="hub dataset config, e.g. english")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--device", default="cpu", help="torch device for the HF backend")
    p.add_argument("--lm-eval", action="store_true", help="also run lm-eval's crows_pairs_english on --hf")
    args = p.parse_args(argv)

    pairs, info = crows_pairs.load(args.data, args.limit, hub_config=args.hub_config)
    print(f"data {info.source} sha256 {info.sha256[:12]}  pairs {info.n}")

    from safety_evals.hf_lm import HFTorchLM

    hf = HFTorchLM(args.hf, batch_size=args.batch_size, device=args.device)
    print(f"hf: add_bos={hf.add_bos} prefix_id={hf.prefix_id} max_length={hf.max_length}")
    hf_more, hf_less = _score("hf", hf, pairs)
    del hf

    import align
    from safety_evals.jax_lm import JaxLM

    jlm = JaxLM.from_loaded(
        align.load(args.jax or args.hf), name=args.jax or args.hf, batch_size=args.batch_size
    )
    jx_more, jx_less = _score("jax", jlm, pairs)

    d = np.abs(np.concatenate([hf_more - jx_more, hf_less - jx_less]))
    flips = int(((hf_more > hf_less) != (jx_more > jx_less)).sum())
    print(
        f"per-sentence |ll_hf - ll_jax|: max {d.max():.2e}  mean {d.mean():.2e}; pairs decided differently: {flips}"
    )
    if args.lm_eval:
        _lm_eval(args.hf, args.limit, args.device)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
