"""`align convert`: GGUF / HF / embedded name in; a HF safetensors directory (with tokenizer) or a GGUF
file (float, 8- or 4-bit weights, for llama.cpp-style runtimes) out."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

_QUANTS = ("f32", "f16", "q8_0", "q4_0")  # align.model.gguf_export.QUANTS, without importing gguf here


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", help="embedded name (gemma3-270m), *.gguf file, HF directory or hub id")
    parser.add_argument(
        "output", help="directory to write (config.json, *.safetensors, tokenizer files), or a *.gguf file"
    )
    parser.add_argument(
        "--to",
        choices=("hf", "gguf"),
        help="output format (default: gguf when OUTPUT ends in .gguf, else a HF directory)",
    )
    parser.add_argument(
        "--quant",
        choices=_QUANTS,
        default="q8_0",
        help="GGUF weight type of the matrices (norms stay f32; with q4_0 the embedding is q8_0)",
    )
    parser.add_argument(
        "--max-shard-gb", type=float, default=2.0, help="split weights into shards of this size"
    )
    parser.add_argument(
        "--dtype",
        choices=("float32", "bfloat16"),
        default="float32",
        help="stored weights of a HF directory (bfloat16: half the size, as Gemma checkpoints on the Hub)",
    )


def run(args: argparse.Namespace) -> int:
    from pipelines.commands import load_model_option

    loaded = load_model_option(args.source, "source")
    to = args.to or ("gguf" if args.output.endswith(".gguf") else "hf")
    if to == "gguf":
        from align.model.gguf_export import write_gguf

        out = write_gguf(
            loaded.model,
            args.output,
            quant=args.quant,
            tokenizer_fields=tokenizer_fields(args.source, loaded),
            name=Path(args.output).stem,
        )
        what = f"GGUF {args.quant}, {out.stat().st_size / 1e6:.1f} MB"
    else:
        from align.model.hf_io import save_hf_dir

        out = save_hf_dir(
            loaded.model,
            args.output,
            tokenizer=loaded.tokenizer.hf,
            generation_config=generation_config(loaded.source, loaded.tokenizer),
            max_shard_bytes=int(args.max_shard_gb * (1 << 30)),
            dtype=args.dtype,
        )
        what = loaded.config.family
    print(f"wrote {out} ({what}, {loaded.config.num_layers} layers) from {loaded.source}")
    return 0


def tokenizer_fields(spec: str, loaded) -> list:
    """The GGUF tokenizer metadata: copied from the source GGUF (an embedded model's own file, too), else
    built from the source's HF tokenizer."""
    from align.hub import EMBEDDED, embedded_gguf_path
    from align.model.gguf_export import gguf_tokenizer_fields, hf_tokenizer_fields

    if spec in EMBEDDED:
        return gguf_tokenizer_fields(embedded_gguf_path(spec))
    if loaded.source.endswith(".gguf"):
        return gguf_tokenizer_fields(loaded.source)
    return hf_tokenizer_fields(loaded.tokenizer)


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
