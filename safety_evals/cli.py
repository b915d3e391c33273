"""`align eval`: run safety suites on a model and write one results document (docs/results_schema.md).

    align eval --model gemma3-270m --suite crows_pairs,stereoset --limit 200 --out results.json

The arguments become a `safety_evals.api.EvalOptions` and `api.run_eval` does the work (the pipeline
calls the same function). Exit code: 0 when every suite succeeded, 1 when any failed (the document is
written either way, with the failed suites' errors), 2 for bad arguments or a model that cannot be
loaded (an InputError that `align`'s entry point prints as one line; no document is written).
"""

from __future__ import annotations

import argparse

from align import distributed
from align.errors import InvalidInput
from safety_evals import api, results


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = api.EvalOptions(model="-")  # the API's defaults, so --help shows the same values
    parser.add_argument("--model", required=True, help="what align.load accepts: preset name, HF dir, *.gguf")
    parser.add_argument(
        "--suite",
        default=",".join(defaults.suites),
        help=f"comma-separated, from: {', '.join(api.SUITES)} (default: {','.join(defaults.suites)})",
    )
    parser.add_argument("--out", required=True, help="results JSON path (written atomically)")
    parser.add_argument(
        "--limit", type=int, default=None, help="examples per suite (per file/side where noted)"
    )
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument(
        "--mesh",
        default=None,
        metavar="DATA,FSDP,TENSOR",
        help="jax backend: shard the model and batches over this mesh, e.g. 2,2,1 (-1: the devices left "
        "over); default one device",
    )
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument(
        "--heldout-seed",
        type=int,
        default=None,
        help="hedging / attribution: score only the held-out part of the split that SelfAware / BEGIN "
        "training used with this seed (the training source's seed)",
    )
    parser.add_argument("--judge", default=defaults.judge, help=f"attribution judge: {api.JUDGES}")
    parser.add_argument(
        "--variant",
        default=None,
        help="variant name to record (e.g. chat, developer); 'chat' also implies --chat-template gemma",
    )
    parser.add_argument(
        "--chat-template",
        choices=api.CHAT_TEMPLATES,
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
        choices=api.BACKENDS,
        default=defaults.backend,
        help="jax: align.load + JaxLM; hf: transformers HFTorchLM (reference)",
    )
    parser.add_argument(
        "--device", default=defaults.device, help="torch device for hf backend, judges, detoxify"
    )
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
    tox = defaults.toxicity
    parser.add_argument("--toxicity-model", default=tox.model, help="detoxify model type")
    parser.add_argument(
        "--toxicity-checkpoint",
        default=None,
        help="local Detoxify checkpoint, read weights-only (default: the released one in the torch hub)",
    )
    parser.add_argument(
        "--toxicity-hf-config",
        default=None,
        help="directory with the checkpoint's transformers config + tokenizer (offline)",
    )
    parser.add_argument(
        "--toxicity-samples", type=int, default=tox.samples, help="continuations per prompt (k)"
    )
    parser.add_argument(
        "--ifeval-max-new-tokens",
        type=int,
        default=defaults.ifeval.max_new_tokens,
        help="ifeval: tokens generated per prompt (default: lm-eval's max_gen_toks)",
    )
    parser.add_argument(
        "--ifeval-without-punkt",
        action="store_true",
        help="ifeval: when NLTK's punkt_tab is missing, score only the prompts that do not need it "
        "(the data record says how many were dropped)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no tqdm progress bars")


def _suite_values(items: list[str], flag: str, what: str) -> dict[str, str]:
    """["SUITE=VALUE", ...] -> {SUITE: VALUE}; EvalOptions checks the suite names."""
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            raise InvalidInput(f"{flag} {item!r}: expected SUITE={what}")
        out[name] = value
    return out


def _mesh(text: str | None) -> tuple[int, int, int] | None:
    if text is None:
        return None
    try:
        data, fsdp, tensor = (int(x) for x in text.split(","))
    except ValueError:
        raise InvalidInput(f"--mesh {text!r}: expected DATA,FSDP,TENSOR, e.g. 2,2,1") from None
    return data, fsdp, tensor


def options(args: argparse.Namespace) -> api.EvalOptions:
    """The parsed command line as EvalOptions; InvalidInput for a bad combination."""
    return api.EvalOptions(
        model=args.model,
        suites=api.parse_suites(args.suite),
        limit=args.limit,
        batch_size=args.batch_size,
        mesh=_mesh(args.mesh),
        seed=args.seed,
        heldout_seed=args.heldout_seed,
        judge=args.judge,
        variant=args.variant,
        chat_template=args.chat_template,
        system_prompt=args.system_prompt,
        step=args.step,
        data=_suite_values(args.data, "--data", "SOURCE"),
        data_config=_suite_values(args.data_config, "--data-config", "CONFIG"),
        toxicity=api.ToxicityOptions(
            model=args.toxicity_model,
            checkpoint=args.toxicity_checkpoint,
            hf_config=args.toxicity_hf_config,
            samples=args.toxicity_samples,
        ),
        ifeval=api.IFEvalOptions(
            max_new_tokens=args.ifeval_max_new_tokens, without_punkt=args.ifeval_without_punkt
        ),
        backend=args.backend,
        device=args.device,
        progress=not args.no_progress,
    )


def summary(doc: dict) -> str:
    """A few lines per run: each suite's status, seconds and first metrics."""
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


def run(args: argparse.Namespace) -> int:
    doc = api.run_eval(options(args))
    if distributed.is_primary():  # every process evaluated; one writes
        results.write_atomic(args.out, doc)
    distributed.barrier("eval-results")
    print(summary(doc))
    print(f"wrote {args.out}")
    return 0 if all(s["status"] == "ok" for s in doc["suites"].values()) else 1
