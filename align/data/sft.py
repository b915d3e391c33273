"""SFT examples -> (tokens, loss_mask), with the loss on assistant / completion tokens only.

Per format (TRL's conventions, rendered with Gemma's chat format):
    chat                 loss on every assistant turn: its content, <end_of_turn> and the newline after it
    completion, chat     prompt rendered with the generation prompt; loss on every token after it
    completion, strings  <bos> prompt completion <eos>; loss on completion + <eos>
    text                 <bos> text <eos>; loss on everything after <bos>
The tokens of a chat are exactly those of its rendered string (see align.data.chat), so a chat
given as `messages` and as prompt/completion yields the same tokens and the same mask.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from align.data.errors import DataError
from align.data.formats import ChatExample, CompletionExample, Example, TextExample
from align.data.sequences import Tokenized, TruncationStats, count, truncate
from align.data.tokenizer import Tokenizer


def sft_example(example: Example, tokenizer: Tokenizer) -> Tokenized:
    """Tokens and loss mask of one example, untruncated."""
    if isinstance(example, ChatExample):
        enc = tokenizer.encode_chat(example.messages)
        return Tokenized(enc.tokens, enc.role_mask("assistant"), example.origin)
    if isinstance(example, CompletionExample):
        if isinstance(example.prompt, list):
            enc = tokenizer.encode_chat(example.prompt + example.completion)
            mask = np.arange(len(enc.tokens)) >= enc.message_start(len(example.prompt))
            return Tokenized(enc.tokens, mask, example.origin)
        prompt = tokenizer.encode(example.prompt, add_bos=True)
        completion = with_eos(tokenizer.encode(example.completion), tokenizer.eos_id)
        return _concat(prompt, completion, example.origin)
    if isinstance(example, TextExample):
        return _concat(
            [tokenizer.bos_id], with_eos(tokenizer.encode(example.text), tokenizer.eos_id), example.origin
        )
    raise DataError(
        f"SFT takes chat, completion or text examples, got {type(example).__name__}",
        source=example.origin or None,
    )


def with_eos(ids: list[int], eos_id: int) -> list[int]:
    """Append <eos> unless the text already ended with it (TRL's add_eos)."""
    return ids if ids and ids[-1] == eos_id else [*ids, eos_id]


def _concat(prompt: list[int], response: list[int], origin: str) -> Tokenized:
    tokens = np.asarray(prompt + response, np.int32)
    mask = np.arange(len(tokens)) >= len(prompt)
    return Tokenized(tokens, mask, origin)


def encode_sft(
    examples: Iterable[Example],
    tokenizer: Tokenizer,
    *,
    max_length: int | None = None,
    truncation: str = "keep_start",
) -> tuple[list[Tokenized], TruncationStats]:
    """Tokenize and truncate a dataset; returns the sequences and what truncation did.

    truncation: keep_start | keep_end (keeps <bos>) | drop (counted) | error.
    """
    stats, out = TruncationStats(), []
    for example in examples:
        seq = sft_example(example, tokenizer)
        cut = seq if max_length is None else truncate(seq, max_length, truncation, tokenizer.bos_id)
        count(stats, len(seq), cut)
        if cut is not None:
            out.append(cut)
    return out, stats
