"""Tokenizer wrapper around a HF tokenizer: plain encode/decode, Gemma special ids, chat encoding."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

from align.data.chat import END_OF_TURN, START_OF_TURN, TEMPLATE, Segment, chat_segments, render_chat
from align.errors import InvalidInput, MissingInput


@dataclass(frozen=True)
class Span:
    """Tokens [start, end) of one chat segment: role is `template`, `system`, `user` or `assistant`."""

    role: str
    start: int
    end: int
    message: int  # index of the message the span belongs to (-1 for <bos>)


@dataclass(frozen=True)
class EncodedChat:
    """A tokenized chat: tokens int32 [T] and spans that partition [0, T)."""

    tokens: np.ndarray
    spans: tuple[Span, ...]

    def role_mask(self, role: str = "assistant") -> np.ndarray:
        """bool [T]: True on the tokens of `role` spans (content + <end_of_turn>\\n)."""
        mask = np.zeros(len(self.tokens), bool)
        for s in self.spans:
            if s.role == role:
                mask[s.start : s.end] = True
        return mask

    def message_start(self, index: int) -> int:
        """First token of message `index`'s content (its header, if any, comes before); T if absent."""
        for s in self.spans:
            if s.message == index and s.role != TEMPLATE:
                return s.start
        return len(self.tokens)


class Tokenizer:
    """A HF tokenizer with the ids and chat encoding the rest of align needs."""

    def __init__(self, hf: PreTrainedTokenizerBase):
        self.hf = hf
        self.bos_id = _required_id(hf, hf.bos_token_id, "bos")
        self.eos_id = _required_id(hf, hf.eos_token_id, "eos")
        # Gemma has a real <pad> (id 0); fall back to eos only for tokenizers without one.
        self.pad_id = hf.pad_token_id if hf.pad_token_id is not None else self.eos_id
        self.start_of_turn_id = _token_id(hf, START_OF_TURN)
        self.end_of_turn_id = _token_id(hf, END_OF_TURN)

    def __repr__(self) -> str:
        return f"Tokenizer({type(self.hf).__name__}, vocab_size={self.vocab_size})"

    @property
    def vocab_size(self) -> int:
        """Number of ids, added tokens included: the smallest embedding table that covers every id."""
        return len(self.hf)

    @property
    def stop_ids(self) -> tuple[int, ...]:
        """Ids that end a generation: <eos>, and <end_of_turn> when the vocabulary has it."""
        ids = [self.eos_id] + ([self.end_of_turn_id] if self.end_of_turn_id is not None else [])
        return tuple(ids)

    def encode(self, text: str, add_bos: bool = False) -> list[int]:
        """Token ids of `text` (special-token strings such as <bos> inside it become their ids)."""
        ids = self.hf.encode(text, add_special_tokens=False)
        return [self.bos_id, *ids] if add_bos else list(ids)

    def decode(self, ids: Sequence[int] | np.ndarray, skip_special: bool = True) -> str:
        return self.hf.decode([int(i) for i in ids], skip_special_tokens=skip_special)

    def render_chat(self, messages: Sequence[Mapping[str, str]], add_generation_prompt: bool = False) -> str:
        return render_chat(messages, add_generation_prompt)

    def encode_chat(
        self, messages: Sequence[Mapping[str, str]], add_generation_prompt: bool = False
    ) -> EncodedChat:
        """Tokenize the Gemma rendering of `messages` and record each token's role span.

        The tokens are those of the whole rendered string (what apply_chat_template gives): cutting it
        into segments first would change them where a segment boundary falls inside a token, e.g. a
        system text that starts with a newline joins the header's newline. Each token goes to the
        segment holding its last character, so a token that spans a boundary belongs to the content
        it ends in.
        """
        if self.end_of_turn_id is None or self.start_of_turn_id is None:
            raise ValueError(
                f"{self!r} has no {START_OF_TURN}/{END_OF_TURN} tokens: it cannot encode Gemma chats"
            )
        segments = chat_segments(messages, add_generation_prompt)
        text = "".join(s.text for s in segments)
        if not self.hf.is_fast:  # no offsets: tokenize segment-wise (equal unless a boundary merges)
            return _segment_wise(self.hf, segments)
        enc = self.hf(text, add_special_tokens=False, return_offsets_mapping=True)
        ends = np.cumsum([len(s.text) for s in segments])  # character end of each segment
        last_chars = [max(b - 1, a) for a, b in enc["offset_mapping"]]
        owner = np.searchsorted(ends, last_chars, side="right")  # [T] segment index of each token
        bounds = np.searchsorted(owner, np.arange(len(segments) + 1), side="left")
        spans = tuple(
            Span(seg.role, int(bounds[i]), int(bounds[i + 1]), seg.message) for i, seg in enumerate(segments)
        )
        return EncodedChat(np.asarray(enc["input_ids"], np.int32), spans)


