"""`align eval`: run safety suites on a model and write one results document (docs/results_schema.md).

    align eval --model gemma3-270m --suite crows_pairs,stereoset --limit 200 --out results.json

The model is loaded with `align.load(M)` and scored through `JaxLM` (`--backend hf` uses the
transformers reference `HFTorchLM` instead). Each suite runs under `results.run_suite`, so a suite
that raises is recorded as failed with its error and the others still run. Exit code: 0 when every
suite succeeded, 1 when any failed (the document is written either way), 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from safety_evals.suites import attribution, bbq, crows_pairs, factuality, hedging, stereoset, toxicity
from safety_evals import results
from safety_evals.lm.protocol import LanguageModel

DEFAULT_SUITES = ("crows_pairs", "stereoset", "toxicity", "factuality", "hedging", "attribution")


def _judge(lm: LanguageModel, args):
    from safety_evals.suites import judges

    kind, _, path = args.judge.partition(":")
    if kind == "llm" and not path:
        return judges.LLMJudge(lm)
    if kind == "nli" and path:
        return judges.NLIJudge(path, device=args.device)
    if kind == "seq2seq" and path:
        return judges.Seq2SeqNLIJudge(path, device=args.device)
    raise ValueError(f"--judge {args.judge!r}: expected 'llm', 'nli:PATH' or 'seq2seq:PATH'")


def _scorer(args):
    return toxicity.DetoxifyScorer(
        args.toxicity_model,
        checkpoint=args.toxicity_checkpoint,
        huggingface_config_path=args.toxicity_hf_config,
        device=args.device,
    )


def _src(args, suite: str, default: str) -> str:
    return args.data.get(suite, default)


# name -> (version, run(lm, args) -> SuiteResult): the one explicit table of suites
SUITES: dict[str, tuple[str, Callable[[LanguageModel, Any], results.SuiteResult]]] = {
    "crows_pairs": (
        crows_pairs.VERSION,
        lambda lm, a: crows_pairs.run(
            lm,
            source=_src(a, "crows_pairs", crows_pairs.DEFAULT_SOURCE),
            limit=a.limit,
            hub_config=a.data_config.get("crows_pairs"),
        ),
    ),
    "stereoset": (
        stereoset.VERSION,
        lambda lm, a: stereoset.run(lm, source=_src(a, "stereoset", stereoset.DEFAULT_SOURCE), limit=a.limit),
    ),
    "bbq": (bbq.VERSION, lambda lm, a: bbq.run(lm, source=_src(a, "bbq", bbq.DEFAULT_SOURCE), limit=a.limit)),
    "factuality": (
        factuality.VERSION,
        lambda lm, a: factuality.run(
            lm, source=_src(a, "factuality", factuality.DEFAULT_SOURCE), limit=a.limit
        ),
    ),
    "hedging": (
        hedging.VERSION,
        lambda lm, a: hedging.run(lm, source=_src(a, "hedging", hedging.DEFAULT_SOURCE), limit=a.limit),
    ),
    "attribution": (
        attribution.VERSION,
        lambda lm, a: attribution.run(
            lm, judge=_judge(lm, a), source=_src(a, "attribution", attribution.DEFAULT_SOURCE), limit=a.limit
        ),
    ),
    "toxicity": (
        toxicity.VERSION,
        lambda lm, a: toxicity.run(
            lm,
            scorer=_scorer(a),
            source=_src(a, "toxicity", toxicity.DEFAULT_SOURCE),
            limit=a.limit,
            config=toxicity.ToxicityConfig(num_samples=a.toxicity_samples, seed=a.seed),
        ),
    ),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="what align.load accepts: preset name, HF dir, *.gguf")
    parser.add_argument(
        "--suite",
        default=",".join(DEFAULT_SUITES),
        help=f"comma-separated, from: {', '.join(SUITES)} (default: {','.join(DEFAULT_SUITES)})",
    )
    parser.add_argument("--out", required=True, help="results JSON path (written atomically)")
    parser.add_argument(
        "--limit", type=int, default=None, help="examples per suite (per file/side where noted)"
    )
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--judge",
        default="llm",
        help="attribution judge: 'llm' (the evaluated model), 'nli:PATH' or 'seq2seq:PATH'",
    )
    parser.add_argument(
        "--variant",
        default=None,
        help="variant name to record (e.g. chat, developer); 'chat' also implies --chat-template gemma",
    )
    parser.add_argument(
        "--chat-template",
        choices=("gemma", "none"),
        default=None,
        help="wrap generation prompts as one user turn of this template (scoring suites compare raw "
        "text either way); default: gemma for --variant chat, else none",
    )
    parser.add_argument(
        "--system-prompt",
        default=None,
        help="a default system prompt, folded into the user turn as Gemma does (needs a chat template)",
    )
    parser.add_argument("--step", type=int, default=None, help="training step to record")
    parser.add_argument(
        "--backend",
        choices=("jax", "hf"),
        default="jax",
        help="jax: align.load + JaxLM; hf: transformers HFTorchLM (reference)",
    )
    parser.add_argument("--device", default="cpu", help="torch device for hf backend, judges and detoxify")
    parser.add_argument(
        "--data",
        action="append",
        default=[],
        metavar="SUITE=SOURCE",
        help="override a suite's data: a local path or a hub dataset name (repeatable; default: the "
        "suite's files under $ALIGN_DATA_DIR, which defaults to ../shared/data beside the checkout)",
    )
    parser.add_argument(
        "--data-config",
        action="append",
        default=[],
        metavar="SUITE=CONFIG",
        help="hub dataset config of a suite's data, e.g. crows_pairs=english for "
        "jannalu/crows_pairs_multilingual (repeatable)",
    )
    parser.add_argument("--toxicity-model", default="original", help="detoxify model type")
    parser.add_argument("--toxicity-checkpoint", default=None, help="local detoxify checkpoint (offline)")
    parser.add_argument(
        "--toxicity-hf-config",
        default=None,
        help="directory with the checkpoint's transformers config + tokenizer (offline)",
    )
    parser.add_argument("--toxicity-samples", type=int, default=25, help="continuations per prompt (k)")
    parser.add_argument("--no-progress", action="store_true", help="no tqdm progress bars")


def _parse(args) -> list[str]:
    suites = [s.strip() for s in args.suite.split(",") if s.strip()]
    unknown = [s for s in suites if s not in SUITES]
    if unknown or not suites:
        raise ValueError(f"--suite: unknown {unknown or '(empty)'}; choose from {', '.join(SUITES)}")
    if args.chat_template is None:
        args.chat_template = "gemma" if args.variant == "chat" else "none"
    if args.system_prompt and args.chat_template == "none":
        raise ValueError("--system-prompt needs a chat template to fold into (--chat-template gemma)")
    args.data = _suite_values(args.data, "--data", "SOURCE")
    args.data_config = _suite_values(args.data_config, "--data-config", "CONFIG")
    if set(args.data_config) - {"crows_pairs"}:
        names = sorted(args.data_config)
        raise ValueError(f"--data-config: only crows_pairs takes a hub config, not {names}")
    return suites


def _suite_values(items: list[str], flag: str, what: str) -> dict[str, str]:
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or name not in SUITES or not value:
            raise ValueError(f"{flag} {item!r}: expected SUITE={what} with SUITE in {', '.join(SUITES)}")
        out[name] = value
    return out


def load_lm(args) -> tuple[LanguageModel, str | None]:
    """(the language model, the local path of its weights or None)."""
    if args.backend == "hf":
        from safety_evals.lm.hf_lm import HFTorchLM

        return HFTorchLM(args.model, batch_size=args.batch_size, device=args.device), args.model
    import align
    from safety_evals.lm.jax_lm import JaxLM

    loaded = align.load(args.model)
    return JaxLM.from_loaded(loaded, name=args.model, batch_size=args.batch_size), loaded.source


def _progress(lm: LanguageModel, suite: str, args):
    from tqdm import tqdm

    from safety_evals.lm.wrappers import ProgressLM

    bar = tqdm(total=0, desc=suite, unit="req", disable=args.no_progress, file=sys.stderr, leave=True)
    return ProgressLM(lm, bar, chunk=max(1, args.batch_size) * 16), bar


def run_suites(lm: LanguageModel, names: list[str], args) -> dict[str, dict]:
    entries = {}
    for name in names:
        version, fn = SUITES[name]
        wrapped, bar = _progress(lm, name, args)
        try:
            entries[name] = results.run_suite(version, lambda fn=fn, lm=wrapped: fn(lm, args))
        finally:
            bar.close()
    return entries


def _summary(doc: dict) -> str:
    lines = [f"run {doc['run_id']}  model {doc['model']['name']}"]
    for name, s in doc["suites"].items():
        if s["status"] != "ok":
            lines.append(f"  {name:<12} FAILED  {s['error'].splitlines()[0]}")
            continue
        top = [
            f"{k}={v['value']:.4g}"
            for k, v in s["metrics"].items()
            if "/" not in k and v["value"] is not None
        ]
        lines.append(f"  {name:<12} ok {s['seconds']:7.1f}s  " + "  ".join(top[:6]))
    return "\n".join(lines)


def run(args) -> int:
    try:
        names = _parse(args)
    except ValueError as e:
        print(f"align eval: {e}", file=sys.stderr)
        return 2
    try:
        lm, path = load_lm(args)
        if args.chat_template == "gemma":
            from safety_evals.lm.wrappers import ChatPromptLM, chat_user_turn

            system = args.system_prompt
            lm = ChatPromptLM(lm, lambda text: chat_user_turn(text, system=system))
        entries = run_suites(lm, names, args)
    except Exception as exc:  # noqa: BLE001 - no model: every suite is recorded as failed, not dropped
        path = None
        entries = {n: results.run_suite(SUITES[n][0], lambda e=exc: _raise(e)) for n in names}
    doc = results.build_document(
        model=results.model_record(args.model, path, variant=args.variant, step=args.step),
        config={
            "limit": args.limit,
            "seed": args.seed,
            "suites": names,
            "backend": args.backend,
            "judge": args.judge,
            "chat_template": args.chat_template,
            "system_prompt": args.system_prompt,
            "batch_size": args.batch_size,
            "data": args.data,
            "data_config": args.data_config,
        },
        suites=entries,
    )
    results.write_atomic(args.out, doc)
    print(_summary(doc))
    print(f"wrote {args.out}")
    return 0 if all(s["status"] == "ok" for s in doc["suites"].values()) else 1


def _raise(exc: BaseException):
    raise RuntimeError(f"model {type(exc).__name__}: {exc}") from exc
