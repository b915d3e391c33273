"""The data paths where processes share the tokenizing (RL prompts, DPO and reward-model pairs), in one
process: the lazily tokenized datasets hold the eager lists' items and reports, and the rollout blocks
the processes build join into the one-process rollout."""

from __future__ import annotations

import json

import numpy as np
import pytest

from align.data import Tokenizer
from align.data.lazy import LazySequences, chain
from align.data.preference import PreferenceDataOptions, load_preference_pairs, prompt_key
from align.data.splits import SplitOptions
from align.data.testing import tiny_tokenizer
from align.rl.feed import block_layout, local_block, repeat_prompts
from align.training.feed import encode_by_process
from reward_models.data import _without_heldout_prompts

TOK = Tokenizer(tiny_tokenizer())


def preference_file(path, n=14):
    """n HH-style rows; rows 3 and 10 share a prompt."""
    rows = []
    for i in range(n):
        prompt = f"\n\nHuman: question {i % 7 if i in (3, 10) else i}?"
        chosen = f" answer {i} " * (1 + i % 3)
        rows.append(
            {"chosen": f"{prompt}\n\nAssistant:{chosen}", "rejected": f"{prompt}\n\nAssistant: no {i}"}
        )
    path.write_text("\n".join(json.dumps(r) for r in rows))
    return path


def assert_same_pairs(got, want):
    assert len(got) == len(want)
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a.tokens, b.tokens)
        np.testing.assert_array_equal(a.loss_mask, b.loss_mask)
        assert a.prompt_length == b.prompt_length


def test_shared_preference_pairs_are_the_eager_ones(tmp_path):
    path = str(preference_file(tmp_path / "p.jsonl"))
    options = PreferenceDataOptions(path=path, max_length=24, heldout=SplitOptions(0.25, seed=0))
    train, held, report = load_preference_pairs(options, TOK)
    lazy, lazy_held, lazy_report = load_preference_pairs(options, TOK, share=encode_by_process)
    assert isinstance(lazy, LazySequences) and lazy_report == report
    assert report["train"]["truncation"]["response_truncated"] >= 1  # the counts are summed over processes
    assert_same_pairs(lazy, train)
    assert_same_pairs(lazy_held, held)
    assert lazy.keys == [prompt_key(p) for p in train]


def test_heldout_prompts_left_out_by_key_as_by_tokens(tmp_path):
    options = PreferenceDataOptions(path=str(preference_file(tmp_path / "p.jsonl")), max_length=24)
    pairs, _, _ = load_preference_pairs(options, TOK)
    lazy, _, _ = load_preference_pairs(options, TOK, share=encode_by_process)
    held = [pairs[3]]  # its prompt is also pair 10's
    half = len(pairs) // 2
    parts = [pairs[:half], pairs[half:]]
    want, dropped = _without_heldout_prompts(parts, held, lazy=False)
    got, lazy_dropped = _without_heldout_prompts(
        [lazy.select(range(half)), lazy.select(range(half, len(lazy)))], held, lazy=True
    )
    assert dropped == lazy_dropped >= 2  # pair 10, and any whose prompt truncation made equal
    assert_same_pairs(got, want)
    assert len(chain([lazy, lazy])) == 2 * len(lazy)


@pytest.mark.parametrize("batch,group,processes", [(3, 4, 2), (4, 1, 2), (1, 4, 2), (2, 4, 4)])
def test_rollout_blocks_join_into_the_one_process_rollout(batch, group, processes):
    rng = np.random.default_rng(0)
    prompts = {"tokens": rng.integers(0, 50, (batch, 5)), "lengths": rng.integers(1, 6, batch)}
    tokens, lengths = (np.asarray(x) for x in repeat_prompts(prompts, group))
    per = batch * group // processes
    blocks = []
    for p in range(processes):
        layout = block_layout(slice(p * per, (p + 1) * per), batch, group)
        mine = {k: v[layout.prompts] for k, v in prompts.items()}  # what this process collates
        assert layout.prompts.stop - layout.prompts.start <= -(-per // group) + 1
        blocks.append(local_block(mine, layout))
    np.testing.assert_array_equal(np.concatenate([b[0] for b in blocks]), tokens)
    np.testing.assert_array_equal(np.concatenate([b[1] for b in blocks]), lengths)


def test_shared_rl_prompts_are_the_eager_ones(tmp_path, monkeypatch):
    from pipelines.stages import rl_data

    options = rl_data.PromptDataOptions(path=str(preference_file(tmp_path / "p.jsonl")), max_prompt_length=8)
    train, held, report = rl_data.load_prompts(options, TOK)
    monkeypatch.setattr(rl_data, "process_count", lambda: 2)  # the path of several processes
    lazy, lazy_held, lazy_report = rl_data.load_prompts(options, TOK)
    assert isinstance(lazy, LazySequences) and lazy_report == report and report["truncation"]["truncated"] > 0
    assert len(lazy) == len(train) and all(np.array_equal(a, b) for a, b in zip(lazy, train))
    assert all(np.array_equal(a, b) for a, b in zip(lazy_held, held))
