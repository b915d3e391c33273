"""TRL dataset formats: detect a row's format and normalise it into a typed example.

Formats (TRL's names), checked in this order:
    preference   {"chosen", "rejected"} with an explicit "prompt" or an implicit one (the shared
                 prefix of chosen and rejected, as `trl.extract_prompt`); strings or message lists;
                 Anthropic HH strings ("\\n\\nHuman: ...\\n\\nAssistant: ...") become message lists.
    completion   {"prompt", "completion"}
    chat         {"messages"} (or ShareGPT {"conversations": [{"from", "value"}]}, as TRL converts it)
    prompt       {"prompt"} alone
    text         {"text"} (language modelling)

Messages are normalised to plain `{"role", "content"}` dicts with string contents, `model` and
ShareGPT roles mapped to TRL's, and checked against Gemma's turn order (align.data.chat).
Every failure is a DataError naming the field, e.g. `chosen[3].role`; the loader adds the file
and row.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Union

from align.data.chat import ChatFormatError, check_messages
from align.data.errors import DataError

Message = dict[str, str]
PromptLike = Union[str, list[Message]]  # a standard (string) or conversational value


@dataclass(frozen=True)
class ChatExample:
    messages: list[Message]
    origin: str = ""  # where the example came from ("file, line 12"), for later error messages


@dataclass(frozen=True)
class CompletionExample:
    prompt: PromptLike
    completion: PromptLike
    origin: str = ""


@dataclass(frozen=True)
class PreferenceExample:
    prompt: PromptLike
    chosen: PromptLike
    rejected: PromptLike
    origin: str = ""


@dataclass(frozen=True)
class PromptExample:
    prompt: PromptLike
    origin: str = ""


@dataclass(frozen=True)
class TextExample:
    text: str
    origin: str = ""


Example = Union[ChatExample, CompletionExample, PreferenceExample, PromptExample, TextExample]
KINDS: dict[str, type] = {
    "preference": PreferenceExample,
    "completion": CompletionExample,
    "chat": ChatExample,
    "prompt": PromptExample,
    "text": TextExample,
}
_ROLE_ALIASES = {"model": "assistant", "human": "user", "gpt": "assistant"}
_HH_TURN = re.compile(r"\n\n(Human|Assistant):")


def kind_of(example: Example) -> str:
    return next(k for k, cls in KINDS.items() if isinstance(example, cls))


def is_conversational(value: Any) -> bool:
    """TRL's test: a non-empty list whose first item is a dict with a `role` (or ShareGPT `from`)."""
    return (
        isinstance(value, list)
        and bool(value)
        and isinstance(value[0], Mapping)
        and ("role" in value[0] or "from" in value[0])
    )


def detect_format(row: Mapping[str, Any]) -> str:
    """The TRL format of a raw row (a key of KINDS), or DataError naming the fields it has."""
    keys = set(row)
    if {"chosen", "rejected"} <= keys:
        return "preference"
    if {"prompt", "completion"} <= keys:
        if "label" in keys:
            raise DataError("unpaired preference rows (prompt, completion, label; KTO) are not supported")
        return "completion"
    for kind, key in (
        ("chat", "messages"),
        ("chat", "conversations"),
        ("prompt", "prompt"),
        ("text", "text"),
    ):
        if key in keys:
            return kind
    raise DataError(
        f"unknown format: fields {sorted(keys)}; expected messages, prompt+completion, "
        "chosen+rejected (+prompt), prompt or text"
    )


def normalize_row(row: Mapping[str, Any], origin: str = "") -> Example:
    """Detect the format of `row` and return the validated, normalised example."""
    if not isinstance(row, Mapping):
        raise DataError(f"a row must be a JSON object, got {type(row).__name__}")
    kind = detect_format(row)
    if kind == "preference":
        return _preference(row, origin)
    if kind == "completion":
        prompt, completion = _value(row, "prompt"), _value(row, "completion")
        _check_pair(prompt, completion, "completion")
        return CompletionExample(prompt, completion, origin)
    if kind == "chat":
        key = "messages" if "messages" in row else "conversations"
        messages = _messages(row[key], key)
        _check_turns([(key, messages)])
        return ChatExample(messages, origin)
    if kind == "prompt":
        prompt = _value(row, "prompt")
        _check_prompt(prompt, "prompt")
        return PromptExample(prompt, origin)
    return TextExample(_string(row["text"], "text"), origin)


