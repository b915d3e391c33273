"""`align lm-eval run --model align --model_args model=SPEC --tasks ...`: lm-evaluation-harness's own
command line with the align JAX model registered as "align" (safety_evals.lm.lm_eval_model)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("command", choices=("run", "ls", "validate"), help="lm-eval's sub-command")
    parser.add_argument(
        "args", nargs=argparse.REMAINDER, help="lm-eval's options, e.g. --model align --tasks ..."
    )


def run(args: argparse.Namespace) -> int:
    from safety_evals.lm.lm_eval_model import main

    main([args.command, *args.args])
    return 0
