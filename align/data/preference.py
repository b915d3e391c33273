"""Preference examples -> TokenizedPair: tokens [P, T] (0 = chosen, 1 = rejected), loss on the responses.

Conversational pairs render prompt + response with Gemma's chat format; the response is every
token after the prompt's generation header (TRL's DPO convention). String pairs are
<bos> prompt | response <eos>. Both rows share the same prompt tokens.

Truncation, as TRL's DPO did (explicit and counted in TruncationStats):
  1. if prompt + longer response > max_length, the prompt is cut from the left to
     max_prompt_length tokens (its <bos> kept);
  2. if still too long, both responses are cut from the right to max_length - prompt length.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from collections.abc import Callable, Iterable

import numpy as np

from align import checks
from align.data.errors import DataError
from align.data.formats import Example, PreferenceExample
from align.data.sequences import TokenizedPair, TruncationStats, left_truncate
from align.data.sft import with_eos
from align.data.splits import SplitOptions
from align.data.tokenizer import Tokenizer
from align.errors import InvalidInput


@dataclasses.dataclass(frozen=True)
class PreferenceDataOptions:
    """A config's `data` section for preference pairs (DPO, reward models)."""

    path: str = ""  # file or directory of preference rows (HH chosen/rejected, TRL formats)
    split: str = "train"  # file split inside a directory
    limit: int | None = None  # first N valid rows only
    max_length: int = 256  # T of every [B, P, T] batch
    max_prompt_length: int | None = None  # prompt cut from the left when a pair is too long (default T // 2)
    skip_invalid: bool = True
    heldout: SplitOptions = SplitOptions()

    def __post_init__(self):
        checks.at_least(self, 1, "max_length")
        checks.at_least(self, 1, "limit", "max_prompt_length", optional=True)


P = 2  # the pair axis: chosen, rejected


def split_pair(example: PreferenceExample, tokenizer: Tokenizer) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(prompt ids, chosen ids, rejected ids), int32, untruncated."""
    if isinstance(example.prompt, list):
        chosen = tokenizer.encode_chat(example.prompt + example.chosen)
        rejected = tokenizer.encode_chat(example.prompt + example.rejected)
        n = chosen.message_start(len(example.prompt))
        # The prompt ends with the generation header's newline and responses are stripped, so no token
        # spans the cut and the prompt tokens do not depend on the response; check it all the same.
        if not np.array_equal(chosen.tokens[:n], rejected.tokens[:n]):
            raise RuntimeError(f"{example.origin}: prompt tokens differ between chosen and rejected")
        return chosen.tokens[:n], chosen.tokens[n:], rejected.tokens[n:]
    prompt = np.asarray(tokenizer.encode(example.prompt, add_bos=True), np.int32)
    chosen = np.asarray(with_eos(tokenizer.encode(example.chosen), tokenizer.eos_id), np.int32)
    rejected = np.asarray(with_eos(tokenizer.encode(example.rejected), tokenizer.eos_id), np.int32)
    return prompt, chosen, rejected


def preference_pair(
    example: Example,
    tokenizer: Tokenizer,
    *,
    max_length: int | None = None,
    max_prompt_length: int | None = None,
    stats: TruncationStats | None = None,
) -> TokenizedPair:
    """Tokenize and truncate one preference example into a TokenizedPair (see the module docstring)."""
    if not isinstance(example, PreferenceExample):
        raise DataError(
            f"expected a preference example, got {type(example).__name__}", source=example.origin or None
        )
    _check_lengths(max_length, max_prompt_length)
    stats = stats if stats is not None else TruncationStats()
    prompt, chosen, rejected = split_pair(example, tokenizer)
    before = len(prompt) * 2 + len(chosen) + len(rejected)
    stats.examples += 1
    if max_length is not None and len(prompt) + max(len(chosen), len(rejected)) > max_length:
        limit = max_prompt_length if max_prompt_length is not None else max_length // 2
        if len(prompt) > limit:
            prompt = prompt[left_truncate(np.arange(len(prompt)), limit, prompt[0] == tokenizer.bos_id)]
            stats.prompt_truncated += 1
        budget = max_length - len(prompt)
        if max(len(chosen), len(rejected)) > budget:
            chosen, rejected = chosen[:budget], rejected[:budget]
            stats.response_truncated += 1
    removed = before - (len(prompt) * 2 + len(chosen) + len(rejected))
    if removed:
        stats.truncated += 1
        stats.tokens_removed += removed
    if len(chosen) == 0 or len(rejected) == 0:
        stats.no_loss += 1
    return _stack(prompt, chosen, rejected, tokenizer.pad_id, example.origin)


def _stack(
    prompt: np.ndarray, chosen: np.ndarray, rejected: np.ndarray, pad_id: int, origin: str
) -> TokenizedPair:
    lengths = np.array([len(prompt) + len(chosen), len(prompt) + len(rejected)], np.int32)
    tokens = np.full((P, lengths.max()), pad_id, np.int32)  # [P, T]
    mask = np.zeros((P, lengths.max()), bool)
    for p, response in enumerate((chosen, rejected)):
        tokens[p, : lengths[p]] = np.concatenate([prompt, response])
        mask[p, len(prompt) : lengths[p]] = True
    return TokenizedPair(tokens, mask, lengths, len(prompt), origin)


def encode_preferences(
    examples: Iterable[Example],
    tokenizer: Tokenizer,
    *,
    max_length: int | None = None,
    max_prompt_length: int | None = None,
) -> tuple[list[TokenizedPair], TruncationStats]:
    """Tokenize a preference dataset; max_prompt_length defaults to max_length // 2."""
    _check_lengths(max_length, max_prompt_length)
    stats = TruncationStats()
    pairs = [
        preference_pair(e, tokenizer, max_length=max_length, max_prompt_length=max_prompt_length, stats=stats)
        for e in examples
    ]
    return pairs, stats


