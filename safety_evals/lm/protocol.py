"""The language-model interface every suite is written against, and the encoding rules it shares.

Suites never touch a model directly: they call `LanguageModel.loglikelihood` and
`LanguageModel.generate`. Three implementations exist: the JAX policy (`jax_lm.JaxLM`), the
transformers reference (`hf_lm.HFTorchLM`) and a deterministic fake in the tests.

`loglikelihood` follows lm-evaluation-harness (`TemplateLM.loglikelihood` + `HFLM`, v0.4.x):

* empty context: the continuation is encoded without special tokens and conditioned on the
  prefix token (BOS when the tokenizer has one, else EOS); a continuation that already starts with
  that token gives it up as context instead of scoring it.
* non-empty context: trailing spaces of the context move to the continuation, then
  `cont = encode(context + continuation)[len(encode(context)):]`, where `encode` adds BOS when the
  model wants one (lm-eval forces this for every Gemma model).
* the model sees `(ctx + cont)[-(max_length + 1):][:-1]`; the last `len(cont)` positions score the
  continuation tokens. A continuation longer than `max_length` cannot be scored whole and raises
  (lm-eval asserts the same) rather than silently scoring only its tail.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from typing import Protocol, TypeVar, runtime_checkable

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class TokenScores:
    """Log-probabilities of the continuation tokens of one (context, continuation) request."""

    logprobs: tuple[float, ...]
    is_greedy: bool = False  # every continuation token is the argmax of its distribution

    @property
    def n_tokens(self) -> int:
        return len(self.logprobs)

    @property
    def total(self) -> float:
        """sum_t log p(c_t | ctx, c_<t): lm-eval's `loglikelihood` value."""
        return float(sum(self.logprobs))

    @property
    def mean(self) -> float:
        """Per-token mean log-prob (StereoSet's sentence score for causal LMs); 0 for no tokens."""
        return self.total / self.n_tokens if self.logprobs else 0.0


@runtime_checkable
class LanguageModel(Protocol):
    """What a suite needs from a model."""

    name: str

    def loglikelihood(self, requests: Sequence[tuple[str, str]]) -> list[TokenScores]:
        """Per (context, continuation): log-prob of each continuation token (lm-eval semantics)."""
        ...

    def generate(
        self,
        prompts: Sequence[str],
        *,
        max_new_tokens: int,
        temperature: float = 0.0,
        top_p: float = 1.0,
        num_samples: int = 1,
        seed: int = 0,
        stop: Sequence[str] = (),
    ) -> list[list[str]]:
        """Per prompt, `num_samples` continuations (prompt excluded), each cut by `truncate_at_stop`:
        before the first `stop` string found past the leading whitespace."""
        ...


Encode = Callable[[str, bool], list[int]]  # (text, add_special_tokens) -> token ids


def encode_request(
    context: str, continuation: str, *, encode: Encode, prefix_id: int, add_bos: bool
) -> tuple[list[int], list[int]]:
    """(context ids, continuation ids) exactly as lm-evaluation-harness builds them (module doc)."""
    if context == "":
        cont = encode(continuation, False)
        if not cont:
            return [prefix_id], []
        if cont[0] == prefix_id:
            return cont[:1], cont[1:]
        return [prefix_id], cont
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:
        continuation = context[-n_spaces:] + continuation
        context = context[:-n_spaces]
    whole = encode(context + continuation, add_bos)
    ctx = encode(context, add_bos)
    return ctx, whole[len(ctx) :]


def scoring_window(ctx: Sequence[int], cont: Sequence[int], max_length: int) -> tuple[list[int], int]:
    """Tokens the model reads (`(ctx+cont)[-(max_length+1):][:-1]`) and how many trailing
    positions score the continuation. Position t of the window predicts window token t+1, and the
    last scored target is the final continuation token.

    Raises ValueError when the continuation alone is longer than `max_length`: only its tail would
    fit, and a total over fewer tokens than asked for is a silently wrong number."""
    if len(cont) > max_length:
        raise ValueError(
            f"continuation of {len(cont)} tokens does not fit the scoring window of max_length={max_length}"
        )
    full = list(ctx) + list(cont)
    full = full[-(max_length + 1) :]
    return full[:-1], min(len(cont), len(full) - 1)


def truncate_at_stop(text: str, stop: Sequence[str]) -> str:
    """Cut `text` before the earliest stop string that reaches past its leading whitespace.

    An occurrence made only of the blank lines and spaces before the first non-blank character
    does not end the answer: a base model that opens with "\n\n" would otherwise give "" under a
    "\n\n" stop (36 of 48 BEGIN answers of gemma-3-270m did). One that covers that character
    does ("\nQ: ..." under "\nQ:": the model went on to the next question). The leading whitespace
    is kept, as the raw continuation begins (IFEval checks raw text): suites strip their answers.
    A text with no non-blank character is never cut. lm-eval's `until` is a plain cut instead
    (`cut_at_stop`, what `lm_eval_model.AlignLM` applies)."""
    start = len(text) - len(text.lstrip())  # index of the first non-blank character
    if start == len(text):
        return text
    cut = len(text)
    for s in stop:
        if s:
            # the earliest occurrence that ends past `start`, so it covers a non-blank character
            i = text.find(s, max(0, start - len(s) + 1))
            if 0 <= i < cut:
                cut = i
    return text[:cut]


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """Cut `text` before the earliest occurrence of any stop string, wherever it is: lm-eval's
    `generate_until` (`s.split(term)[0]` per term), which may leave "" for a text opening with one."""
    cut = len(text)
    for s in stop:
        if s:
            i = text.find(s)
            if 0 <= i < cut:
                cut = i
    return text[:cut]


def batched(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """Consecutive slices of at most `size` items."""
    if size < 1:
        raise ValueError(f"batch size must be >= 1, got {size}")
    for start in range(0, len(items), size):
        yield items[start : start + size]
