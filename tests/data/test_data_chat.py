"""Gemma chat rendering (exact strings), tokenization with role spans, and parity with HF's template."""

import numpy as np
import pytest

from align.data.chat import ChatFormatError, chat_segments, render_chat
from align.data.testing import TINY_VOCAB_SIZE, byte_id

BOS, EOS, PAD, SOT, EOT = 2, 1, 0, 5, 6
ER = 267  # merge "e"+"r" of the tiny tokenizer (see align.data.testing)
NL = byte_id("\n")


def ids(text):
    """Tiny-tokenizer ids of text made only of characters that take part in no merge."""
    return [byte_id(c) for c in text]


USER = [SOT, byte_id("u"), byte_id("s"), ER, NL]  # <start_of_turn>user\n
MODEL = [SOT, *ids("model"), NL]  # <start_of_turn>model\n


def test_render_exact_strings():
    chat = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]
    assert render_chat(chat) == (
        "<bos><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\nHello!<end_of_turn>\n"
    )
    assert render_chat(chat[:1], add_generation_prompt=True) == (
        "<bos><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n"
    )
    # System folded into the first user turn; user/assistant contents stripped, the system text is not.
    chat = [
        {"role": "system", "content": " Be brief."},
        {"role": "user", "content": "  Q1 \n"},
        {"role": "assistant", "content": "\nA1 "},
        {"role": "user", "content": "Q2"},
    ]
    assert render_chat(chat, add_generation_prompt=True) == (
        "<bos><start_of_turn>user\n Be brief.\n\nQ1<end_of_turn>\n"
        "<start_of_turn>model\nA1<end_of_turn>\n"
        "<start_of_turn>user\nQ2<end_of_turn>\n"
        "<start_of_turn>model\n"
    )


@pytest.mark.parametrize(
    "messages, index",
    [
        ([{"role": "assistant", "content": "x"}], 0),
        ([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}], 1),
        ([{"role": "system", "content": "s"}], 0),
        ([{"role": "user", "content": "a"}, {"role": "tool", "content": "b"}], 1),
        ([{"role": "user", "content": "a"}, {"role": "system", "content": "b"}], 1),
    ],
)
def test_bad_turn_order_names_the_message(messages, index):
    with pytest.raises(ChatFormatError) as err:
        render_chat(messages)
    assert err.value.index == index and err.value.key == "role"


def test_encode_chat_hand_written_tokens_and_mask(tok):
    enc = tok.encode_chat([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "ok"}])
    expected = [BOS, *USER, *ids("hi"), EOT, NL, *MODEL, *ids("ok"), EOT, NL]
    assert enc.tokens.tolist() == expected
    mask = enc.role_mask("assistant")
    assert mask.tolist() == [False] * (len(expected) - 4) + [True] * 4  # "o" "k" <end_of_turn> "\n"
    assert [(s.role, s.start, s.end) for s in enc.spans] == [
        ("template", 0, 1),
        ("template", 1, 6),
        ("user", 6, 10),
        ("template", 10, 17),
        ("assistant", 17, 21),
    ]
    assert enc.message_start(1) == 17 and enc.message_start(2) == len(expected)
    gen = tok.encode_chat([{"role": "user", "content": "hi"}], add_generation_prompt=True)
    assert gen.tokens.tolist() == [BOS, *USER, *ids("hi"), EOT, NL, *MODEL]
    assert not gen.role_mask("assistant").any()


def test_tiny_tokenizer_ids(tok):
    assert (tok.bos_id, tok.eos_id, tok.pad_id, tok.end_of_turn_id) == (BOS, EOS, PAD, EOT)
    assert tok.stop_ids == (EOS, EOT)
    assert tok.vocab_size == TINY_VOCAB_SIZE == 272
    assert tok.encode("hi", add_bos=True) == [BOS, *ids("hi")]
    assert tok.encode("the") == [264, byte_id("e")]  # "th" merges before "he"
    assert tok.decode([BOS, *ids("hi"), EOT]) == "hi"
    assert tok.decode([BOS, *ids("hi")], skip_special=False) == "<bos>hi"


CHATS = [
    [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": " It's 4. \n\n"}],
    [
        {"role": "system", "content": "You answer in French.\n"},
        {"role": "user", "content": "\n\nthe weather?"},
        {"role": "assistant", "content": "Il fait beau.\n\nVraiment."},
        {"role": "user", "content": "merci <3"},
    ],
    [{"role": "user", "content": "  "}, {"role": "assistant", "content": ""}],
]


@pytest.mark.parametrize("chat", CHATS)
@pytest.mark.parametrize("gen", [False, True])
def test_matches_hf_apply_chat_template(hf_tiny, tok, chat, gen):
    """Our renderer and our segment-wise tokens equal HF's jinja rendering of Gemma 3's template."""
    if gen and chat[-1]["role"] == "assistant":
        chat = chat[:-1]
    text = hf_tiny.apply_chat_template(chat, tokenize=False, add_generation_prompt=gen)
    assert render_chat(chat, gen) == text
    hf_ids = hf_tiny.apply_chat_template(chat, tokenize=True, add_generation_prompt=gen)["input_ids"]
    assert tok.encode_chat(chat, gen).tokens.tolist() == list(hf_ids)


def test_segments_tokenize_like_the_whole_string(tok):
    """Cutting at segment boundaries never changes tokens, on random text with merge-prone characters."""
    rng = np.random.default_rng(0)
    alphabet = list("the rain\n\n  ou?!") + ["é", "<end_of_turn>"]
    for _ in range(50):
        n = int(rng.integers(1, 6))
        chat = [{"role": "system", "content": "".join(rng.choice(alphabet, 5))}] if rng.random() < 0.5 else []
        for i in range(n):
            role = "user" if i % 2 == 0 else "assistant"
            chat.append({"role": role, "content": "".join(rng.choice(alphabet, int(rng.integers(0, 12))))})
        enc = tok.encode_chat(chat)
        assert enc.tokens.tolist() == tok.encode(render_chat(chat))
        spans = enc.spans
        assert spans[0].start == 0 and spans[-1].end == len(enc.tokens)
        assert all(a.end == b.start for a, b in zip(spans, spans[1:], strict=False))
        assert "".join(s.text for s in chat_segments(chat)) == render_chat(chat)


@pytest.mark.parametrize("system", ["", "\n", "\n\nBe brief.", " \tx", "a\n"])
def test_tokens_equal_the_whole_string_when_the_system_text_starts_with_whitespace(hf_tiny, tok, system):
    """The system text is not stripped, so it can merge with the header's newline: the tokens must still be
    those of the whole rendered string (what apply_chat_template gives), with the spans kept exact."""
    chat = [
        {"role": "system", "content": system},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "ok"},
    ]
    enc = tok.encode_chat(chat)
    assert enc.tokens.tolist() == list(hf_tiny.apply_chat_template(chat, tokenize=True)["input_ids"])
    assert tok.decode(enc.tokens[enc.role_mask("assistant")], skip_special=False) == "ok<end_of_turn>\n"
    assert all(a.end == b.start for a, b in zip(enc.spans, enc.spans[1:], strict=False))
    assert enc.spans[-1].end == len(enc.tokens) and enc.message_start(2) < len(enc.tokens)
