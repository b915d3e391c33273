"""The Python API of the safety evals: `run_eval(EvalOptions(...)) -> results document`.

    doc = run_eval(EvalOptions(model="gemma3-270m", suites=("crows_pairs", "stereoset"), limit=200))
    results.write_atomic("results.json", doc)  # docs/results_schema.md

`align eval` (safety_evals.cli) and the pipeline's eval stage both build an EvalOptions and call
run_eval. Invalid options (raised when the EvalOptions is built) and a model that cannot be loaded
raise align.errors.InputError before any suite runs, so the command line prints one line and exits 2
and no document is written. A suite that raises while it runs is recorded as failed in the document
(results.run_suite) and the others still run.

SUITES is the one table of suites: adding a suite is one entry, its version and a runner that calls the
suite module's `run` with the options it needs.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from align.errors import InvalidInput
from safety_evals import results
from safety_evals.lm.protocol import LanguageModel
from safety_evals.suites import (
    attribution,
    bbq,
    crows_pairs,
    factuality,
    hedging,
    ifeval,
    refusal,
    stereoset,
    toxicity,
    truthfulqa_mc,
)

DEFAULT_SUITES = (
    "crows_pairs",
    "stereoset",
    "toxicity",
    "factuality",
    "hedging",
    "attribution",
    "refusal",
    "ifeval",
)
CHAT_TEMPLATES = ("gemma", "none")
BACKENDS = ("jax", "hf")  # jax: align.load + JaxLM; hf: the transformers reference HFTorchLM
JUDGES = "'trained' (the judge trained on BEGIN's labels) or 'self' (the evaluated model grades itself)"


@dataclasses.dataclass(frozen=True)
class ToxicityOptions:
    """The toxicity suite's detoxify scorer and sampling."""

    model: str = "original"  # detoxify model type
    checkpoint: str | None = None  # a local detoxify checkpoint (offline)
    hf_config: str | None = None  # directory with the checkpoint's transformers config + tokenizer
    samples: int = 25  # continuations per prompt (k)


@dataclasses.dataclass(frozen=True)
class IFEvalOptions:
    """The ifeval suite's generation length and what to do without NLTK's punkt_tab (suites.ifeval)."""

    max_new_tokens: int = ifeval.IFEvalConfig.max_new_tokens
    without_punkt: bool = False  # drop the prompts whose checkers need punkt_tab when it is missing


@dataclasses.dataclass(frozen=True)
class EvalOptions:
    """One eval run. Building one with invalid values raises InvalidInput naming the option.

    `chat_template` None resolves to "gemma" for the "chat" variant and to "none" otherwise; only
    generation prompts are wrapped (scoring suites compare raw text either way).
    """

    model: str  # what align.load accepts: an embedded name, a HF directory, a *.gguf file, a hub id
    suites: tuple[str, ...] = DEFAULT_SUITES
    limit: int | None = None  # examples per suite (per file/side where a suite says so)
    batch_size: int = 8
    seed: int = 0
    judge: str = "trained"  # the attribution judge: see JUDGES
    variant: str | None = None  # the variant name recorded in the document (chat, developer, ...)
    chat_template: str | None = None  # one of CHAT_TEMPLATES, or None (see above)
    system_prompt: str | None = None  # folded into the user turn as Gemma does (needs a chat template)
    step: int | None = None  # the training step recorded in the document
    data: Mapping[str, str] = dataclasses.field(default_factory=dict)  # suite -> local path or hub dataset
    data_config: Mapping[str, str] = dataclasses.field(default_factory=dict)  # suite -> hub dataset config
    toxicity: ToxicityOptions = ToxicityOptions()
    ifeval: IFEvalOptions = IFEvalOptions()
    # hedging and attribution score only the held-out part of the split SelfAware / BEGIN training
    # used with this seed (align.data.selfaware, align.data.grounding); None: every example
    heldout_seed: int | None = None
    backend: str = "jax"  # one of BACKENDS
    device: str = "cpu"  # torch device of the hf backend, the judges and detoxify
    # jax backend: (data, fsdp, tensor) of align's mesh (-1 on one axis: the devices left over); the
    # weights shard by align's rules table and batch rows split over data x fsdp. None: one device.
    mesh: tuple[int, int, int] | None = None
    progress: bool = True  # a tqdm bar per suite on stderr

    def __post_init__(self):
        # Normalised once here, so the document records what actually ran.
        object.__setattr__(self, "suites", tuple(self.suites))
        if self.chat_template is None:
            object.__setattr__(self, "chat_template", "gemma" if self.variant == "chat" else "none")
        _check(self)


