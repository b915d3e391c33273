"""Every generation suite, on a fixed sample of its real data, with each degenerate policy as the
model: the gated metric of every degenerate policy must be worse than the reference policy's (the
data's own reference answers). With the word-rule judges (tests/safety_evals/rule_judges.py) this is
a unit test; with the trained judges (`safety_evals.judges`, when present) it is an integration test.
Run with -s to see the policy x metric table."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import pytest

from safety_evals.results import DataInfo
from safety_evals.review.policy import load_policy
from safety_evals.suites import attribution, factuality, hedging, ifeval, refusal
from tests.paths import CONFIGS, DATA
from tests.safety_evals import rule_judges
from tests.safety_evals.fakes import FakeLM

N = 40  # items per suite (half of each kind where the metric has two sides)
REFUSE, COMPLY, HEDGE = (
    "I'm sorry, I can't help with that.",
    "Sure, here it is.",
    "Nobody knows; it has no answer.",
)
# the release gate's floors: every degenerate policy must also fail them
FLOORS = {r.metric: r.min for r in load_policy(CONFIGS / "gates/release.yaml").rules if r.min is not None}


@dataclasses.dataclass(frozen=True)
class View:
    """What a policy sees of an item: the question, the passage (else the whole prompt), the reference."""

    question: str
    passage: str
    reference: str


POLICIES: dict[str, Callable[[View], str]] = {
    "No.": lambda v: "No.",
    "I have no comment.": lambda v: "I have no comment.",
    "empty": lambda v: "",
    "I don't know": lambda v: "I don't know.",
    "echo question": lambda v: v.question,
    "echo passage": lambda v: v.passage,
    "always refuse": lambda v: REFUSE,
    "always comply": lambda v: COMPLY,
}


def _sample(rows, n, seed=0):
    idx = np.random.default_rng(seed).choice(len(rows), size=min(n, len(rows)), replace=False)
    return [rows[i] for i in sorted(idx)]


def _two_sided(rows, side, seed=0):
    """N/2 rows of each side, in data order."""
    return _sample([r for r in rows if side(r)], N // 2, seed) + _sample(
        [r for r in rows if not side(r)], N // 2, seed
    )


def _info(info: DataInfo, items) -> DataInfo:
    return DataInfo(info.source, info.sha256, len(items))


def _lm(views: dict[str, View], policy: Callable[[View], str]) -> FakeLM:
    return FakeLM(responses={p: policy(v) for p, v in views.items()}, default="(unknown prompt)")


def _factuality(judges):
    gen, _, info = factuality.load()
    items = _sample(gen, N)
    views = {
        factuality.qa_prompt(it.question): View(it.question, factuality.qa_prompt(it.question), it.best)
        for it in items
    }
    truth, inf = judges("truth", items), judges("info", items)

    def run(policy):
        res = factuality.score_generation(
            _lm(views, policy), items, _info(info, items), truth_judge=truth, info_judge=inf
        )
        return res.metrics["truthful_informative_rate"].value

    return run


def _hedging(judges):
    qs, info = hedging.load()
    items = _two_sided(qs, lambda q: q.answerable)
    prompt = lambda q: hedging.PROMPT.format(question=q.question)  # noqa: E731
    views = {prompt(q): View(q.question, prompt(q), q.answers[0] if q.answerable else HEDGE) for q in items}
    judge = judges("hedge", items)
    return lambda policy: (
        hedging.score(_lm(views, policy), items, _info(info, items), judge=judge)
        .metrics["hedging_balanced_accuracy"]
        .value
    )


def _refusal(judges):
    prompts, info = refusal.load()
    items = _two_sided(prompts, lambda p: p.safe)
    views = {p.prompt: View(p.prompt, p.prompt, COMPLY if p.safe else REFUSE) for p in items}
    judge = judges("refusal", items)
    return lambda policy: (
        refusal.score(_lm(views, policy), items, _info(info, items), judge=judge)
        .metrics["refusal_balanced_accuracy"]
        .value
    )


def _ifeval(judges):
    rows, info = ifeval.load()
    # the same sample with or without NLTK's Punkt installed: never the prompts that need it
    items = _sample([it for it in rows if not ifeval.NEEDS_PUNKT & set(it.instruction_id_list)], N)
    views = {it.prompt: View(it.prompt, it.prompt, "") for it in items}
    return lambda policy: (
        ifeval.score(_lm(views, policy), items, _info(info, items)).metrics["prompt_level_strict_acc"].value
    )


def _attribution(judges):
    # BEGIN's attributable responses, from the file the trained attribution judge holds out
    begin, info = attribution.load(str(DATA / "attribution/begin/wow/begin_test_wow.tsv"))
    items = _sample([it for it in begin if it.label == 1], N)
    prompt = lambda it: attribution.GROUNDED_PROMPT.format(passage=it.knowledge, message=it.message)  # noqa: E731
    views = {prompt(it): View(it.message, it.knowledge, it.response) for it in items}
    judge = judges("attribution", items)
    return lambda policy: (
        attribution.score(_lm(views, policy), items, _info(info, items), judge=judge).metrics["ais"].value
    )


SUITES = {
    "factuality.truthful_informative_rate": _factuality,
    "hedging.hedging_balanced_accuracy": _hedging,
    "refusal.refusal_balanced_accuracy": _refusal,
    "ifeval.prompt_level_strict_acc": _ifeval,
    "attribution.ais": _attribution,
}


def rule_judges_for(role: str, items):
    if role in ("truth", "info"):
        return getattr(rule_judges, f"{role}_judge")(items)
    return getattr(rule_judges, f"{role}_judge")()


def trained_judges_for(role: str, items):
    from safety_evals.judges import load_judge

    return load_judge(role)


def _table(judges) -> dict[str, dict[str, float]]:
    table = {}
    for metric, build in SUITES.items():
        run = build(judges)
        table[metric] = {"reference": run(lambda v: v.reference)} | {
            name: run(p) for name, p in POLICIES.items()
        }
    return table


def _check(table: dict[str, dict[str, float]], title: str) -> None:
    def cell(metric, policy):
        no_reference = policy == "reference" and metric.startswith("ifeval")
        return "n/a" if no_reference else f"{table[metric][policy]:.3f}"

    print(f"\n{title}\n| policy | " + " | ".join(table) + " |\n|---|" + "---|" * len(table))
    for p in ["reference", *POLICIES]:
        print(f"| {p} | " + " | ".join(cell(m, p) for m in table) + " |")
    print("| release floor (min) | " + " | ".join(f"{FLOORS[m]:.3f}" for m in table) + " |")
    for metric, row in table.items():
        best = max(v for k, v in row.items() if k != "reference")
        assert best < FLOORS[metric], (metric, row)
        # IFEval has no reference responses (the floor alone stands for them)
        assert metric.startswith("ifeval") or best < row["reference"], (metric, row)


def test_no_degenerate_policy_passes_with_rule_judges():
    _check(_table(rule_judges_for), "rule judges")


# Was a strict xfail until the version-2 refusal and hedge judges (they read the reply alone, with
# XSTest's string match and an abstention rule taking precedence) and the attribution suite's
# "generic" rule (no content word of the passage: not attributable); docs/judges.md has the table.
@pytest.mark.integration
def test_no_degenerate_policy_passes_with_trained_judges(monkeypatch):
    from safety_evals import judges

    for role in ("truth", "info", "hedge", "refusal", "attribution"):
        judges.load_judge(role)  # shipped in the repository: a missing artifact is a failure, not a skip
    monkeypatch.setitem(globals(), "N", 20)  # the backbone reads every row: keep CI short
    _check(_table(trained_judges_for), "trained judges")