def as_prompt(example: Example) -> PromptExample:
    """The prompt of any example with one: a chat ending with a user turn is its own prompt, one ending
    with an assistant turn is everything before that turn."""
    if isinstance(example, PromptExample):
        return example
    if isinstance(example, (CompletionExample, PreferenceExample)):
        return PromptExample(example.prompt, example.origin)
    if isinstance(example, ChatExample):
        messages = example.messages
        return PromptExample(messages if messages[-1]["role"] == "user" else messages[:-1], example.origin)
    raise DataError("a text example has no prompt", field="text")


def prompt_of_pair(row: Mapping[str, Any], origin: str = "") -> PromptExample:
    """The prompt of a preference row whose pair is unusable (e.g. chosen == rejected), for loads
    that want prompts only (RL): its explicit prompt, or its chosen dialogue before the last
    assistant turn. Raises DataError when neither exists."""
    if "prompt" in row:
        prompt = _value(row, "prompt")
        _check_prompt(prompt, "prompt")
        return PromptExample(prompt, origin)
    chosen = parse_hh(row["chosen"], "chosen") if is_hh_text(row["chosen"]) else row["chosen"]
    chosen = _value({"chosen": chosen}, "chosen")
    if not isinstance(chosen, list):
        raise DataError("a pair of plain strings without a prompt has no prompt of its own", field="prompt")
    _check_turns([("chosen", chosen)])
    return as_prompt(ChatExample(chosen, origin))


def parse_hh(text: str, field: str = "text") -> list[Message]:
    """Split an Anthropic HH dialogue ("\\n\\nHuman: a\\n\\nAssistant: b...") into stripped messages."""
    parts = _HH_TURN.split(text)
    if parts[0].strip():
        raise DataError("HH text must start with '\\n\\nHuman:'", field=field)
    roles, contents = parts[1::2], parts[2::2]
    return [
        {"role": "user" if r == "Human" else "assistant", "content": c.strip()}
        for r, c in zip(roles, contents, strict=True)
    ]


def is_hh_text(value: Any) -> bool:
    return isinstance(value, str) and value.lstrip().startswith("Human:") and "\n\nAssistant:" in value


def _preference(row: Mapping[str, Any], origin: str) -> PreferenceExample:
    chosen, rejected = row["chosen"], row["rejected"]
    if is_hh_text(chosen) and is_hh_text(rejected) and "prompt" not in row:
        chosen, rejected = parse_hh(chosen, "chosen"), parse_hh(rejected, "rejected")
    chosen, rejected = _value({"chosen": chosen}, "chosen"), _value({"rejected": rejected}, "rejected")
    # TRL's maybe_extract_prompt: an explicit prompt is used only when it has the same type as chosen.
    if "prompt" in row and is_conversational(row["prompt"]) == isinstance(chosen, list):
        prompt = _value(row, "prompt")
    else:
        if isinstance(chosen, list):  # check the raw lists first, so errors name the row's own indices
            _check_turns([("chosen", chosen)])
            _check_turns([("rejected", rejected)])
        prompt, chosen, rejected = extract_prompt(chosen, rejected)
    if chosen == rejected:
        raise DataError("chosen and rejected are identical: the pair carries no preference", field="rejected")
    _check_pair(prompt, chosen, "chosen")
    _check_pair(prompt, rejected, "rejected")
    return PreferenceExample(prompt, chosen, rejected, origin)


