"""Parity with TRL's own data code (trl.data_utils, and its SFT/DPO tokenization steps) on the same inputs.

TRL is the reference our users know: prompt extraction, format detection, the chat-template text
split into prompt/completion, and the token-level completion masks must agree with it. TRL runs the
tiny tokenizer with Gemma 3's jinja template (align.data.testing.GEMMA3_CHAT_TEMPLATE).
"""

import gzip
import itertools
import json

import numpy as np
import pytest

trl_data = pytest.importorskip("trl.data_utils")

from align.data.chat import render_chat  # noqa: E402
from align.data.formats import detect_format, is_conversational, normalize_row, parse_hh  # noqa: E402
from align.data.preference import split_pair  # noqa: E402
from align.data.sft import sft_example  # noqa: E402

U = {"role": "user", "content": "What color is the sky?"}
A1 = {"role": "assistant", "content": "It is blue."}
A2 = {"role": "assistant", "content": "It is green."}
ROWS = [
    {"chosen": [U, A1], "rejected": [U, A2]},
    {"chosen": "The sky is blue.", "rejected": "The sky is green."},
    {"chosen": "Paris is the capital.", "rejected": "Paris is a city."},
    {"prompt": [U], "chosen": [A1], "rejected": [A2]},
    {"prompt": "The sky is", "chosen": " blue.", "rejected": " green."},
    {"prompt": "ignored", "chosen": [U, A1], "rejected": [U, A2]},  # types differ: TRL extracts
]


@pytest.mark.parametrize("row", ROWS)
def test_prompt_extraction_matches_trl(row):
    ours = normalize_row(row)
    theirs = trl_data.maybe_extract_prompt(dict(row))
    assert (ours.prompt, ours.chosen, ours.rejected) == (
        theirs["prompt"],
        theirs["chosen"],
        theirs["rejected"],
    )


@pytest.mark.parametrize(
    "row",
    [*ROWS, {"messages": [U, A1]}, {"prompt": "x"}, {"prompt": [U], "completion": [A1]}, {"text": "x"}],
)
def test_is_conversational_matches_trl(row):
    key = next(k for k in ("prompt", "chosen", "messages", "text") if k in row)
    assert is_conversational(row[key]) == trl_data.is_conversational({key: row[key]})
    assert detect_format(row) in ("preference", "chat", "prompt", "completion", "text")


def test_hh_rows_split_like_trl(hh_dir):
    """On real HH rows parsed into messages, our prompt/chosen/rejected equal trl.extract_prompt's."""
    n = 0
    with gzip.open(hh_dir / "helpful-base" / "test.jsonl.gz", "rt") as f:
        for line in itertools.islice(f, 200):
            row = json.loads(line)
            chosen, rejected = parse_hh(row["chosen"]), parse_hh(row["rejected"])
            try:
                ours = normalize_row(row)
            except ValueError:
                continue  # rows Gemma's format rejects are covered by the loading tests
            theirs = trl_data.extract_prompt({"chosen": chosen, "rejected": rejected})
            if theirs["prompt"] and theirs["prompt"][-1]["role"] == "user":  # divergence at the last turn
                assert (ours.prompt, ours.chosen, ours.rejected) == (
                    theirs["prompt"],
                    theirs["chosen"],
                    theirs["rejected"],
                )
                n += 1
    assert n > 150


@pytest.mark.parametrize("row", [ROWS[3], {"prompt": [U, A1, U], "completion": [A2]}])
def test_chat_template_text_matches_trl_apply_chat_template(hf_tiny, row):
    theirs = trl_data.apply_chat_template(dict(row), hf_tiny)
    prompt = render_chat(row["prompt"], add_generation_prompt=True)
    assert theirs["prompt"] == prompt
    for key in ("chosen", "rejected", "completion"):
        if key in row:
            assert theirs[key] == render_chat(row["prompt"] + row[key])[len(prompt) :]


def _trl_completion_mask(hf, prompt, completion):
    """TRL's SFTTrainer prompt-completion tokenization (sft_trainer.tokenize_fn), add_eos included."""
    if isinstance(prompt, list):
        prompt_ids = trl_data._tokenize(hf, prompt, add_generation_prompt=True)["input_ids"]
        ids = trl_data._tokenize(hf, prompt + completion)["input_ids"]
    else:
        completion = completion if completion.endswith(hf.eos_token) else completion + hf.eos_token
        prompt_ids = trl_data._tokenize(hf, prompt)["input_ids"]
        ids = trl_data._tokenize(hf, prompt + completion)["input_ids"]
    n = trl_data.common_prefix_length(prompt_ids, ids)
    return list(ids), [0] * n + [1] * (len(ids) - n)


@pytest.mark.parametrize(
    "prompt, completion",
    [
        ([U], [A1]),
        ([{"role": "system", "content": "Be terse."}, U, A1, U], [A2]),
        ("Q: 2+2=", " 4"),
        ("The sky is", " blue.<eos>"),
    ],
)
def test_sft_tokens_and_completion_mask_match_trl(hf_tiny, tok, prompt, completion):
    from align.data.formats import CompletionExample

    ours = sft_example(CompletionExample(prompt, completion), tok)
    ids, mask = _trl_completion_mask(hf_tiny, prompt, completion)
    assert ours.tokens.tolist() == ids
    assert ours.loss_mask.astype(int).tolist() == mask


@pytest.mark.parametrize("row", [ROWS[3], ROWS[4], {"prompt": [U, A1, U], "chosen": [A2], "rejected": [A1]}])
def test_dpo_prompt_and_response_ids_match_trl(hf_tiny, tok, row):
    """TRL's DPOTrainer tokenize_fn: prompt ids, then chosen/rejected ids after the common prefix."""
    ex = normalize_row(row)
    prompt, chosen, rejected = split_pair(ex, tok)
    p, c, r = row["prompt"], row["chosen"], row["rejected"]
    if isinstance(p, list):
        prompt_ids = trl_data._tokenize(hf_tiny, p, add_generation_prompt=True)["input_ids"]
        pc = trl_data._tokenize(hf_tiny, p + c)["input_ids"]
        pr = trl_data._tokenize(hf_tiny, p + r)["input_ids"]
    else:
        prompt_ids = trl_data._tokenize(hf_tiny, p)["input_ids"]
        pc = trl_data._tokenize(hf_tiny, p + c + hf_tiny.eos_token)["input_ids"]
        pr = trl_data._tokenize(hf_tiny, p + r + hf_tiny.eos_token)["input_ids"]
    n = min(trl_data.common_prefix_length(prompt_ids, pc), trl_data.common_prefix_length(prompt_ids, pr))
    np.testing.assert_array_equal(prompt, prompt_ids[:n])
    np.testing.assert_array_equal(chosen, pc[n:])
    np.testing.assert_array_equal(rejected, pr[n:])
