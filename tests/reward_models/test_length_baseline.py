"""The length-only baseline beside the reward model: hand-computed accuracies on a tiny set, the paired
bootstrap interval on constructed cases (RM == length, RM dominating, correlated scores), pooled
multi-file pairs with their character lengths, and the model card's note."""

import dataclasses
import json

import numpy as np
import pytest

from align.data.splits import SplitOptions
from align.data.testing import tiny_tokenizer
from align.data.tokenizer import Tokenizer
from align.intervals import wilson_ci
from pipelines.release.model_card import rm_notes
from reward_models.data import PairSource, RMDataOptions, load_pairs
from reward_models.evaluate import length_matched, length_report, length_scores, paired_bootstrap

# (chosen, rejected) lengths: chosen longer, shorter, a tie, chosen longer by 5%
LENGTHS = np.array([[10, 5], [5, 10], [7, 7], [100, 95]])
# the RM gets the first two right and the last two wrong
REWARDS = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])


def test_length_baseline_and_matched_pairs_by_hand():
    np.testing.assert_array_equal(length_scores(LENGTHS), [1.0, 0.0, 0.5, 1.0])
    # |10-5| = 5 > 0.1 * 10; 5 > 1; 0 <= 0.7; 5 <= 10
    np.testing.assert_array_equal(length_matched(LENGTHS), [False, False, True, True])
    np.testing.assert_array_equal(length_matched(LENGTHS, 0.04), [False, False, True, False])
    report = length_report(REWARDS, LENGTHS)
    assert report["length"]["accuracy"] == 0.625 and report["length"]["n"] == 4
    assert (report["length"]["ci_low"], report["length"]["ci_high"]) == wilson_ci(2.5, 4)
    diff = report["rm_minus_length"]  # (1-1, 1-0, 0-0.5, 0-1) / 4
    assert diff["mean"] == pytest.approx(-0.125) and diff["n"] == 4
    matched = report["length_matched"]  # the tie and the 5% pair: the RM got both wrong
    assert matched["n"] == 2 and matched["accuracy"] == 0.0 and matched["length_accuracy"] == 0.75
    assert (matched["ci_low"], matched["ci_high"]) == wilson_ci(0, 2)
    json.dumps(report, allow_nan=False)


def test_no_length_matched_pair_gives_none():
    report = length_report(REWARDS[:2], LENGTHS[:2])
    assert report["length_matched"]["n"] == 0 and report["length_matched"]["accuracy"] is None
    assert paired_bootstrap([], []) == {"mean": None, "ci_low": None, "ci_high": None, "n": 0}


def test_paired_interval_contains_zero_when_rm_equals_length():
    # Same accuracy (0.5 each), right on complementary pairs: difference 0, per-pair sd 1, so the
    # interval is about 0 +- 1.96 / sqrt(200) = +-0.139.
    rm = np.tile([1.0, 0.0], 100)
    length = 1.0 - rm
    d = paired_bootstrap(rm, length)
    assert d["mean"] == 0.0 and d["ci_low"] < 0 < d["ci_high"]
    assert d["ci_low"] == pytest.approx(-0.139, abs=0.02) and d["ci_high"] == pytest.approx(0.139, abs=0.02)
    same = paired_bootstrap(rm, rm)  # identical scores: no difference in any resample
    assert (same["mean"], same["ci_low"], same["ci_high"]) == (0.0, 0.0, 0.0)


def test_paired_interval_excludes_zero_when_rm_dominates():
    rng = np.random.default_rng(0)
    length = (rng.random(300) < 0.6).astype(float)
    rm = np.maximum(length, (rng.random(300) < 0.3).astype(float))  # right wherever length is, and more
    d = paired_bootstrap(rm, length)
    assert d["mean"] == pytest.approx(rm.mean() - length.mean()) and d["ci_low"] > 0


