"""Gemma chat format, rendered by hand (pure functions on strings).

    <bos><start_of_turn>user\\n{system}\\n\\n{user}<end_of_turn>\\n<start_of_turn>model\\n{assistant}<end_of_turn>\\n

As Gemma's own template does: a leading system message is folded into the first user turn,
`assistant` is written `model`, message contents are stripped of surrounding whitespace (the
system text is not), roles must alternate user/assistant, and `add_generation_prompt` appends
`<start_of_turn>model\\n`.

`chat_segments` cuts the rendering into pieces: a turn's role span is its content plus
`<end_of_turn>\\n`; the `<start_of_turn>role\\n` headers and `<bos>` are `template` spans.
Tokenizer.encode_chat tokenizes the whole string and maps tokens back to pieces by character
offsets, because a piece boundary can fall inside a token: the system text is not stripped, so
one that is empty or starts with a newline joins the header's newline (`user\\n\\n\\n`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from align.errors import InvalidInput

BOS = "<bos>"
START_OF_TURN = "<start_of_turn>"
END_OF_TURN = "<end_of_turn>"
TEMPLATE = "template"  # role of the structural pieces (bos, turn headers)
ROLES = ("system", "user", "assistant")
_GEMMA_ROLE = {"user": "user", "assistant": "model"}


class ChatFormatError(InvalidInput):
    """A message list Gemma's template cannot render; `index` and `key` name the offending message field."""

    def __init__(self, message: str, index: int | None = None, key: str | None = None):
        super().__init__(message)
        self.index, self.key = index, key


@dataclass(frozen=True)
class Segment:
    """One piece of a rendered chat: its text, role (`template` or a message role) and message index."""

    text: str
    role: str
    message: int  # index into the messages (the header of a turn carries its turn's index); -1 for <bos>


def check_messages(messages: Sequence[Mapping[str, str]]) -> None:
    """Raise ChatFormatError unless `messages` is [system?] user, assistant, user, ... with str contents."""
    if not messages:
        raise ChatFormatError("empty message list")
    for i, m in enumerate(messages):
        if m.get("role") not in ROLES:
            raise ChatFormatError(f"role {m.get('role')!r} is not one of {ROLES}", i, "role")
        if not isinstance(m.get("content"), str):
            raise ChatFormatError(
                f"content must be a string, got {type(m.get('content')).__name__}", i, "content"
            )
    start = 1 if messages[0]["role"] == "system" else 0
    for i in range(start, len(messages)):
        expected = "user" if (i - start) % 2 == 0 else "assistant"
        if messages[i]["role"] != expected:
            raise ChatFormatError(
                f"role {messages[i]['role']!r} where {expected!r} was expected: Gemma needs an optional "
                "leading system message, then user/assistant turns alternating and starting with user",
                i,
                "role",
            )
    if start == 1 and len(messages) == 1:
        raise ChatFormatError("a system message needs a user turn to fold into", 0, "role")


def chat_segments(
    messages: Sequence[Mapping[str, str]], add_generation_prompt: bool = False, add_bos: bool = True
) -> list[Segment]:
    """Cut the Gemma rendering of `messages` into template and per-turn role segments."""
    check_messages(messages)
    segments = [Segment(BOS, TEMPLATE, -1)] if add_bos else []
    prefix, start = "", 0
    if messages[0]["role"] == "system":
        prefix, start = messages[0]["content"] + "\n\n", 1
    for i in range(start, len(messages)):
        role = messages[i]["role"]
        content = messages[i]["content"].strip()
        if i == start:
            content = prefix + content
        segments.append(Segment(f"{START_OF_TURN}{_GEMMA_ROLE[role]}\n", TEMPLATE, i))
        segments.append(Segment(f"{content}{END_OF_TURN}\n", role, i))
    if add_generation_prompt:
        segments.append(Segment(f"{START_OF_TURN}model\n", TEMPLATE, len(messages)))
    return segments


def render_chat(messages: Sequence[Mapping[str, str]], add_generation_prompt: bool = False) -> str:
    """Gemma's chat string for `messages` (see the module docstring)."""
    return "".join(s.text for s in chat_segments(messages, add_generation_prompt))