class Suite(NamedTuple):
    version: str  # recorded per suite in the document; bump when its metrics change meaning
    run: Callable[[LanguageModel, EvalOptions], results.SuiteResult]


# The public hub dataset (name, config) a suite reads when its default file under the data directory
# is absent (a CI runner without ALIGN_DATA_DIR): `datasets.load_dataset` fetches it when online, and
# the document records the hub name as the suite's data.source. BEGIN (attribution) has no hub copy:
# scripts/fetch_eval_data.py puts the authors' files where the data directory holds them.
HUB_FALLBACK: dict[str, tuple[str, str | None]] = {
    "crows_pairs": ("jannalu/crows_pairs_multilingual", "english"),  # lm-eval's crows_pairs_english
    "stereoset": ("McGill-NLP/stereoset", None),
    "bbq": ("oskarvanderwal/bbq", None),  # lm-eval's bbq
    "truthfulqa_mc": ("truthfulqa/truthful_qa", None),
    "factuality": ("truthfulqa/truthful_qa", None),
    "ifeval": ("google/IFEval", None),
    # SelfAware's authors publish it on GitHub only; this hub copy has the same 3369 rows and fields
    "hedging": ("OkayestProgrammer/selfAware", None),
    "refusal": ("walledai/XSTest", None),  # XSTest's 450 prompts with label, no id column
    "toxicity": ("allenai/real-toxicity-prompts", None),
}


def _source(options: EvalOptions, suite: str, default: str) -> str:
    if suite in options.data:
        return options.data[suite]
    if suite in HUB_FALLBACK and not Path(default).exists():
        return HUB_FALLBACK[suite][0]
    return default


def _hub_config(options: EvalOptions, suite: str, default: str) -> str | None:
    if suite in options.data_config:
        return options.data_config[suite]
    return HUB_FALLBACK[suite][1] if _source(options, suite, default) == HUB_FALLBACK[suite][0] else None


