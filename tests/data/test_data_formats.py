"""TRL format detection and normalisation, HH parsing, and errors that name the field."""

import pytest

from align.data.errors import DataError
from align.data.formats import (
    ChatExample,
    CompletionExample,
    PreferenceExample,
    PromptExample,
    TextExample,
    as_prompt,
    detect_format,
    extract_prompt,
    normalize_row,
    parse_hh,
)

U = {"role": "user", "content": "What color is the sky?"}
A1 = {"role": "assistant", "content": "It is blue."}
A2 = {"role": "assistant", "content": "It is green."}


def test_detects_every_trl_format():
    assert detect_format({"messages": [U]}) == "chat"
    assert detect_format({"prompt": "a", "completion": "b"}) == "completion"
    assert detect_format({"prompt": "a", "chosen": "b", "rejected": "c"}) == "preference"
    assert detect_format({"chosen": "b", "rejected": "c"}) == "preference"
    assert detect_format({"prompt": "a"}) == "prompt"
    assert detect_format({"text": "a"}) == "text"
    # UltraChat-style rows carry a prompt string next to the messages: still a chat.
    assert detect_format({"prompt": "a", "messages": [U, A1]}) == "chat"
    with pytest.raises(DataError, match="KTO"):
        detect_format({"prompt": "a", "completion": "b", "label": True})
    with pytest.raises(DataError, match=r"unknown format: fields \['foo'\]"):
        detect_format({"foo": 1})


def test_normalises_examples():
    assert normalize_row({"messages": [U, A1]}) == ChatExample([U, A1])
    assert normalize_row({"text": "x"}) == TextExample("x")
    assert normalize_row({"prompt": [U]}) == PromptExample([U])
    assert normalize_row({"prompt": [U], "completion": [A1]}) == CompletionExample([U], [A1])
    # ShareGPT `conversations`, the `model` role and typed text parts all become plain messages.
    row = {
        "conversations": [{"from": "human", "value": U["content"]}, {"from": "gpt", "value": "It is blue."}]
    }
    assert normalize_row(row) == ChatExample([U, A1])
    row = {
        "messages": [
            U,
            {
                "role": "model",
                "content": [{"type": "text", "text": " It is "}, {"type": "text", "text": "blue."}],
            },
        ]
    }
    assert normalize_row(row).messages[1] == {"role": "assistant", "content": "It isblue."}


def test_implicit_prompt_messages_like_trl_docstring():
    row = {"chosen": [U, A1], "rejected": [U, A2]}
    assert normalize_row(row) == PreferenceExample([U], [A1], [A2])
    # Divergence at a user turn: the prompt backs off to its last user turn.
    U2, U3 = {"role": "user", "content": "And?"}, {"role": "user", "content": "Why?"}
    ex = normalize_row({"chosen": [U, A1, U2, A1], "rejected": [U, A1, U3, A2]})
    assert ex.prompt == [U] and ex.chosen == [A1, U2, A1] and ex.rejected == [A1, U3, A2]


def test_implicit_prompt_strings_keep_the_space_with_the_completions():
    assert extract_prompt("The sky is blue.", "The sky is green.") == ("The sky is", " blue.", " green.")
    assert extract_prompt("ab", "ac") == ("a", "b", "c")


def test_explicit_prompt_of_another_type_is_ignored_like_trl():
    # TRL's maybe_extract_prompt: a string prompt next to conversational chosen/rejected is re-extracted.
    ex = normalize_row({"prompt": "ignored", "chosen": [U, A1], "rejected": [U, A2]})
    assert ex.prompt == [U]


def test_parse_hh():
    text = "\n\nHuman: Hi there\n\nAssistant: Hello.\n\nHow can I help?\n\nHuman: x\n\nAssistant:"
    assert parse_hh(text) == [
        {"role": "user", "content": "Hi there"},
        {"role": "assistant", "content": "Hello.\n\nHow can I help?"},
        {"role": "user", "content": "x"},
        {"role": "assistant", "content": ""},
    ]
    with pytest.raises(DataError, match="must start with"):
        parse_hh("Hello\n\nHuman: x", "chosen")


