"""Offline test doubles: a tiny byte-level tokenizer with Gemma's special tokens.

The vocabulary is small (`TINY_VOCAB_SIZE`) so tiny test models can share it, and every
plain ASCII character that takes part in no merge maps to `byte_id(c) = 7 + ord(c)`, which
lets tests write expected token ids by hand.

    id 0..6     <pad> <eos> <bos> <unk> <mask> <start_of_turn> <end_of_turn>   (Gemma order for 0..3)
    id 7..262   the 256 bytes, in byte order (GPT-2 byte-to-unicode alphabet)
    id 263..271 nine merges ("\\n\\n", "th", "he", "in", "er", "an", " t", "ou", "re")
"""

from __future__ import annotations

import functools

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

SPECIAL_TOKENS = ("<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "<start_of_turn>", "<end_of_turn>")
BYTE_OFFSET = len(SPECIAL_TOKENS)
_MERGES = (
    ("Ċ", "Ċ"),
    ("t", "h"),
    ("h", "e"),
    ("i", "n"),
    ("e", "r"),
    ("a", "n"),
    ("Ġ", "t"),
    ("o", "u"),
    ("r", "e"),
)
TINY_VOCAB_SIZE = BYTE_OFFSET + 256 + len(_MERGES)  # 272

# Gemma 3's chat template (google/gemma-3-*-it tokenizer_config.json) for text-only models: the reference
# in parity tests (align renders chats itself, align.data.chat) and the template exported models carry.
# Typed content parts render as Gemma's do (text parts trimmed and joined; a system message by its first
# part); where Gemma's writes <start_of_image> for an image part this one raises: images are not supported.
GEMMA3_CHAT_TEMPLATE = (
    "{{ bos_token }}\n"
    "{%- if messages[0]['role'] == 'system' -%}\n"
    "    {%- if messages[0]['content'] is string -%}\n"
    "        {%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}\n"
    "    {%- else -%}\n"
    "        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n\n' -%}\n"
    "    {%- endif -%}\n"
    "    {%- set loop_messages = messages[1:] -%}\n"
    "{%- else -%}\n"
    '    {%- set first_user_prefix = "" -%}\n'
    "    {%- set loop_messages = messages -%}\n"
    "{%- endif -%}\n"
    "{%- for message in loop_messages -%}\n"
    "    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}\n"
    '        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}\n'
    "    {%- endif -%}\n"
    "    {%- if (message['role'] == 'assistant') -%}\n"
    '        {%- set role = "model" -%}\n'
    "    {%- else -%}\n"
    "        {%- set role = message['role'] -%}\n"
    "    {%- endif -%}\n"
    "    {{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else \"\") }}\n"
    "    {%- if message['content'] is string -%}\n"
    "        {{ message['content'] | trim }}\n"
    "    {%- elif message['content'] is iterable -%}\n"
    "        {%- for item in message['content'] -%}\n"
    "            {%- if item['type'] == 'text' -%}\n"
    "                {{ item['text'] | trim }}\n"
    "            {%- else -%}\n"
    '                {{ raise_exception("Only text content is supported: images are not supported") }}\n'
    "            {%- endif -%}\n"
    "        {%- endfor -%}\n"
    "    {%- else -%}\n"
    '        {{ raise_exception("Invalid content type") }}\n'
    "    {%- endif -%}\n"
    "    {{ '<end_of_turn>\n' }}\n"
    "{%- endfor -%}\n"
    "{%- if add_generation_prompt -%}\n"
    "    {{'<start_of_turn>model\n'}}\n"
    "{%- endif -%}\n"
)


@functools.lru_cache(maxsize=1)
def _byte_alphabet() -> tuple[str, ...]:
    """GPT-2's byte -> printable unicode map (what `pre_tokenizers.ByteLevel` emits), indexed by byte."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = {}, 0
    for b in range(256):
        if b in printable:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra)
            extra += 1
    return tuple(chars[b] for b in range(256))


def byte_id(char: str) -> int:
    """Token id of a single-byte character that takes part in no merge."""
    (b,) = char.encode("utf-8")
    return BYTE_OFFSET + b


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer with Gemma's special tokens; adds <bos> like Gemma's tokenizer."""
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    vocab.update({c: BYTE_OFFSET + b for b, c in enumerate(_byte_alphabet())})
    for a, b in _MERGES:
        vocab[a + b] = len(vocab)
    assert len(vocab) == TINY_VOCAB_SIZE
    tok = Tokenizer(models.BPE(vocab=vocab, merges=list(_MERGES)))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    tok.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 2)])
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
        mask_token="<mask>",
        extra_special_tokens=["<start_of_turn>", "<end_of_turn>"],
    )
    hf.chat_template = GEMMA3_CHAT_TEMPLATE
    return hf
