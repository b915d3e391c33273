"""`align generate`: sample from any model align can load."""

from __future__ import annotations

import argparse
import sys
import time


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "prompts", nargs="+", help="one or more prompts (use - to read one per line from stdin)"
    )
    parser.add_argument(
        "--model",
        default="gemma3-270m",
        help="embedded name (gemma3-270m), *.gguf file, HF directory or hub id [%(default)s]",
    )
    parser.add_argument(
        "--max-new-tokens", type=int, default=64, help="tokens to sample after each prompt [%(default)s]"
    )
    parser.add_argument("--temperature", type=float, default=0.0, help="0 = greedy [%(default)s]")
    parser.add_argument("--top-k", type=int, default=None, help="sample from the k likeliest tokens [all]")
    parser.add_argument(
        "--top-p", type=float, default=None, help="sample from the smallest set with this mass [1.0]"
    )
    parser.add_argument("--seed", type=int, default=0, help="sampling seed [%(default)s]")
    parser.add_argument("--chat", action="store_true", help="wrap each prompt in the Gemma chat template")
    parser.add_argument(
        "--json",
        action="store_true",
        help="JSON mode: constrain decoding so that each output is one valid JSON value",
    )


def run(args: argparse.Namespace) -> int:
    from align.errors import InvalidInput
    from align.sampling import SamplingConfig
    from align.sampling.text import generate_text
    from pipelines.commands import load_model_option

    prompts = [line.rstrip("\n") for line in sys.stdin] if args.prompts == ["-"] else args.prompts
    if not prompts:
        raise InvalidInput("no prompts: standard input was empty")
    try:
        config = SamplingConfig(
            max_new_tokens=args.max_new_tokens,
            temperature=args.temperature,
            top_k=args.top_k,
            top_p=args.top_p,
        )
    except ValueError as e:  # SamplingConfig's range checks ("top_p must be ..."): name the option
        field, rest = str(e).split(" ", 1)
        raise InvalidInput(f"--{field.replace('_', '-')} {rest}") from e
    t0 = time.time()
    loaded = load_model_option(args.model, "--model")
    print(f"loaded {loaded.source} in {time.time() - t0:.1f}s", file=sys.stderr)
    _check_lengths(loaded, prompts, args)
    t0 = time.time()
    texts, res = generate_text(
        loaded.model,
        loaded.tokenizer,
        prompts,
        config,
        seed=args.seed,
        chat=args.chat,
        response_format="json" if args.json else None,
    )
    n_tokens = int(res.lengths.sum())
    for prompt, text in zip(prompts, texts):
        print(f"### {prompt}\n{text}\n")
    print(f"{n_tokens} tokens in {time.time() - t0:.1f}s (including compilation)", file=sys.stderr)
    return 0


def _check_lengths(loaded, prompts, args) -> None:
    """The sampler's length check, as an input error that names the options to change."""
    from align.errors import InvalidInput
    from align.sampling.text import encode_texts

    longest = max(len(ids) for ids in encode_texts(loaded.tokenizer, prompts, chat=args.chat))
    limit = loaded.config.max_seq_len
    if longest + args.max_new_tokens > limit:
        raise InvalidInput(
            f"the longest prompt ({longest} tokens) + --max-new-tokens={args.max_new_tokens} exceeds the "
            f"model's max_seq_len={limit}: lower --max-new-tokens or shorten the prompt"
        )