def test_hh_pair_becomes_a_conversational_preference():
    chosen = "\n\nHuman: Q\n\nAssistant: A\n\nHuman: Q2\n\nAssistant: good"
    rejected = "\n\nHuman: Q\n\nAssistant: A\n\nHuman: Q2\n\nAssistant: bad"
    ex = normalize_row({"chosen": chosen, "rejected": rejected})
    assert [m["content"] for m in ex.prompt] == ["Q", "A", "Q2"]
    assert ex.chosen == [{"role": "assistant", "content": "good"}]
    assert ex.rejected == [{"role": "assistant", "content": "bad"}]


@pytest.mark.parametrize(
    "row, field, reason",
    [
        ({"messages": [U, {"role": "assistant"}]}, "messages[1].content", "missing or non-string"),
        ({"messages": [U, {"role": "bot", "content": "x"}]}, "messages[1].role", "not one of"),
        ({"messages": [U, U]}, "messages[1].role", "must alternate|was expected"),
        ({"messages": []}, "messages", "non-empty list"),
        ({"prompt": [U], "completion": "x"}, "completion", "both be strings or both"),
        ({"prompt": [U], "completion": [U]}, "completion[0].role", "was expected"),
        ({"prompt": [U, A1]}, "prompt[1].role", "end with a user turn"),
        ({"chosen": [U, A1], "rejected": [U, A1]}, "rejected", "identical"),
        ({"chosen": [U, A1], "rejected": [U, A1, A2]}, "rejected[2].role", "was expected"),
        ({"chosen": [A1], "rejected": [A2]}, "chosen[0].role", "was expected"),
        ({"prompt": "p", "chosen": 3, "rejected": "x"}, "chosen", "expected a string"),
        ({"text": None}, "text", "expected a string"),
    ],
)
def test_malformed_rows_name_the_field(row, field, reason):
    with pytest.raises(DataError, match=reason) as err:
        normalize_row(row)
    assert err.value.field == field


def test_as_prompt():
    assert as_prompt(ChatExample([U, A1, {"role": "user", "content": "more"}, A2])).prompt == [
        U,
        A1,
        {"role": "user", "content": "more"},
    ]
    assert as_prompt(PreferenceExample("p", "c", "r")).prompt == "p"
    with pytest.raises(DataError):
        as_prompt(TextExample("x"))


def test_a_chat_ending_with_a_user_turn_is_its_own_prompt():
    more = {"role": "user", "content": "more"}
    assert as_prompt(ChatExample([U, A1, more])).prompt == [U, A1, more]  # not [U]
    assert as_prompt(ChatExample([U])).prompt == [U]
    system = {"role": "system", "content": "s"}
    assert as_prompt(ChatExample([system, U])).prompt == [system, U]
    assert as_prompt(ChatExample([system, U, A1])).prompt == [system, U]


def test_typed_parts_render_like_gemmas_template():
    """User/assistant parts are each stripped and joined; of a system message's parts the template folds in
    only the first, unstripped (google/gemma-3 chat_template: messages[0]['content'][0]['text'])."""
    parts = [{"type": "text", "text": " a "}, {"type": "text", "text": "b "}]
    row = {
        "messages": [
            {"role": "system", "content": [{"type": "text", "text": " Be brief. "}]},
            {"role": "user", "content": parts},
        ]
    }
    assert normalize_row(row).messages == [
        {"role": "system", "content": " Be brief. "},
        {"role": "user", "content": "ab"},
    ]
    row["messages"][0]["content"] = parts
    with pytest.raises(DataError, match="only the first") as err:
        normalize_row(row)
    assert err.value.field == "messages[0].content"
