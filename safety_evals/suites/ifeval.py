"""Instruction following on IFEval (Zhou et al. 2023), scored by the checkers that ship in lm-eval.

Each of the 541 prompts carries one or more verifiable instructions ("answer in fewer than 100
words", "no commas", "wrap the answer in JSON"). The checkers are lm-eval's own
(`lm_eval.tasks.ifeval.utils.test_instruction_following_strict` / `_loose`, which read
`instructions_registry`), imported rather than copied, so the scores equal lm-eval's `ifeval` task
on the same generations. Metrics, as lm-eval aggregates them:

    prompt_level_strict_acc = mean_p [every instruction of p followed]       (gated)
    inst_level_strict_acc   = sum_p followed(p) / sum_p instructions(p)
    *_loose_acc             = the same, where a response also counts as following an instruction
                              when it does with its first and/or last line or its '*' removed

One checker draws at random: letter_frequency with a non-letter `letter` (keys 1122 and 1129)
checks a random letter; `follows` seeds it per prompt, so our verdict is repeatable and lm-eval's
on those two instructions may differ (benchmarks/RESULTS.md, IFEval through lm-eval).

Two checkers read NLTK's Punkt sentence model (`tokenizers/punkt_tab`), which NLTK downloads at run
time: `length_constraints:number_sentences` and `change_case:capital_word_frequency`. Without it the
suite stops and says where to put it, unless `IFEvalConfig(without_punkt=True)` drops the prompts
that need it (the data record then says so and counts only the prompts scored).
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from align.data_dir import data_path
from align.errors import MissingInput
from safety_evals.lm.protocol import LanguageModel
from safety_evals.metrics import instruction_level
from safety_evals.results import DataInfo, Metric, SuiteResult, example, mean_metric, statistic_metric
from safety_evals.suites import data

NAME = "ifeval"
VERSION = "1"
DEFAULT_SOURCE = data_path("ifeval/input_data.jsonl")
NEEDS_PUNKT = frozenset({"length_constraints:number_sentences", "change_case:capital_word_frequency"})
PUNKT_HELP = (
    "NLTK's punkt_tab is missing: on a machine with network run `python -m nltk.downloader punkt_tab` "
    "and copy the nltk_data folder it writes to ~/nltk_data (or point NLTK_DATA at it); or run with "
    "IFEvalConfig(without_punkt=True) to score only the prompts that do not need it"
)


@dataclasses.dataclass(frozen=True)
class Item:
    key: int
    prompt: str
    instruction_id_list: tuple[str, ...]
    kwargs: tuple[dict[str, Any], ...]


@dataclasses.dataclass(frozen=True)
class IFEvalConfig:
    max_new_tokens: int = 1280  # lm-eval's max_gen_toks for ifeval
    stop: tuple[str, ...] = ()
    without_punkt: bool = False


def load(source: str = DEFAULT_SOURCE, limit: int | None = None) -> tuple[list[Item], DataInfo]:
    """IFEval rows (`key`, `prompt`, `instruction_id_list`, `kwargs`) from the JSONL file or the hub set
    (google/IFEval, split train); the first `limit`."""
    if data.is_local(source):
        rows, sha, where = data.read_jsonl(Path(source)), data.local_sha256([source]), Path(source).name
    else:
        rows = data.load_hub(source, None, "train")
        for row in rows:  # the hub stores every instruction's kwargs with all keys, unused ones null
            row["kwargs"] = [{k: v for k, v in kw.items() if v is not None} for kw in row["kwargs"] or []]
        sha, where = data.rows_sha256(rows), source
    items = []
    for i, row in enumerate(rows):
        at = f"{where}:line {i + 1}"
        data.require(row, ("key", "prompt", "instruction_id_list", "kwargs"), at, text=("prompt",))
        ids, kwargs = row["instruction_id_list"], row["kwargs"]
        if not isinstance(ids, list) or not isinstance(kwargs, list) or len(ids) != len(kwargs):
            raise data.DataError(f"{at}: instruction_id_list and kwargs must be lists of one length")
        items.append(Item(int(row["key"]), row["prompt"], tuple(ids), tuple(dict(k) for k in kwargs)))
    items = data.take(items, limit)
    return items, DataInfo(source, sha, len(items))


def punkt_available() -> bool:
    import nltk

    try:
        nltk.data.find("tokenizers/punkt_tab/english/")
    except LookupError:
        return False
    return True


def scorable(items: Sequence[Item], info: DataInfo, config: IFEvalConfig) -> tuple[list[Item], DataInfo]:
    """`items` and `info`, less the prompts that need Punkt when it is missing and allowed to be."""
    needing = [it for it in items if NEEDS_PUNKT & set(it.instruction_id_list)]
    if not needing or punkt_available():
        return list(items), info
    if not config.without_punkt:
        raise MissingInput(f"ifeval: {len(needing)} prompts need it. {PUNKT_HELP}")
    kept = [it for it in items if not NEEDS_PUNKT & set(it.instruction_id_list)]
    source = f"{info.source} (without the {len(needing)} prompts that need NLTK punkt_tab)"
    return kept, DataInfo(source, info.sha256, len(kept))


def draws_at_random(instruction_id: str, kwargs: Mapping[str, Any]) -> bool:
    """Whether lm-eval's checker for this instruction checks a random parameter: letter_frequency with
    a `letter` that is not one of a-z checks a letter drawn from Python's global `random` instead
    (in IFEval: keys 1122, letter '#', and 1129, letter '!')."""
    letter = kwargs.get("letter")
    plain = isinstance(letter, str) and len(letter) == 1 and "a" <= letter.lower() <= "z"
    return instruction_id == "keywords:letter_frequency" and not plain


def follows(item: Item, response: str) -> tuple[list[bool], list[bool]]:
    """(strict, loose) per instruction of `item`, by lm-eval's checkers.

    Python's `random` is seeded with the prompt's key before each check (and the caller's state put
    back), so a checker that draws (draws_at_random) gives a prompt the same verdict whatever was
    checked before it, and strict and loose check the same letter. lm-eval draws from whatever state
    its run left, so on those instructions its verdict is a draw of its own."""
    from lm_eval.tasks.ifeval import utils  # lazily: importing it makes NLTK try a download

    inp = utils.InputExample(
        key=item.key,
        instruction_id_list=list(item.instruction_id_list),
        prompt=item.prompt,
        kwargs=[dict(k) for k in item.kwargs],
    )
    state = random.getstate()
    try:
        random.seed(item.key)
        strict = utils.test_instruction_following_strict(inp, response).follow_instruction_list
        random.seed(item.key)
        loose = utils.test_instruction_following_loose(inp, response).follow_instruction_list
    finally:
        random.setstate(state)
    return list(strict), list(loose)


def _inst_level(follow: Sequence[Sequence[bool]], description: str) -> Metric:
    """Instruction-level accuracy with a bootstrap over prompts (a prompt's instructions move together)."""
    hits = np.array([sum(f) for f in follow], dtype=np.float64)
    counts = np.array([len(f) for f in follow], dtype=np.float64)
    return statistic_metric(
        len(follow),
        lambda i: instruction_level(hits[i], counts[i]),
        higher_is_better=True,
        description=description,
    )


def metrics(strict: Sequence[Sequence[bool]], loose: Sequence[Sequence[bool]]) -> dict[str, Metric]:
    """IFEval's four accuracies from per-prompt lists of per-instruction results (module doc)."""
    return {
        "prompt_level_strict_acc": mean_metric(
            [all(f) for f in strict],
            higher_is_better=True,
            description="prompts with every instruction followed",
        ),
        "inst_level_strict_acc": _inst_level(strict, "instructions followed, over all instructions"),
        "prompt_level_loose_acc": mean_metric(
            [all(f) for f in loose],
            higher_is_better=True,
            description="as prompt_level_strict_acc, first/last line or '*' removed allowed",
        ),
        "inst_level_loose_acc": _inst_level(loose, "as inst_level_strict_acc, loose"),
    }


def score(
    lm: LanguageModel, items: Sequence[Item], info: DataInfo, *, config: IFEvalConfig = IFEvalConfig()
) -> SuiteResult:
    """Generate a response per prompt and check its instructions; `info` describes `items`."""
    import langdetect

    items, info = scorable(items, info, config)
    outs = lm.generate([it.prompt for it in items], max_new_tokens=config.max_new_tokens, stop=config.stop)
    responses = [o[0] for o in outs]  # not stripped: lm-eval checks the raw generation
    # langdetect draws random numbers; a fixed seed makes the language checks repeatable
    langdetect.DetectorFactory.seed = 0
    results = [follows(it, r) for it, r in zip(items, responses)]
    examples = [
        example(
            it.key,
            prompt=it.prompt,
            output=r,
            score=float(all(s)),  # 1: every instruction followed (strict); higher is better
            label="followed" if all(s) else "not_followed",
            metric="prompt_level_strict_acc",
            instructions=list(it.instruction_id_list),
            strict=s,
            loose=lo,
        )
        for it, r, (s, lo) in zip(items, responses, results)
    ]
    return SuiteResult(info, metrics([s for s, _ in results], [lo for _, lo in results]), examples)


def run(
    lm: LanguageModel,
    *,
    source: str = DEFAULT_SOURCE,
    limit: int | None = None,
    config: IFEvalConfig = IFEvalConfig(),
) -> SuiteResult:
    items, info = load(source, limit)
    return score(lm, items, info, config=config)
