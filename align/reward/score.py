"""Batched reward scoring: `score(prompts, responses) -> rewards`, the API RLHF and evals call.

    scorer = RewardScorer(model, tokenizer, batch_size=8, max_length=512)
    rewards = scorer.score(prompts, responses)            # float32 [n]

A prompt is a string or a list of chat messages; a response is a string (an assistant turn when the
prompt is a chat). The tokens are exactly those the reward model was trained on (align.data's
preference encoding: the chat rendered with the response as the assistant turn, or
<bos> prompt response <eos>), and the reward is pooled as the model's `pool` says (at the last token,
or over the response tokens, the sequence's loss mask). Too-long sequences keep their end (<bos>
kept): the last token and the response's end survive. Rows are padded to a length bucket, so jit
compiles once per bucket.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import numpy as np
from flax import nnx

from align.data import DEFAULT_BUCKETS, CompletionExample, Tokenizer, bucket_length, pad_batch, sft_example
from align.data.sequences import truncate
from align.model.heads import ScoreModel
from align.reward.model import response_of


@functools.lru_cache(maxsize=8)
def _forward(graphdef):
    return jax.jit(
        lambda state, tokens, positions, segment_ids, response: nnx.merge(graphdef, state)(
            tokens, positions, segment_ids, response
        )
    )


class RewardScorer:
    """Scores (prompt, response) pairs with a reward model in fixed-shape batches."""

    def __init__(
        self,
        model: ScoreModel,
        tokenizer: Tokenizer,
        *,
        batch_size: int = 8,
        max_length: int = 512,
        buckets: Sequence[int] = DEFAULT_BUCKETS,
    ):
        self.tokenizer, self.batch_size, self.max_length = tokenizer, batch_size, max_length
        self.buckets = tuple(sorted({min(b, max_length) for b in buckets} | {max_length}))
        self.graphdef, self.state = nnx.split(model)

    def encode(self, prompt, response: str):
        """Tokenized (prompt, response), truncated to max_length from the left."""
        completion = [{"role": "assistant", "content": response}] if isinstance(prompt, list) else response
        seq = sft_example(CompletionExample(prompt, completion), self.tokenizer)
        return truncate(seq, self.max_length, "keep_end", self.tokenizer.bos_id)

    def score(self, prompts: Sequence, responses: Sequence[str]) -> np.ndarray:
        """float32 [n] rewards."""
        if len(prompts) != len(responses):
            raise ValueError(f"score: {len(prompts)} prompts but {len(responses)} responses")
        seqs = [self.encode(p, r) for p, r in zip(prompts, responses)]
        forward = _forward(self.graphdef)
        out = np.zeros(len(seqs), np.float32)
        for i in range(0, len(seqs), self.batch_size):
            chunk = seqs[i : i + self.batch_size]
            length = bucket_length(max(len(s) for s in chunk), self.buckets)
            b = pad_batch(chunk, length, rows=self.batch_size, pad_id=self.tokenizer.pad_id)
            response = response_of(b["loss_mask"])  # [rows, T]: the sequences' own response masks
            rewards = forward(self.state, b["tokens"], b["positions"], b["segment_ids"], response)
            out[i : i + len(chunk)] = np.asarray(rewards)[: len(chunk)]
        return out


def score(
    model: ScoreModel,
    tokenizer: Tokenizer,
    prompts: Sequence,
    responses: Sequence[str],
    *,
    batch_size: int = 8,
    max_length: int = 512,
) -> np.ndarray:
    """One-shot form of RewardScorer(...).score(prompts, responses)."""
    return RewardScorer(model, tokenizer, batch_size=batch_size, max_length=max_length).score(
        prompts, responses
    )
