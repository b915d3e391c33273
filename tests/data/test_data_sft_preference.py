"""SFT, preference and prompt encoding: hand-written tokens and masks, truncation policies and counts."""

import numpy as np
import pytest

from align.data.errors import DataError
from align.data.formats import ChatExample, CompletionExample, PreferenceExample, PromptExample, TextExample
from align.data.preference import encode_preferences, preference_pair
from align.data.prompts import encode_prompt, encode_prompts, prompt_batch
from align.data.sequences import Tokenized, TruncationStats, truncate
from align.data.sft import encode_sft, sft_example
from align.data.testing import byte_id

BOS, EOS, PAD, SOT, EOT = 2, 1, 0, 5, 6
ER, NL = 267, byte_id("\n")
USER = [SOT, byte_id("u"), byte_id("s"), ER, NL]
MODEL = [SOT, *[byte_id(c) for c in "model"], NL]


def ids(text):
    return [byte_id(c) for c in text]


def u(text):
    return {"role": "user", "content": text}


def a(text):
    return {"role": "assistant", "content": text}


def test_chat_loss_on_every_assistant_turn_only(tok):
    seq = sft_example(ChatExample([u("hi"), a("ok"), u("yo"), a("k")]), tok)
    turn1 = [BOS, *USER, *ids("hi"), EOT, NL, *MODEL]
    reply1 = [*ids("ok"), EOT, NL]
    turn2 = [*USER, *ids("yo"), EOT, NL, *MODEL]
    reply2 = [*ids("k"), EOT, NL]
    assert seq.tokens.tolist() == turn1 + reply1 + turn2 + reply2
    expected = [0] * len(turn1) + [1] * len(reply1) + [0] * len(turn2) + [1] * len(reply2)
    assert seq.loss_mask.astype(int).tolist() == expected


def test_conversational_completion_equals_the_same_chat(tok):
    chat = sft_example(ChatExample([u("hi"), a("ok")]), tok)
    comp = sft_example(CompletionExample([u("hi")], [a("ok")]), tok)
    np.testing.assert_array_equal(chat.tokens, comp.tokens)
    np.testing.assert_array_equal(chat.loss_mask, comp.loss_mask)


def test_string_completion_and_text(tok):
    seq = sft_example(CompletionExample("2+2=", " 4"), tok)
    assert seq.tokens.tolist() == [BOS, *ids("2+2="), *ids(" 4"), EOS]
    assert seq.loss_mask.astype(int).tolist() == [0, 0, 0, 0, 0, 1, 1, 1]
    # A completion that already ends with <eos> does not get a second one (TRL's add_eos).
    assert sft_example(CompletionExample("2+2=", " 4<eos>"), tok).tokens.tolist() == seq.tokens.tolist()
    seq = sft_example(TextExample("ok"), tok)
    assert seq.tokens.tolist() == [BOS, *ids("ok"), EOS]
    assert seq.loss_mask.astype(int).tolist() == [0, 1, 1, 1]
    with pytest.raises(DataError, match="SFT takes"):
        sft_example(PreferenceExample("p", "c", "r", origin="f.jsonl, line 3"), tok)


def test_truncation_policies_are_explicit_and_counted(tok):
    seq = Tokenized(np.array([BOS, 10, 11, 12, 13], np.int32), np.array([0, 0, 1, 1, 1], bool))
    start = truncate(seq, 3, "keep_start", BOS)
    assert start.tokens.tolist() == [BOS, 10, 11] and start.loss_mask.tolist() == [False, False, True]
    end = truncate(seq, 3, "keep_end", BOS)
    assert end.tokens.tolist() == [BOS, 12, 13] and end.loss_mask.tolist() == [False, True, True]
    assert truncate(seq, 3, "drop") is None
    assert truncate(seq, 5, "error") is seq
    with pytest.raises(ValueError, match="5 tokens exceed max_length=3"):
        truncate(seq, 3, "error")
    with pytest.raises(ValueError, match="policy"):
        truncate(seq, 3, "middle")

    examples = [TextExample("abcdefgh"), TextExample("ab"), CompletionExample("long prompt", "x")]
    out, stats = encode_sft(examples, tok, max_length=6, truncation="keep_start")
    assert [len(s) for s in out] == [6, 4, 6]  # 10, 4 and 14 tokens before
    assert (stats.examples, stats.truncated, stats.dropped, stats.tokens_removed) == (3, 2, 0, 4 + 8)
    assert stats.no_loss == 1  # the completion was cut away entirely
    out, stats = encode_sft(examples, tok, max_length=6, truncation="drop")
    assert len(out) == 1 and (stats.dropped, stats.tokens_removed, stats.no_loss) == (2, 24, 0)