def _segment_wise(hf: PreTrainedTokenizerBase, segments: Sequence[Segment]) -> EncodedChat:
    pieces = hf([s.text for s in segments], add_special_tokens=False)["input_ids"]
    spans, start = [], 0
    for seg, ids in zip(segments, pieces, strict=True):
        spans.append(Span(seg.role, start, start + len(ids), seg.message))
        start += len(ids)
    return EncodedChat(np.fromiter((t for ids in pieces for t in ids), np.int32, count=start), tuple(spans))


def _token_id(hf: PreTrainedTokenizerBase, token: str) -> int | None:
    tid = hf.convert_tokens_to_ids(token)
    return None if tid is None or tid == hf.unk_token_id else int(tid)


def _required_id(hf: PreTrainedTokenizerBase, tid: int | None, name: str) -> int:
    if tid is None:
        raise ValueError(f"tokenizer {type(hf).__name__} has no {name} token")
    return int(tid)


def load_tokenizer(path: str | os.PathLike) -> Tokenizer:
    """Load from a local HF tokenizer directory, a tokenizer.json file or a .gguf file (never the hub)."""
    from transformers import AutoTokenizer  # imports torch (~3 s): only loading needs it

    p = Path(path).expanduser()
    if not p.exists():
        raise MissingInput(
            f"tokenizer path {p} does not exist (expected a directory, tokenizer.json or .gguf)"
        )
    if p.is_file() and p.suffix == ".gguf":
        hf = AutoTokenizer.from_pretrained(
            str(p.parent), gguf_file=p.name, local_files_only=True, **_gguf_tokenizer_type(p)
        )
    elif p.is_file() and p.name.endswith(".json"):
        hf = _bare_tokenizer_json(p)
    elif p.is_dir():
        if not any((p / f).exists() for f in ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")):
            raise MissingInput(f"{p} holds no tokenizer.json, tokenizer_config.json or tokenizer.model")
        hf = AutoTokenizer.from_pretrained(str(p), local_files_only=True)
    else:
        raise InvalidInput(
            f"cannot load a tokenizer from {p}: expected a directory, a tokenizer.json or a .gguf file"
        )
    return Tokenizer(hf)


def _gguf_tokenizer_type(path: Path) -> dict:
    """AutoTokenizer picks a GGUF's tokenizer class from a model config; for architectures its own fast
    metadata reader does not cover (gemma3 among them) it builds that config with gguf.GGUFReader, which
    spends most of a Gemma load on a numpy view per vocabulary entry. Naming the class by the file's
    architecture skips that read and gives the same tokenizer (tests/data/test_data_gemma_tokenizer.py)."""
    from transformers.models.auto.tokenization_auto import TOKENIZER_MAPPING_NAMES

    from align.gguf_file import open_gguf

    arch = open_gguf(path).value("general.architecture")
    return {"tokenizer_type": arch} if TOKENIZER_MAPPING_NAMES.get(arch) else {}


def _bare_tokenizer_json(path: Path) -> PreTrainedTokenizerFast:
    """A tokenizer.json without the tokenizer_config.json that names its special tokens: take Gemma's
    (<bos>, <eos>, <pad>, <unk>) from its vocabulary."""
    from tokenizers import Tokenizer as RawTokenizer

    raw = RawTokenizer.from_file(str(path))
    missing = [t for t in ("<bos>", "<eos>") if raw.token_to_id(t) is None]
    if missing:
        raise InvalidInput(
            f"{path}: no {' or '.join(missing)} token in its vocabulary, and a bare tokenizer.json does not "
            "name its special tokens; pass the tokenizer's directory (with tokenizer_config.json) instead"
        )
    special = {f"{name}_token": f"<{name}>" for name in ("bos", "eos", "pad", "unk")}
    return PreTrainedTokenizerFast(
        tokenizer_object=raw, **{k: v for k, v in special.items() if raw.token_to_id(v) is not None}
    )