def extract_prompt(chosen: PromptLike, rejected: PromptLike) -> tuple[PromptLike, PromptLike, PromptLike]:
    """Split the shared prefix off chosen and rejected, as `trl.extract_prompt`.

    Strings: the common character prefix, moved back one character when it ends right after a
    space (TRL keeps that space with the completions). Message lists: the common message
    prefix, backed off to its last user turn so both completions start with an assistant turn.
    """
    if isinstance(chosen, list) != isinstance(rejected, list):
        raise DataError("chosen and rejected must both be strings or both be message lists", field="rejected")
    if chosen == rejected:
        raise DataError("chosen and rejected are identical: the pair carries no preference", field="rejected")
    n = 0
    while n < min(len(chosen), len(rejected)) and chosen[n] == rejected[n]:
        n += 1
    if isinstance(chosen, str):
        if n > 0 and chosen[n - 1] == " ":
            n -= 1
    else:
        while n > 0 and chosen[n - 1]["role"] != "user":
            n -= 1
        if n == 0:
            raise DataError(
                "chosen and rejected share no leading user turn: no prompt to extract", field="chosen"
            )
    return chosen[:n], chosen[n:], rejected[n:]


def _value(row: Mapping[str, Any], key: str) -> PromptLike:
    """A string, or a validated message list when the value is conversational."""
    value = row[key]
    if isinstance(value, list):
        return _messages(value, key)
    return _string(value, key)


def _string(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise DataError(f"expected a string or a message list, got {type(value).__name__}", field=field)
    return value


def _messages(value: Any, field: str) -> list[Message]:
    if not isinstance(value, list) or not value:
        raise DataError("expected a non-empty list of messages", field=field)
    return [_message(m, f"{field}[{i}]") for i, m in enumerate(value)]


def _message(m: Any, field: str) -> Message:
    if not isinstance(m, Mapping):
        raise DataError(f"a message must be an object, got {type(m).__name__}", field=field)
    role_key, content_key = ("from", "value") if "from" in m and "role" not in m else ("role", "content")
    role, content = m.get(role_key), m.get(content_key)
    if not isinstance(role, str):
        raise DataError(f"missing or non-string '{role_key}'", field=f"{field}.{role_key}")
    if isinstance(content, list):
        content = _text_parts(content, role, f"{field}.{content_key}")
    if not isinstance(content, str):
        raise DataError(f"missing or non-string '{content_key}'", field=f"{field}.{content_key}")
    return {"role": _ROLE_ALIASES.get(role, role), "content": content}


def _text_parts(parts: list, role: str, field: str) -> str:
    """TRL's typed parts as Gemma 3's template renders them: user and assistant parts each stripped and
    joined with no separator; a system message only by its first part, unstripped."""
    if not all(
        isinstance(p, Mapping) and p.get("type") == "text" and isinstance(p.get("text"), str) for p in parts
    ):
        raise DataError("only text parts ({'type': 'text', 'text': ...}) are supported", field=field)
    if role != "system":
        return "".join(p["text"].strip() for p in parts)
    if len(parts) != 1:  # the template would silently drop the other parts
        raise DataError(
            f"a system message with {len(parts)} parts: Gemma's template renders only the first, so "
            "give it exactly one text part",
            field=field,
        )
    return parts[0]["text"]


def _check_turns(parts: list[tuple[str, list[Message]]]) -> None:
    """Check the concatenated message lists against Gemma's turn order; name the part that breaks it."""
    messages = [m for _, part in parts for m in part]
    try:
        check_messages(messages)
    except ChatFormatError as e:
        if e.index is None:
            raise DataError(str(e), field=parts[0][0]) from None
        i = e.index
        for name, part in parts:
            if i < len(part):
                raise DataError(str(e), field=f"{name}[{i}].{e.key}") from None
            i -= len(part)
        raise AssertionError("unreachable: message index past the end") from None


def _check_prompt(prompt: PromptLike, field: str) -> None:
    if isinstance(prompt, list):
        _check_turns([(field, prompt)])
        if prompt[-1]["role"] != "user":
            raise DataError(
                "a conversational prompt must end with a user turn", field=f"{field}[{len(prompt) - 1}].role"
            )


def _check_pair(prompt: PromptLike, completion: PromptLike, field: str) -> None:
    """A prompt and its completion must have the same type; together they must be a valid chat."""
    if isinstance(prompt, list) != isinstance(completion, list):
        raise DataError("prompt and completion must both be strings or both be message lists", field=field)
    if isinstance(prompt, list):
        _check_prompt(prompt, "prompt")
        _check_turns([("prompt", prompt), (field, completion)])
