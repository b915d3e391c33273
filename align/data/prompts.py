"""Prompt-only batches for rollouts and evaluations: padded [B, T] tokens plus lengths [B].

Left padding puts every prompt's last token in column T-1 (decoders that append at one column);
right padding starts every prompt at column 0 (align.sampling.generate, which tracks lengths).
A conversational prompt ends with Gemma's generation header (`<start_of_turn>model\\n`); a string
prompt is `<bos>` + its tokens.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from align.data.formats import Example, PromptLike, as_prompt
from align.data.sequences import TruncationStats, left_truncate
from align.data.tokenizer import Tokenizer


def encode_prompt(prompt: PromptLike, tokenizer: Tokenizer) -> np.ndarray:
    """int32 [T]: the tokens a model continues from."""
    if isinstance(prompt, list):
        return tokenizer.encode_chat(prompt, add_generation_prompt=True).tokens
    return np.asarray(tokenizer.encode(prompt, add_bos=True), np.int32)


def encode_prompts(
    examples: Iterable[Example], tokenizer: Tokenizer, *, max_length: int | None = None
) -> tuple[list[np.ndarray], TruncationStats]:
    """Prompts of any examples that have one, cut from the left (keeping <bos>) to max_length, counted."""
    stats, out = TruncationStats(), []
    for example in examples:
        ids = encode_prompt(as_prompt(example).prompt, tokenizer)
        stats.examples += 1
        if max_length is not None and len(ids) > max_length:
            stats.truncated += 1
            stats.prompt_truncated += 1
            stats.tokens_removed += len(ids) - max_length
            ids = ids[left_truncate(np.arange(len(ids)), max_length, bool(ids[0] == tokenizer.bos_id))]
        out.append(ids)
    return out, stats


def prompt_batch(
    prompts: Sequence[np.ndarray], length: int, *, padding: str, rows: int | None = None, pad_id: int = 0
) -> dict[str, np.ndarray]:
    """Pad prompts into a fixed [rows, length] batch, on the side the consumer expects.

    padding: "left" (every prompt ends in column T-1) or "right" (every prompt starts in column 0,
        as align.sampling.generate takes them). Required: the wrong side silently feeds padding
        to a model as if it were prompt text.
    Returns tokens int32 [B, T], lengths int32 [B], positions int32 [B, T] (0 at each prompt's first
    token, 0 on padding) and segment_ids int32 [B, T] (1 on prompt tokens, 0 on padding). Rows past
    len(prompts) are empty (length 0) so the batch shape stays fixed.
    """
    if padding not in ("left", "right"):
        raise ValueError(f"padding={padding!r}: expected 'left' or 'right'")
    rows = len(prompts) if rows is None else rows
    if len(prompts) > rows:
        raise ValueError(f"{len(prompts)} prompts do not fit in {rows} rows")
    lengths = np.zeros(rows, np.int32)
    for b, ids in enumerate(prompts):
        if len(ids) > length:
            raise ValueError(
                f"prompt {b} has {len(ids)} tokens, more than length={length}: truncate it first"
            )
        lengths[b] = len(ids)
    columns = np.arange(length)[None, :]  # [1, T]
    start = (length - lengths)[:, None] if padding == "left" else np.zeros((rows, 1), np.int32)  # [B, 1]
    real = (columns >= start) & (columns < start + lengths[:, None])  # [B, T]
    tokens = np.full((rows, length), pad_id, np.int32)
    for b, ids in enumerate(prompts):
        tokens[b, real[b]] = ids
    positions = np.where(real, columns - start, 0).astype(np.int32)
    return {
        "tokens": tokens,
        "lengths": lengths,
        "positions": positions,
        "segment_ids": real.astype(np.int32),
    }