def test_string_preference_pair_hand_written(tok):
    pair = preference_pair(PreferenceExample("Q", " yes", " no"), tok)
    assert pair.tokens.tolist() == [
        [BOS, *ids("Q yes"), EOS],
        [BOS, *ids("Q no"), EOS, PAD],
    ]
    assert pair.loss_mask.astype(int).tolist() == [[0, 0, 1, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1, 0]]
    assert pair.lengths.tolist() == [7, 6] and pair.prompt_length == 2 and pair.tokens.dtype == np.int32


def test_conversational_pair_shares_the_prompt(tok):
    pair = preference_pair(PreferenceExample([u("hi")], [a("ok")], [a("no!")]), tok)
    prompt = [BOS, *USER, *ids("hi"), EOT, NL, *MODEL]
    assert pair.prompt_length == len(prompt)
    assert pair.row(0).tokens.tolist() == prompt + [*ids("ok"), EOT, NL]
    assert pair.row(1).tokens.tolist() == prompt + [*ids("no!"), EOT, NL]
    assert pair.row(1).loss_mask.astype(int).tolist() == [0] * len(prompt) + [1] * 5


def test_preference_truncation_prompt_left_then_responses_right(tok):
    ex = PreferenceExample("abcdefgh", "xyz", "w")  # prompt 9 tokens, responses 4 and 2
    stats = TruncationStats()
    pair = preference_pair(ex, tok, max_length=8, max_prompt_length=5, stats=stats)
    # 1) prompt cut from the left to 5 tokens, <bos> kept; 2) still 5 + 4 > 8: responses cut to 3.
    assert pair.row(0).tokens.tolist() == [BOS, *ids("efgh"), *ids("xyz")]
    assert pair.row(1).tokens.tolist() == [BOS, *ids("efgh"), *ids("w"), EOS]
    assert (stats.prompt_truncated, stats.response_truncated, stats.truncated) == (1, 1, 1)
    assert stats.tokens_removed == 2 * 4 + 1
    # Nothing is cut when the pair fits, even with a prompt longer than max_prompt_length.
    pair = preference_pair(ex, tok, max_length=13, max_prompt_length=5)
    assert pair.lengths.tolist() == [13, 11]
    pairs, stats = encode_preferences([ex, ex], tok, max_length=8, max_prompt_length=5)
    assert stats.examples == 2 and stats.truncated == 2
    with pytest.raises(ValueError, match="below max_length"):
        encode_preferences([ex], tok, max_length=8, max_prompt_length=8)


def test_prompts_left_padded(tok):
    conv = encode_prompt([u("hi")], tok)
    assert conv.tolist() == [BOS, *USER, *ids("hi"), EOT, NL, *MODEL]
    assert encode_prompt("ab", tok).tolist() == [BOS, *ids("ab")]
    prompts, stats = encode_prompts(
        [PromptExample("abcdef"), PreferenceExample("ab", "c", "d")], tok, max_length=4
    )
    assert [p.tolist() for p in prompts] == [[BOS, *ids("def")], [BOS, *ids("ab")]]
    assert (stats.prompt_truncated, stats.tokens_removed) == (1, 3)
    batch = prompt_batch(prompts, 5, rows=3, padding="left")
    x, y, z = ids("def")
    assert batch["tokens"].tolist() == [[0, BOS, x, y, z], [0, 0, BOS, *ids("ab")], [0] * 5]
    assert batch["lengths"].tolist() == [4, 3, 0]
    assert batch["positions"].tolist() == [[0, 0, 1, 2, 3], [0, 0, 0, 1, 2], [0] * 5]
    assert batch["segment_ids"].tolist() == [[0, 1, 1, 1, 1], [0, 0, 1, 1, 1], [0] * 5]
    batch = prompt_batch(prompts, 5, rows=3, padding="right")
    assert batch["tokens"].tolist() == [[BOS, x, y, z, 0], [BOS, *ids("ab"), 0, 0], [0] * 5]
    assert batch["lengths"].tolist() == [4, 3, 0]
    assert batch["positions"].tolist() == [[0, 1, 2, 3, 0], [0, 1, 2, 0, 0], [0] * 5]
    assert batch["segment_ids"].tolist() == [[1, 1, 1, 1, 0], [1, 1, 1, 0, 0], [0] * 5]
    with pytest.raises(ValueError, match="truncate it first"):
        prompt_batch(prompts, 3, padding="left")
    with pytest.raises(ValueError, match="padding="):
        prompt_batch(prompts, 5, padding="middle")


def test_preference_pair_rejects_a_prompt_budget_that_leaves_no_room(tok):
    pair = PreferenceExample("a prompt", " yes", " no")
    for max_prompt_length in (8, 9):
        with pytest.raises(ValueError, match="max_prompt_length=.* must be below max_length=8"):
            preference_pair(pair, tok, max_length=8, max_prompt_length=max_prompt_length)
    assert preference_pair(pair, tok, max_length=8, max_prompt_length=4).tokens.shape[1] <= 8
