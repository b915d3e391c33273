"""align.data: datasets, tokenizer and fixed-shape batches (a leaf: numpy + HF tokenizers/datasets only).

records = load_records("/path/hh/test.jsonl.gz", skip_invalid=True)   # TRL formats -> typed examples
tok = load_tokenizer("gemma-3-270m.gguf")                               # or a HF tokenizer directory
pairs, stats = encode_preferences(records, tok, max_length=512)          # TokenizedPair [P, T]
order = DataOrder(len(pairs), seed=0)
for batch, position in batches(pairs, order, None, 8, lambda b: preference_batch(b, 512, rows=8)):
    ...                                                                  # save `position` with checkpoints
"""

# Tokenizer and chat format
from align.data.chat import ChatFormatError, render_chat
from align.data.tokenizer import EncodedChat, Span, Tokenizer, load_tokenizer

# Loading and formats
from align.data.errors import DataError, LoadReport
from align.data.formats import (
    ChatExample,
    CompletionExample,
    Example,
    PreferenceExample,
    PromptExample,
    TextExample,
    as_prompt,
    detect_format,
    extract_prompt,
    normalize_row,
    parse_hh,
)
from align.data.loading import Records, load_records

# Tokenized sequences
from align.data.sequences import TRUNCATION_POLICIES, Tokenized, TokenizedPair, TruncationStats
from align.data.sft import encode_sft, sft_example
from align.data.preference import encode_preferences, preference_pair
from align.data.prompts import encode_prompt, encode_prompts, prompt_batch

# Batches and order
from align.data.batching import (
    DEFAULT_BUCKETS,
    Batch,
    bucket_length,
    first_fit,
    next_token_targets,
    pack_batch,
    pad_batch,
    preference_batch,
)
from align.data.order import DataOrder, Position, batches, packed_batches

__all__ = [
    "ChatFormatError", "render_chat", "EncodedChat", "Span", "Tokenizer", "load_tokenizer",
    "DataError", "LoadReport", "ChatExample", "CompletionExample", "Example", "PreferenceExample",
    "PromptExample", "TextExample", "as_prompt", "detect_format", "extract_prompt", "normalize_row",
    "parse_hh", "Records", "load_records",
    "TRUNCATION_POLICIES", "Tokenized", "TokenizedPair", "TruncationStats", "encode_sft", "sft_example",
    "encode_preferences", "preference_pair", "encode_prompt", "encode_prompts", "prompt_batch",
    "DEFAULT_BUCKETS", "Batch", "bucket_length", "first_fit", "next_token_targets", "pack_batch",
    "pad_batch", "preference_batch", "DataOrder", "Position", "batches", "packed_batches",
]  # fmt: skip
