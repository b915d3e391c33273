"""Text in, text out: tokenize prompts, pad them to a length bucket, generate, decode."""

from __future__ import annotations

from typing import Sequence

import jax
import numpy as np

from align.data.prompts import encode_prompt
from align.data.tokenizer import Tokenizer
from align.model import Decoder
from align.sampling.json_mode import json_tables
from align.sampling.methods import SamplingConfig
from align.sampling.sampler import SampleResult, generate


def bucket(n: int, minimum: int = 16) -> int:
    """Next power of two >= n (>= minimum): prompts of similar length share one compiled program."""
    size = minimum
    while size < n:
        size *= 2
    return size


def pad_prompts(
    ids: Sequence[Sequence[int]], pad_id: int, rows: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Token lists -> right-padded int32 tokens [rows, bucket(longest)] and lengths [rows].

    rows (default len(ids)) may exceed len(ids) to keep one compiled batch shape; the filler rows are a
    single pad token of length 1 (generate reads each row's last prompt token, so a length must be >= 1).
    """
    rows = len(ids) if rows is None else rows
    if rows < len(ids):
        raise ValueError(f"pad_prompts: {len(ids)} prompts do not fit in {rows} rows")
    tokens = np.full((rows, bucket(max(map(len, ids)))), pad_id, np.int32)
    lengths = np.ones((rows,), np.int32)
    for i, row in enumerate(ids):
        tokens[i, : len(row)] = row
        lengths[i] = len(row)
    return tokens, lengths


def encode_texts(tokenizer: Tokenizer, texts: Sequence[str], *, chat: bool) -> list[np.ndarray]:
    """int32 [T] prompt tokens of each text: a user turn with the generation header when `chat`, else
    `<bos>` + the text (align.data.prompts.encode_prompt, as rollouts and evaluations encode)."""
    return [encode_prompt([{"role": "user", "content": t}] if chat else t, tokenizer) for t in texts]


def generate_text(
    model: Decoder,
    tokenizer: Tokenizer,
    prompts: Sequence[str],
    config: SamplingConfig,
    *,
    seed: int = 0,
    chat: bool = False,
    response_format: str | None = None,
) -> tuple[list[str], SampleResult]:
    """Generate one completion per prompt; stop tokens default to the tokenizer's (eos, end_of_turn).

    response_format="json": JSON mode (align.sampling.json_mode), every completion is one JSON value.
    """
    if response_format not in (None, "json"):
        raise ValueError(f"response_format={response_format!r}: expected None or 'json'")
    if not config.stop_ids:
        config = SamplingConfig(
            **{**config.__dict__, "stop_ids": tokenizer.stop_ids, "pad_id": tokenizer.pad_id}
        )
    ids = encode_texts(tokenizer, prompts, chat=chat)
    tokens, lengths = pad_prompts(ids, tokenizer.pad_id)
    tables = json_tables(tokenizer, model.config.vocab_size) if response_format == "json" else None
    res = generate(model, tokens, lengths, config, jax.random.PRNGKey(seed), json_tables=tables)
    out_tokens, out_lengths = np.asarray(res.tokens), np.asarray(res.lengths)
    texts = [tokenizer.decode(out_tokens[i, : out_lengths[i]]) for i in range(len(ids))]
    return texts, res