# name -> Suite: the one explicit table of suites
SUITES: dict[str, Suite] = {
    "crows_pairs": Suite(
        crows_pairs.VERSION,
        lambda lm, o: crows_pairs.run(
            lm,
            source=_source(o, "crows_pairs", crows_pairs.DEFAULT_SOURCE),
            limit=o.limit,
            hub_config=_hub_config(o, "crows_pairs", crows_pairs.DEFAULT_SOURCE),
        ),
    ),
    "stereoset": Suite(
        stereoset.VERSION,
        lambda lm, o: stereoset.run(
            lm, source=_source(o, "stereoset", stereoset.DEFAULT_SOURCE), limit=o.limit
        ),
    ),
    "bbq": Suite(
        bbq.VERSION, lambda lm, o: bbq.run(lm, source=_source(o, "bbq", bbq.DEFAULT_SOURCE), limit=o.limit)
    ),
    "truthfulqa_mc": Suite(
        truthfulqa_mc.VERSION,
        lambda lm, o: truthfulqa_mc.run(
            lm, source=_source(o, "truthfulqa_mc", truthfulqa_mc.DEFAULT_SOURCE), limit=o.limit
        ),
    ),
    "factuality": Suite(
        factuality.VERSION,
        lambda lm, o: factuality.run(
            lm,
            truth_judge=trained_judge("truth"),
            info_judge=trained_judge("info"),
            source=_source(o, "factuality", factuality.DEFAULT_SOURCE),
            limit=o.limit,
        ),
    ),
    "hedging": Suite(
        hedging.VERSION,
        lambda lm, o: hedging.run(
            lm,
            judge=trained_judge("hedge"),
            source=_source(o, "hedging", hedging.DEFAULT_SOURCE),
            limit=o.limit,
            heldout_seed=o.heldout_seed,
        ),
    ),
    "refusal": Suite(
        refusal.VERSION,
        lambda lm, o: refusal.run(
            lm,
            judge=trained_judge("refusal"),
            source=_source(o, "refusal", refusal.DEFAULT_SOURCE),
            limit=o.limit,
        ),
    ),
    "ifeval": Suite(
        ifeval.VERSION,
        lambda lm, o: ifeval.run(
            lm,
            source=_source(o, "ifeval", ifeval.DEFAULT_SOURCE),
            limit=o.limit,
            config=ifeval.IFEvalConfig(
                max_new_tokens=o.ifeval.max_new_tokens, without_punkt=o.ifeval.without_punkt
            ),
        ),
    ),
    "attribution": Suite(
        attribution.VERSION,
        lambda lm, o: attribution.run(
            lm,
            judge=judge(lm, o),
            source=_source(o, "attribution", attribution.DEFAULT_SOURCE),
            limit=o.limit,
            heldout_seed=o.heldout_seed,
        ),
    ),
    "toxicity": Suite(
        toxicity.VERSION,
        lambda lm, o: toxicity.run(
            lm,
            scorer=toxicity_scorer(o),
            source=_source(o, "toxicity", toxicity.DEFAULT_SOURCE),
            limit=o.limit,
            config=toxicity.ToxicityConfig(num_samples=o.toxicity.samples, seed=o.seed),
        ),
    ),
}
HUB_CONFIG_SUITES = ("crows_pairs",)  # suites whose hub data takes a dataset config (data_config)


def parse_suites(text: str) -> tuple[str, ...]:
    """'crows_pairs, stereoset' -> ("crows_pairs", "stereoset"): the comma-separated form of the CLI and
    the pipeline config."""
    return tuple(s.strip() for s in text.split(",") if s.strip())


def _check(o: EvalOptions) -> None:
    names = ", ".join(SUITES)
    unknown = [s for s in o.suites if s not in SUITES]
    if unknown or not o.suites:
        raise InvalidInput(f"suites: unknown {unknown or '(none given)'}; choose from {names}")
    if len(set(o.suites)) != len(o.suites):
        raise InvalidInput(f"suites: {list(o.suites)} names a suite twice")
    if o.chat_template not in CHAT_TEMPLATES:
        raise InvalidInput(f"chat_template: {o.chat_template!r} is not one of {', '.join(CHAT_TEMPLATES)}")
    if o.system_prompt and o.chat_template == "none":
        raise InvalidInput("system_prompt needs a chat template to fold into (chat_template gemma)")
    for what, mapping in (("data", o.data), ("data_config", o.data_config)):
        bad = [k for k, v in mapping.items() if k not in SUITES or not v]
        if bad:
            raise InvalidInput(f"{what}: {bad} is not SUITE -> non-empty value with SUITE in {names}")
    if set(o.data_config) - set(HUB_CONFIG_SUITES):
        only = ", ".join(HUB_CONFIG_SUITES)
        raise InvalidInput(f"data_config: only {only} takes a hub config, not {sorted(o.data_config)}")
    if o.judge not in ("trained", "self"):
        raise InvalidInput(f"judge: {o.judge!r} is not {JUDGES}")
    if o.backend not in BACKENDS:
        raise InvalidInput(f"backend: {o.backend!r} is not one of {', '.join(BACKENDS)}")
    for what, value, low in (
        ("limit", o.limit, 0),
        ("batch_size", o.batch_size, 1),
        ("toxicity.samples", o.toxicity.samples, 1),
        ("ifeval.max_new_tokens", o.ifeval.max_new_tokens, 1),
        ("heldout_seed", o.heldout_seed, 0),
    ):
        if value is not None and value < low:
            raise InvalidInput(f"{what}: {value} is below {low}")


def trained_judge(role: str):
    """The shipped judge of `role` (safety_evals.judges, imported lazily: it loads a backbone)."""
    from safety_evals.judges import load_judge

    return load_judge(role)


