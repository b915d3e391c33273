"""Prompt data for RL: weighted mixtures of prompt sources, system prompts, held-out split, encoding."""

from __future__ import annotations

import dataclasses

from align.data import PromptExample, Tokenizer, encode_prompts
from align import checks
from align.data_dir import portable_path
from align.distributed import process_count
from align.training.feed import encode_by_process
from align.errors import InvalidInput
from align.data.splits import SplitOptions, heldout_split
from pipelines.stages.training_data import DataSource, read


@dataclasses.dataclass(frozen=True)
class PromptSource:
    """One dataset of a prompt mixture; `weight` is its share of the mixture; `format` and `seed` as a
    training source's (pipelines.stages.training_data.DataSource: e.g. SelfAware's train questions)."""

    path: str
    weight: float = 1.0
    split: str = "train"
    limit: int | None = None
    format: str = "records"
    seed: int = 0

    def __post_init__(self):
        self.source()  # checks every field

    def source(self) -> DataSource:
        return DataSource(self.path, self.format, self.split, self.limit, self.seed, self.weight)


@dataclasses.dataclass(frozen=True)
class PromptDataOptions:
    path: str = ""  # file or directory (align.data.load_records): any format with a prompt
    split: str = "train"
    limit: int | None = None
    mixture: tuple[PromptSource, ...] = ()  # several weighted sources instead of `path`
    system_prompt: str | None = None  # prepended as a system message to chat prompts that have none
    system_handling: str = "fold"  # fold: system messages go into the first user turn; drop: removed
    max_prompt_length: int = 128  # P: prompts are cut from the left (keeping <bos>) to this many tokens
    skip_invalid: bool = True
    heldout: SplitOptions = SplitOptions(heldout_fraction=0.1, heldout_max=32)

    def __post_init__(self):
        checks.at_least(self, 1, "max_prompt_length")
        checks.at_least(self, 1, "limit", optional=True)
        if self.system_handling not in ("fold", "drop"):
            raise ValueError(f"data.system_handling={self.system_handling!r}, expected 'fold' or 'drop'")
        if self.system_handling == "drop" and self.system_prompt:
            raise ValueError("data.system_prompt with data.system_handling='drop' is never used")


def load_prompts(options: PromptDataOptions, tokenizer: Tokenizer) -> tuple[list, list, dict]:
    """(train prompts, held-out prompts, report): int32 token arrays, cut from the left to
    max_prompt_length."""
    sources = options.mixture or (
        (PromptSource(options.path, 1.0, options.split, options.limit),) if options.path else ()
    )
    if not sources:
        raise InvalidInput("data.path is empty and data.mixture has no source: set one of them")
    examples, report = mix_sources(sources, options.skip_invalid)
    examples = [with_system_prompt(e, options.system_prompt, options.system_handling) for e in examples]
    train_ex, held_ex = heldout_split(examples, options.heldout)
    train, train_stats = _encode_train(train_ex, tokenizer, options.max_prompt_length)
    held, _ = encode_prompts(held_ex, tokenizer, max_length=options.max_prompt_length)
    if not train:
        raise InvalidInput(f"{[s.path for s in sources]}: no prompts to train on")
    report.update(train=len(train), heldout=len(held), truncation=dataclasses.asdict(train_stats))
    return train, held, report


def _encode_train(examples: list, tokenizer: Tokenizer, max_length: int):
    """encode_prompts of the training prompts; several processes share the tokenizing and then each
    tokenizes only the prompts it feeds (align.training.feed.encode_by_process): same prompts."""
    if process_count() == 1:
        return encode_prompts(examples, tokenizer, max_length=max_length)

    def one(i):
        ids, stats = encode_prompts(examples[i : i + 1], tokenizer, max_length=max_length)
        return ids[0], stats

    return encode_by_process(len(examples), one, keep=lambda ids: True)


def mix_sources(sources, skip_invalid: bool) -> tuple[list, dict]:
    """The largest mixture with the exact shares w_i / sum(w) that the sources can fill:
    N = min_i n_i / share_i, source i gives its first round(share_i * N) examples (so the mixture is
    deterministic)."""
    if any(s.weight < 0 for s in sources) or sum(s.weight for s in sources) <= 0:
        raise InvalidInput(f"data.mixture weights {[s.weight for s in sources]} must be >= 0 and not all 0")
    # kind="prompt": any row with a prompt counts, also a preference pair without a preference
    loaded = [read(s.source(), prompts_only=True, skip_invalid=skip_invalid) for s in sources]
    weight = sum(s.weight for s in sources)
    total = min(
        len(d.examples) * weight / s.weight for s, d in zip(sources, loaded, strict=True) if s.weight > 0
    )
    out, report = [], {"sources": []}
    for s, data in zip(sources, loaded, strict=True):
        take = min(len(data.examples), round(s.weight / weight * total))
        out += data.examples[:take]
        report["sources"].append({**data.report, "path": portable_path(s.path), "used": take})
    return out, report


def with_system_prompt(
    example: PromptExample, system_prompt: str | None, handling: str = "fold"
) -> PromptExample:
    """A chat prompt with `system_prompt` as its first message unless it has a system message already;
    handling="drop" instead removes the prompt's system message, as a variant's exported template does."""
    prompt = example.prompt
    if handling == "drop" and isinstance(prompt, list) and prompt and prompt[0]["role"] == "system":
        return dataclasses.replace(example, prompt=prompt[1:])
    if system_prompt is None or not isinstance(prompt, list) or (prompt and prompt[0]["role"] == "system"):
        return example
    return dataclasses.replace(example, prompt=[{"role": "system", "content": system_prompt}, *prompt])
