"""Reward-model training: `align rm --config configs/rm/<name>.yaml [key=value ...]`.

The work is reward_models.train.run_rm_training; this module only parses the config and prints the
held-out result (pairwise accuracy with its 95% Wilson interval, before and after training).
"""

from __future__ import annotations

import argparse
import json
import logging

from pipelines.config_io import dump_yaml, load_config
from reward_models.train import RMConfig, run_rm_training


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="YAML file (configs/rm/*.yaml)")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="dotted overrides, e.g. optim.learning_rate=1e-5 data.limit=200")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")


def run(args) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s", force=True)
    logging.getLogger("align").setLevel(logging.INFO)  # our progress lines, not every library's INFO
    config = load_config(RMConfig, args.config, args.overrides)
    if args.print_config:
        print(dump_yaml(config))
        return 0
    summary = run_rm_training(config)
    if "stopped" in summary:
        return 143 if summary["stopped"] == "sigterm" else 1
    keys = ("step", "eval_before", "eval_after", "export")
    print(json.dumps({k: summary[k] for k in keys if k in summary}, indent=2))
    return 0
