"""Reward-model training: `align rm --config configs/rm/<name>.yaml [key=value ...]`.

The work is reward_models.train.run_rm_training; this module only parses the config and prints the
held-out result (pairwise accuracy with its 95% Wilson interval, before and after training).
"""

from __future__ import annotations

import argparse

from pipelines.commands.config import add_config_arguments, run_config_command
from reward_models.train import RMConfig, run_rm_training


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, "rm", "optim.learning_rate=1e-5 data.limit=200 fit=probe")


def run(args) -> int:
    return run_config_command(
        args, RMConfig, run_rm_training, ("step", "eval_before", "eval_after", "export")
    )