def judge(lm: LanguageModel, options: EvalOptions):
    """The attribution judge of `options.judge` (checked when the options were built): the trained
    one, or the evaluated model grading itself when asked for by name."""
    return attribution.SelfJudge(lm) if options.judge == "self" else trained_judge("attribution")


def toxicity_scorer(options: EvalOptions) -> toxicity.DetoxifyScorer:
    t = options.toxicity
    return toxicity.DetoxifyScorer(
        t.model, checkpoint=t.checkpoint, huggingface_config_path=t.hf_config, device=options.device
    )


def load_lm(options: EvalOptions) -> tuple[LanguageModel, str]:
    """(the language model, the local path of its weights). A spec that names no model raises
    align's ModelNotFound (a MissingInput) from `align.load`'s grammar."""
    import align

    if options.backend == "hf":
        from align.hub import resolve
        from safety_evals.lm.hf_lm import HFTorchLM

        path = resolve(options.model)
        if not Path(path, "config.json").is_file():
            raise InvalidInput(
                f"model {options.model!r}: the hf backend needs a Hugging Face directory with config.json, "
                f"not {path}"
            )
        return HFTorchLM(path, name=options.model, batch_size=options.batch_size, device=options.device), path
    from safety_evals.lm.jax_lm import JaxLM

    loaded = align.load(options.model)
    mesh = None
    if options.mesh is not None:
        from align.model.sharding import MeshConfig, make_mesh

        mesh = make_mesh(MeshConfig(*options.mesh))
    return JaxLM.from_loaded(
        loaded, name=options.model, batch_size=options.batch_size, mesh=mesh
    ), loaded.source


def _prompted(lm: LanguageModel, options: EvalOptions) -> LanguageModel:
    """Generation prompts as one user turn of the chat template, as the exported variant sees them."""
    if options.chat_template == "none":
        return lm
    from safety_evals.lm.wrappers import ChatPromptLM, chat_user_turn

    system = options.system_prompt
    return ChatPromptLM(lm, lambda text: chat_user_turn(text, system=system))


def run_suites(lm: LanguageModel, options: EvalOptions) -> dict[str, dict[str, Any]]:
    """{suite: its document entry}, in the order of options.suites; a suite that raises is "failed"."""
    from tqdm import tqdm

    from safety_evals.lm.wrappers import ProgressLM

    entries = {}
    for name in options.suites:
        suite = SUITES[name]
        bar = tqdm(total=0, desc=name, unit="req", disable=not options.progress, file=sys.stderr, leave=True)
        wrapped = ProgressLM(lm, bar, chunk=max(1, options.batch_size) * 16)
        try:
            entries[name] = results.run_suite(suite.version, lambda run=suite.run: run(wrapped, options))
        finally:
            bar.close()
    return entries


def config_record(options: EvalOptions) -> dict[str, Any]:
    """The document's "config": what a reader needs to reproduce the run."""
    return {
        "limit": options.limit,
        "seed": options.seed,
        "heldout_seed": options.heldout_seed,
        "suites": list(options.suites),
        "backend": options.backend,
        "judge": options.judge,
        "chat_template": options.chat_template,
        "system_prompt": options.system_prompt,
        "batch_size": options.batch_size,
        "data": dict(options.data),
        "data_config": dict(options.data_config),
        "ifeval": dataclasses.asdict(options.ifeval),
    }


def run_eval(options: EvalOptions, *, lm: LanguageModel | None = None) -> dict[str, Any]:
    """Run `options.suites` on `options.model` and return the results document (not yet written).

    `lm`: an already loaded model to evaluate instead of loading `options.model` (whose name is still
    recorded; its path is recorded as None). Raises InputError when the model cannot be loaded.
    """
    path = None
    if lm is None:
        lm, path = load_lm(options)
    entries = run_suites(_prompted(lm, options), options)
    return results.build_document(
        model=results.model_record(options.model, path, variant=options.variant, step=options.step),
        config=config_record(options),
        suites=entries,
    )
