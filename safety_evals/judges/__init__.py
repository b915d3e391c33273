"""Judges trained and validated on human labels, shipped offline (artifacts/), plus the named
external attribution judges (an NLI checkpoint, or the model under evaluation: "self").

    judge = load_judge("refusal")          # truth | info | refusal | attribution | hedge
    judge.classify([{"prompt": ..., "completion": ...}])
    judge.identity()                       # {"name", "sha256"}: record it beside every judged metric

Each shipped judge is a frozen backbone (default gemma3-270m) + a fitted head, built by
`align judges build ROLE`; its card (artifacts/ROLE.json) holds the held-out figures.
"""

from safety_evals.judges.external import LLMJudge, NLIJudge, Seq2SeqNLIJudge
from safety_evals.judges.judge import SHIPPED, Judge, ProbeJudge, load_judge, read_card

__all__ = [
    "SHIPPED",
    "Judge",
    "LLMJudge",
    "NLIJudge",
    "ProbeJudge",
    "Seq2SeqNLIJudge",
    "load_judge",
    "read_card",
]
