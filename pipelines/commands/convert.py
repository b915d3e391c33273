"""`align convert`: GGUF / HF / embedded name in, HF safetensors directory (with tokenizer) out."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", help="embedded name (gemma3-270m), *.gguf file, HF directory or hub id")
    parser.add_argument("output", help="directory to write (config.json, *.safetensors, tokenizer files)")
    parser.add_argument(
        "--max-shard-gb", type=float, default=2.0, help="split weights into shards of this size"
    )
    parser.add_argument(
        "--dtype",
        choices=("float32", "bfloat16"),
        default="float32",
        help="stored weights (bfloat16: half the size, as Gemma checkpoints on the Hub)",
    )


def run(args: argparse.Namespace) -> int:
    from align.model.hf_io import save_hf_dir
    from pipelines.commands import load_model_option

    loaded = load_model_option(args.source, "source")
    out = save_hf_dir(
        loaded.model,
        args.output,
        tokenizer=loaded.tokenizer.hf,
        generation_config=generation_config(loaded.source, loaded.tokenizer),
        max_shard_bytes=int(args.max_shard_gb * (1 << 30)),
        dtype=args.dtype,
    )
    print(f"wrote {out} ({loaded.config.family}, {loaded.config.num_layers} layers) from {loaded.source}")
    return 0


def generation_config(source: str, tokenizer) -> dict:
    """The source directory's own generation_config.json, else the tokenizer's stop ids: without them
    transformers stops only at <eos>, and a chat model runs on past <end_of_turn>."""
    own = Path(source) / "generation_config.json"
    if own.is_file():
        return json.loads(own.read_text())
    return {
        "bos_token_id": tokenizer.bos_id,
        "eos_token_id": list(tokenizer.stop_ids),
        "pad_token_id": tokenizer.pad_id,
    }