def test_pairing_is_what_makes_a_small_correlated_gain_visible():
    # Equal on 190 of 200 pairs, RM right on 10 more: the separate Wilson intervals overlap, the
    # paired one (10 discordant pairs, all in the RM's favour) excludes 0.
    length = np.tile([1.0, 0.0], 100)
    rm = length.copy()
    rm[np.flatnonzero(length == 0)[:10]] = 1.0
    d = paired_bootstrap(rm, length)
    assert d["mean"] == pytest.approx(0.05) and d["ci_low"] > 0.0
    assert wilson_ci(rm.sum(), 200)[0] < wilson_ci(length.sum(), 200)[1]


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def _row(question, chosen, rejected):
    q = [{"role": "user", "content": question}]
    return {
        "prompt": q,
        "chosen": [{"role": "assistant", "content": chosen}],
        "rejected": [{"role": "assistant", "content": rejected}],
    }


def test_more_files_pool_with_their_own_cuts_and_carry_character_lengths(tmp_path):
    main = _write(tmp_path / "a.jsonl", [_row(f"q{i}", "x" * (i + 1), "yy") for i in range(10)])
    # the second file repeats main's questions: those pairs must never train if held out in main
    other = _write(tmp_path / "b.jsonl", [_row(f"q{i}", "zzz", "w" * 7) for i in range(10)])
    tok = Tokenizer(tiny_tokenizer())
    held = SplitOptions(heldout_fraction=0.3, seed=0)
    alone = load_pairs(RMDataOptions(path=main, max_length=64, heldout=held), tok)
    more = PairSource(other, heldout=SplitOptions(heldout_fraction=0.3, seed=1))
    both = load_pairs(RMDataOptions(path=main, max_length=64, heldout=held, more=(more,)), tok)
    # main's cut does not move when a file is added
    assert [p.origin for p in both.heldout[:3]] == [p.origin for p in alone.heldout]
    assert len(both.heldout) == 6 and both.heldout_lengths.shape == (6, 2)
    line = lambda p: int(p.origin.rsplit(" ", 1)[-1])  # noqa: E731  "a.jsonl, line N": row N - 1
    # lengths are characters of the untruncated responses, row by row: main's chosen has N characters
    assert both.heldout_lengths[:3].tolist() == [[line(p), 2] for p in alone.heldout]
    assert both.heldout_lengths[3:].tolist() == [[3, 7]] * 3
    # a training row of one file whose question is held out in the other is dropped
    a = {line(p) for p in both.heldout[:3]}
    b = {line(p) for p in both.heldout[3:]}
    assert a != b and both.report["dropped_heldout_prompt"] == len(a - b) + len(b - a)
    assert len(both.train) == both.report["train_pairs"] == 14 - both.report["dropped_heldout_prompt"]
    held_prompts = {p.tokens[0, : p.prompt_length].tobytes() for p in both.heldout}
    assert all(p.tokens[0, : p.prompt_length].tobytes() not in held_prompts for p in both.train)
    # an evaluation-only file adds its held-out pairs and no training pair
    only = dataclasses.replace(more, train=False)
    scored = load_pairs(RMDataOptions(path=main, max_length=64, heldout=held, more=(only,)), tok)
    assert [p.origin for p in scored.heldout] == [p.origin for p in both.heldout]
    assert {p.origin.split(",")[0] for p in scored.train} == {main}
    assert len(scored.train) == 7 - len(b - a)  # main's training rows, less those held out in `other`


def test_model_card_note_reads_the_length_report():
    after = {"accuracy": 0.7, "ci_low": 0.65, "ci_high": 0.75, "n": 300}
    assert rm_notes({"eval_after": after}) == "held-out pair accuracy 0.700"
    after |= {
        "length": {"accuracy": 0.6, "ci_low": 0.55, "ci_high": 0.65, "n": 300},
        "rm_minus_length": {"mean": 0.1, "ci_low": 0.05, "ci_high": 0.15, "n": 300},
        "length_matched": {"accuracy": 0.68, "ci_low": 0.5, "ci_high": 0.8, "n": 30},
    }
    assert rm_notes({"eval_after": after}) == (
        "held-out pair accuracy 0.700 [0.650, 0.750] over 300 pairs; longer-answer-wins baseline "
        "0.600 [0.550, 0.650]; difference 0.100 [0.050, 0.150]; on 30 length-matched pairs "
        "0.680 [0.500, 0.800]"
    )
    assert rm_notes({}) == ""