def _check_lengths(max_length: int | None, max_prompt_length: int | None) -> None:
    # A prompt allowed max_length tokens or more leaves the responses a budget <= 0: the pair would be
    # silently over-long (a negative slice keeps almost all of a response) or carry no loss at all.
    if max_length is not None and max_prompt_length is not None and max_prompt_length >= max_length:
        raise InvalidInput(f"max_prompt_length={max_prompt_length} must be below max_length={max_length}")


def pair_columns(pair: TokenizedPair) -> int:
    """T of a pair's [P, T] tokens (what a lazily tokenized dataset records of each pair)."""
    return pair.tokens.shape[1]


def prompt_key(pair: TokenizedPair) -> int:
    """A 64-bit hash of a pair's prompt tokens: equal prompts, equal keys (a reward model's training
    pairs whose prompt is held out are left out by it where they are not tokenized)."""
    digest = hashlib.blake2b(pair.tokens[0, : pair.prompt_length].tobytes(), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


def _has_responses(pair: TokenizedPair) -> bool:
    return bool(pair.loss_mask.any(axis=1).all())


def _encode_part(part: list, encode: Callable, share: Callable | None):
    """(the pairs of `part` with both responses, truncation counts), shared by processes when `share`."""
    if share is None:
        pairs, stats = encode(part)
        return [p for p in pairs if _has_responses(p)], stats

    def one(i):
        pairs, stats = encode(part[i : i + 1])
        return pairs[0], stats

    return share(len(part), one, _has_responses, size=pair_columns, key=prompt_key)


def load_preference_pairs(
    options: PreferenceDataOptions, tokenizer: Tokenizer, share: Callable | None = None
) -> tuple[list[TokenizedPair], list[TokenizedPair], dict]:
    """(train pairs, held-out pairs, report) for DPO and reward-model training alike.

    share: align.training.feed.encode_by_process on several processes: each tokenizes a share of the
    training pairs and later only those it feeds (a LazySequences with prompt_key keys); the same
    pairs and report as without (the small held-out set is tokenized whole on each).

    Rows that are not preference rows are counted and left out; a pair whose chosen or rejected
    response was cut away entirely by truncation is dropped (it has no token to score), and counted.
    The held-out cut is align.data.splits.heldout_split, so DPO, RM and SFT configs that share a file
    and a cut hold out the same rows.
    """
    from align.data.loading import load_records
    from align.data.splits import heldout_split

    if not options.path:
        raise InvalidInput("data.path is empty: set it in the config or with data.path=FILE")
    records = load_records(
        options.path, options.split, limit=options.limit, skip_invalid=options.skip_invalid
    )
    examples = [e for e in records if isinstance(e, PreferenceExample)]
    if not examples:
        raise InvalidInput(
            f"{options.path}: no preference rows (prompt/chosen/rejected) among {len(records)} rows "
            f"({records.report.skipped} skipped, logged with their reasons)"
        )
    train_ex, held_ex = heldout_split(examples, options.heldout)
    report = {
        "rows_loaded": len(records),
        "rows_skipped": records.report.skipped,
        "not_preference": len(records) - len(examples),
    }
    encode = functools.partial(
        encode_preferences,
        tokenizer=tokenizer,
        max_length=options.max_length,
        max_prompt_length=options.max_prompt_length,
    )
    out = []
    for name, part in (("train", train_ex), ("heldout", held_ex)):
        kept, stats = _encode_part(part, encode, share if name == "train" else None)
        report[name] = {
            "pairs": len(kept),
            "dropped_no_loss": stats.examples - len(kept),
            "truncation": dataclasses.asdict(stats),
        }
        out.append(kept)
    if not out[0]:
        raise InvalidInput(
            f"{options.path}: no training pair with response tokens on both sides (preference rows: "
            f"{len(examples)}, held out: {len(held_ex)})"
        )
    return out[0], out[1], report
