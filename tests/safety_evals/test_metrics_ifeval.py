"""IFEval: our scores equal lm-eval's `ifeval` task (its `process_results` per prompt and its
aggregations) on the same hand-made responses; loader; the Punkt requirement; suite on a fake LM."""

import numpy as np
import pytest

from safety_evals.results import DataInfo
from safety_evals.suites import ifeval
from tests.safety_evals.fakes import FakeLM

lm_utils = pytest.importorskip("lm_eval.tasks.ifeval.utils")

# key -> responses (some follow every instruction, some fail one, some pass only the loose check)
RESPONSES = {
    1075: [
        '{"product": "diaper", "slogan": "Dry and happy"}',
        'Here you go:\n```json\n{"a": 1}\n```',
        "no json",
    ],
    1019: ["is the boy with the horn happy?", "Is the boy happy?"],
    1012: [
        "Write an email to my boss telling him that I am quitting. The email must contain a title wrapped in "
        "double angular brackets, i.e. <<title>>.\n<<Goodbye>>\nDear boss, I quit.",
        "<<Goodbye>>\nDear boss, I quit.",
    ],
    1219: ["NIKE IS BETTER. SNEAKER " * 10 + "\nP.S. BUY SNEAKERS.", "Nike is better.\nP.S. sneaker"],
    1127: [
        "SECTION 1\na\nSECTION 2\nb\nSECTION 3\nc\nSECTION 4\nd\n"
        "Can I get my money back for the classes I missed?",
        "SECTION 1\na\nCan I get my money back for the classes I missed?\n**done**",
    ],
    1108: ["ಹ್ಯಾಂಬರ್ಗರ್‌ಗಳು ಸ್ಯಾಂಡ್‌ವಿಚ್‌ಗಳು ಎಂದು ಹಲವರು ಭಾವಿಸುತ್ತಾರೆ, ಆದರೆ ಇದು ಚರ್ಚೆಯ ವಿಷಯ.", "Yes, they are."],
    1001: ["Day one we sail to Kyoto and there we rest.", ""],
}


def _cases():
    items, _ = ifeval.load()
    by_key = {it.key: it for it in items}
    return [(by_key[k], r) for k, rs in RESPONSES.items() for r in rs]


def _lm_eval_scores(cases) -> dict[str, float]:
    """lm-eval's own numbers: process_results per (doc, response), then its metric aggregations."""
    import langdetect

    langdetect.DetectorFactory.seed = 0  # as the suite does: langdetect is random otherwise
    per = []
    for it, r in cases:
        doc = {"key": it.key, "prompt": it.prompt, "instruction_id_list": list(it.instruction_id_list),
               "kwargs": [dict(k) for k in it.kwargs]}  # fmt: skip
        per.append(lm_utils.process_results(doc, [r]))
    return {
        "prompt_level_strict_acc": float(np.mean([p["prompt_level_strict_acc"] for p in per])),
        "inst_level_strict_acc": lm_utils.agg_inst_level_acc([p["inst_level_strict_acc"] for p in per]),
        "prompt_level_loose_acc": float(np.mean([p["prompt_level_loose_acc"] for p in per])),
        "inst_level_loose_acc": lm_utils.agg_inst_level_acc([p["inst_level_loose_acc"] for p in per]),
    }


def test_scores_equal_lm_eval_on_the_same_generations():
    cases = _cases()
    items = [it for it, _ in cases]
    # each case is its own "prompt" to the fake LM: prefix the index so repeated items stay distinct
    lm = FakeLM(responses={f"{i}|{it.prompt}": r for i, (it, r) in enumerate(cases)})
    indexed = [
        ifeval.Item(it.key, f"{i}|{it.prompt}", it.instruction_id_list, it.kwargs)
        for i, it in enumerate(items)
    ]
    # the checkers read the prompt only for repeat_prompt, whose text lives in kwargs: the prefix is harmless
    res = ifeval.score(lm, indexed, DataInfo("x", "", len(indexed)))
    want = _lm_eval_scores(cases)
    got = {k: res.metrics[k].value for k in want}
    assert got == pytest.approx(want, abs=1e-12)
    # not a degenerate case: some prompts pass, some fail, and loose differs from strict
    assert 0 < got["prompt_level_strict_acc"] < got["prompt_level_loose_acc"] < 1
    assert got["inst_level_strict_acc"] != got["prompt_level_strict_acc"]
    assert res.examples[0]["extra"]["strict"] == [True] and res.examples[2]["extra"]["strict"] == [False]
    assert res.metrics["inst_level_strict_acc"].n == len(cases)  # the interval resamples prompts


