"""A verifiable reward for closed-book questions (SelfAware): right answers first, hedges second.

    r = correct             the answer names a gold alias and does not hedge      ( 1.0)
        hedge_unanswerable  it hedges and the question has no answer              ( 0.8)
        hedge_answerable    it hedges although the question has an answer         (-0.1)
        wrong               anything else: a wrong answer, or an answer where     (-1.0)
                            none exists (a hallucination), or nothing
        0                   the prompt is not a known question (e.g. a helpfulness prompt of the
                            same mixture): this reward has nothing to say about it

Hedging beats hallucinating everywhere (hedge_answerable > wrong), as the Gemini report intends, yet
a known answer beats a hedge (correct > hedge_answerable), so the policy cannot hedge its way to
the top. Gold matching is align.data.answers.matches_alias (SQuAD-normalised whole-word match in
the answer's first words) and hedge detection its lexical `is_hedge`: the trained hedge judge
would add a 270M backbone pass per rollout (its agreement with the rule is in the tests).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable

import numpy as np

from align import distributed
from align.data.answers import is_hedge, matches_alias
from align.data.selfaware import QAItem, question_key
from align.data.tokenizer import Tokenizer

# The question inside a rendered prompt: QA_PROMPT ("Q: {question}\nA:") in a chat turn or bare.
_QUESTION = re.compile(r"Q: (.+?)\nA:")


@dataclasses.dataclass(frozen=True)
class QAScores:
    correct: float = 1.0
    hedge_unanswerable: float = 0.8
    hedge_answerable: float = -0.1
    wrong: float = -1.0

    def __post_init__(self):
        order = (self.correct, self.hedge_unanswerable, self.hedge_answerable, self.wrong)
        if not all(a > b for a, b in zip(order, order[1:])):
            raise ValueError(
                f"QAScores {order}: need correct > hedge_unanswerable > hedge_answerable > wrong, "
                "so that hedging beats hallucinating and a known answer beats a hedge"
            )


def score_answer(answer: str, item: QAItem, scores: QAScores = QAScores()) -> float:
    """The reward of `answer` to `item` (module doc)."""
    hedged = is_hedge(answer)
    if item.answerable and not hedged and matches_alias(answer, item.answers):
        return scores.correct
    if hedged:
        return scores.hedge_answerable if item.answerable else scores.hedge_unanswerable
    return scores.wrong


class VerifiableQAReward:
    """RewardFn: decode prompt and response, find the question in the prompt, score the answer.

    Runs on the host (decoding is string work); [B] float32 out. Prompts whose question is not in
    `items` score 0, so a mixture with other prompts leaves them to the other rewards."""

    def __init__(self, items: Iterable[QAItem], tokenizer: Tokenizer, scores: QAScores = QAScores()):
        self.items = {question_key(q.question): q for q in items}
        self.tokenizer, self.scores = tokenizer, scores
        self.stop_ids = set(tokenizer.stop_ids)

    def item_of(self, prompt_text: str) -> QAItem | None:
        found = _QUESTION.findall(prompt_text)
        return self.items.get(question_key(found[-1])) if found else None

    def __call__(self, prompt, prompt_mask, response, response_mask) -> np.ndarray:
        # every process decodes every row (its score is a host value placed on the mesh like the others')
        prompt, prompt_mask = distributed.host_array(prompt), distributed.host_array(prompt_mask) > 0
        response, response_mask = distributed.host_array(response), distributed.host_array(response_mask) > 0
        out = np.zeros(prompt.shape[0], np.float32)
        for b in range(prompt.shape[0]):
            item = self.item_of(self.tokenizer.decode(prompt[b][prompt_mask[b]]))
            if item is None:
                continue
            ids = [int(t) for t in response[b][response_mask[b]] if int(t) not in self.stop_ids]
            out[b] = score_answer(self.tokenizer.decode(ids).strip(), item, self.scores)
        return out
