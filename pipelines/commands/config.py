"""The shape every `align <stage> --config FILE [key=value ...]` command shares (sft, rm, dpo, rlhf).

    def add_arguments(parser): add_config_arguments(parser, "sft", "optim.learning_rate=1e-4")
    def run(args): return run_config_command(args, SFTConfig, run_sft, ("step", "eval_after", "export"))

Exit codes: 0 done, 1 stopped early (non-finite loss, ...), 143 stopped by SIGTERM after saving, as a
scheduler expects from a preempted job. Errors in the config itself are raised as ConfigError, which
the top-level CLI prints as one located line.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Callable, Sequence

from align.errors import stop_exit_code
from align.config_io import dump_yaml, load_config_noting


def add_config_arguments(parser: argparse.ArgumentParser, kind: str, example: str) -> None:
    parser.add_argument("--config", required=True, help=f"YAML file (configs/{kind}/*.yaml)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help=f"dotted overrides, e.g. {example}")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")


def setup_logging() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s", force=True)
    logging.getLogger("align").setLevel(logging.INFO)  # our progress lines, not every library's INFO


def device_count() -> int:
    import jax  # only for per_device_train_batch_size: --help and --print-config stay JAX-free otherwise

    return jax.device_count()


def print_config(config, notes: Sequence[str]) -> str:
    """The resolved config as YAML, after a comment naming each TRL alias used (our key is what ran)."""
    head = "".join(f"# TRL name used: {note}\n" for note in notes)
    return head + dump_yaml(config)


def run_config_command(args, config_cls, run_fn: Callable[[object], dict], keys: Sequence[str]) -> int:
    """Load the config (+ overrides), run it, print the summary's `keys` as JSON; the exit code."""
    setup_logging()
    config, notes = load_config_noting(config_cls, args.config, args.overrides, device_count=device_count)
    if args.print_config:
        print(print_config(config, notes))
        return 0
    for note in notes:
        logging.getLogger("align").info("TRL name %s", note)
    from align.training.loop import sigterm_stops  # imports JAX: not for `--help`

    with sigterm_stops("loading the model and the data"):  # the training loop takes over SIGTERM
        summary = run_fn(config)
    if "stopped" in summary:
        return stop_exit_code(summary["stopped"])
    print(json.dumps({k: summary[k] for k in keys if k in summary}, indent=2))
    return 0