def test_inst_level_is_pooled_over_instructions():
    strict = [[True, False, False], [True]]
    m = ifeval.metrics(strict, strict)
    assert m["inst_level_strict_acc"].value == pytest.approx(2 / 4)  # not the mean of 1/3 and 1
    assert m["prompt_level_strict_acc"].value == pytest.approx(1 / 2)


def test_loader_real_file():
    items, info = ifeval.load()
    assert info.n == 541 and len({it.key for it in items}) == 541
    assert info.sha256 == "67ffeee0fcb87c317c5b08a2de85557b4a7e96ada6178aa645b4954fe4b53d49"
    assert sum(len(it.instruction_id_list) for it in items) == 834
    assert items[0].kwargs[1] == {"num_highlights": 3}


def test_without_punkt_the_suite_says_where_to_put_it_or_drops_what_needs_it(monkeypatch):
    items, info = ifeval.load()
    monkeypatch.setattr(ifeval, "punkt_available", lambda: False)
    with pytest.raises(FileNotFoundError, match="nltk.downloader punkt_tab"):
        ifeval.scorable(items, info, ifeval.IFEvalConfig())
    kept, kinfo = ifeval.scorable(items, info, ifeval.IFEvalConfig(without_punkt=True))
    need = [it for it in items if ifeval.NEEDS_PUNKT & set(it.instruction_id_list)]
    assert len(kept) == kinfo.n == 541 - len(need) and len(need) > 0
    assert f"without the {len(need)} prompts" in kinfo.source
    monkeypatch.setattr(ifeval, "punkt_available", lambda: True)
    assert ifeval.scorable(items, info, ifeval.IFEvalConfig())[1] == info


def test_suite_on_fake_lm():
    items, _ = ifeval.load(limit=2)
    lm = FakeLM(responses={items[1].prompt: "Day one we sail to Kyoto and there we rest."}, default="")
    res = ifeval.run(lm, limit=2, config=ifeval.IFEvalConfig(max_new_tokens=7))
    assert lm.gen_calls[0]["max_new_tokens"] == 7 and lm.gen_calls[0]["stop"] == ()
    assert res.metrics["prompt_level_strict_acc"].value == 0.5  # the empty answer follows nothing
    assert [e["label"] for e in res.examples] == ["not_followed", "followed"]
    assert res.judges == {}


def test_a_random_letter_check_is_seeded_per_prompt():
    """IFEval key 1122 asks for the letter '#': lm-eval's letter_frequency checker then checks a letter
    drawn from Python's global random state, so its verdict depends on what ran before; ours is
    seeded per prompt (same verdict whatever the state, strict and loose on one letter)."""
    import random

    (item,) = [it for it in ifeval.load()[0] if it.key == 1122]
    drawn = [ifeval.draws_at_random(i, k) for i, k in zip(item.instruction_id_list, item.kwargs)]
    assert drawn == [False, True] and item.kwargs[1]["letter"] == "#"
    response = "abcdefghijklm" * 4  # a-m four times each: passes for half of the letters
    inp = lm_utils.InputExample(item.key, list(item.instruction_id_list), item.prompt, list(item.kwargs))
    theirs = set()
    for seed in range(20):
        random.seed(seed)
        theirs.add(lm_utils.test_instruction_following_strict(inp, response).follow_instruction_list[1])
    assert theirs == {True, False}  # lm-eval: a draw
    ours = set()
    for seed in range(20):
        random.seed(seed)
        before = random.getstate()
        strict, loose = ifeval.follows(item, response)
        assert random.getstate() == before  # the caller's random state is left as it was
        assert loose[1] >= strict[1]
        ours.add(strict[1])
    assert len(ours) == 1
    assert not ifeval.draws_at_random("keywords:letter_frequency", {"letter": "q"})
