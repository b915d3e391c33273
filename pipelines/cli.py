"""The `align` command line: one explicit table of sub-commands, each imported only when it runs.

Every command module exposes `add_arguments(parser)` and `run(args) -> int` (the exit code), so
`align --help` lists everything without importing JAX. An `align.errors.InputError` from a command
(a bad config, data file or model name; the message names the file, line and field) is printed as
one line with exit code 2, an `align.errors.RunStopped` (preemption, a non-finite loss) as one line
with its exit code; ALIGN_TRACEBACK=1 shows their tracebacks instead. Other exceptions are bugs and
keep their tracebacks.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "generate": ("pipelines.commands.generate", "sample from a model (GGUF file, HF dir, preset name)"),
    "convert": ("pipelines.commands.convert", "convert a GGUF / HF checkpoint to a HF safetensors directory"),
    "sft": ("pipelines.stages.sft", "supervised fine-tuning from a YAML config"),
    "rm": ("pipelines.stages.rm", "train a Bradley-Terry reward model from a YAML config"),
    "rlhf": ("pipelines.stages.rlhf", "RLHF (PPO or GRPO) from a YAML config"),
    "dpo": ("pipelines.stages.dpo", "direct preference optimisation from a YAML config"),
    "pipeline": ("pipelines.pipeline", "SFT -> RM -> PPO -> evals -> chat/developer variants"),
    "eval": ("safety_evals.cli", "run safety eval suites on a model and write results JSON"),
    "dashboard": (
        "safety_evals.review.dashboard",
        "render results JSON / history into one self-contained HTML",
    ),
    "gate": ("safety_evals.review.gate", "turn results JSON into a CI verdict under a release policy"),
    "results": ("safety_evals.review.history", "add / list runs in the local SQLite results history"),
}


def _top_parser() -> argparse.ArgumentParser:
    lines = [f"  {name:<10} {help_}" for name, (_, help_) in COMMANDS.items()]
    return argparse.ArgumentParser(
        prog="align",
        description="JAX post-training and safety evaluation for Gemma-family models.",
        epilog="commands:\n" + "\n".join(lines) + "\n\nRun `align COMMAND --help` for a command's options.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        usage="align [-h] COMMAND [options]",
    )


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    top = _top_parser()
    if not argv or argv[0] in ("-h", "--help"):
        top.print_help()
        return 0
    name = argv[0]
    if name not in COMMANDS:
        top.error(f"unknown command {name!r}; choose from: {', '.join(COMMANDS)}")
    module_name, help_ = COMMANDS[name]
    if os.environ.get("JAX_COORDINATOR_ADDRESS") or os.environ.get("ALIGN_DISTRIBUTED") == "1":
        from align.model.sharding import initialize_distributed  # before any device is touched

        initialize_distributed()
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog=f"align {name}", description=help_)
    module.add_arguments(parser)
    args = parser.parse_args(argv[1:])
    from align.errors import InputError, RunStopped

    try:
        return int(module.run(args) or 0)
    except (InputError, RunStopped) as e:  # not bugs: the message says where, or why it stopped
        if os.environ.get("ALIGN_TRACEBACK") == "1":
            raise
        print(f"align {name}: {'error: ' if isinstance(e, InputError) else ''}{e}", file=sys.stderr)
        return 2 if isinstance(e, InputError) else e.exit_code


if __name__ == "__main__":
    sys.exit(main())
