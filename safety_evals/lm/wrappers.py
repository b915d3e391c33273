"""`LanguageModel` decorators used by the CLI: a progress bar, and chat-formatted generation prompts."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from safety_evals.lm.protocol import LanguageModel, TokenScores


class ProgressLM:
    """Forwards to `lm` in chunks and advances a tqdm bar by requests (scoring) or prompts
    (generation). The bar's total grows as calls arrive, so suites need not announce their size."""

    def __init__(self, lm: LanguageModel, bar, chunk: int = 256):
        self.lm, self.bar, self.chunk = lm, bar, chunk
        self.name = lm.name

    def _grow(self, n: int) -> None:
        self.bar.total = (self.bar.total or 0) + n
        self.bar.refresh()

    def loglikelihood(self, requests: Sequence[tuple[str, str]]) -> list[TokenScores]:
        self._grow(len(requests))
        out: list[TokenScores] = []
        for start in range(0, len(requests), self.chunk):
            part = requests[start : start + self.chunk]
            out += self.lm.loglikelihood(part)
            self.bar.update(len(part))
        return out

    def generate(self, prompts: Sequence[str], **kwargs) -> list[list[str]]:
        self._grow(len(prompts))
        out: list[list[str]] = []
        step = max(1, self.chunk // max(1, kwargs.get("num_samples", 1)))
        for start in range(0, len(prompts), step):
            part = prompts[start : start + step]
            out += self.lm.generate(part, **kwargs)
            self.bar.update(len(part))
        return out


class ChatPromptLM:
    """Generation prompts go through `format_prompt` (e.g. a single user turn in the chat template
    plus the model-turn header); scoring is untouched, since likelihood suites compare raw text."""

    def __init__(self, lm: LanguageModel, format_prompt: Callable[[str], str]):
        self.lm, self.format_prompt = lm, format_prompt
        self.name = lm.name

    def loglikelihood(self, requests: Sequence[tuple[str, str]]) -> list[TokenScores]:
        return self.lm.loglikelihood(requests)

    def generate(self, prompts: Sequence[str], **kwargs) -> list[list[str]]:
        return self.lm.generate([self.format_prompt(p) for p in prompts], **kwargs)


def chat_user_turn(text: str, system: str | None = None) -> str:
    """`text` as one user turn of the Gemma chat template plus the model-turn header, without the
    leading <bos> (the LM adds BOS when it encodes the prompt); a `system` prompt is folded into the
    turn, as Gemma's template does."""
    from align.data.chat import chat_segments

    messages = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": text})
    return "".join(seg.text for seg in chat_segments(messages, add_generation_prompt=True, add_bos=False))
