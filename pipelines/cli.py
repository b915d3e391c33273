"""The `align` command line: one explicit table of sub-commands, each imported only when it runs.

Every command module exposes `add_arguments(parser)` and `run(args) -> int` (the exit code), so
`align --help` lists everything without importing JAX. `main` first calls `align.setup()` (process
settings: XLA flags, malloc), before any command can create a JAX backend.

This is the one place that prints errors and picks exit codes; commands raise. `user_error` says which
exceptions are not bugs:
- `align.errors.InputError` (a bad config, data file or model name; the message names the file, line
  and field): exit code 2;
- `align.errors.RunStopped` (preemption, a non-finite loss, a checkpoint the disk refused): its exit code;
- the builtin errors a user's path or file causes where a command did not convert them: an OSError
  naming a file (missing, unreadable, a directory, a missing output directory), a file that is not
  UTF-8 text or not gzip: exit code 2, one line naming the file (exit code 1 for a full disk or quota,
  which is not bad input).
Each is printed as one line; ALIGN_TRACEBACK=1 raises it instead. Any other exception is a bug and keeps
its traceback (so does an OSError naming a file inside align's own packages or its environment).
"""

from __future__ import annotations

import argparse
import errno
import gzip
import importlib
import io
import os
import sys
import sysconfig
import zlib
from pathlib import Path

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "generate": ("pipelines.commands.generate", "sample from a model (GGUF file, HF dir, preset name)"),
    "convert": (
        "pipelines.commands.convert",
        "convert a GGUF / HF checkpoint to a HF safetensors directory or a (quantized) GGUF file",
    ),
    "sft": ("pipelines.stages.sft", "supervised fine-tuning from a YAML config"),
    "rm": ("pipelines.stages.rm", "train a Bradley-Terry reward model from a YAML config"),
    "rlhf": ("pipelines.stages.rlhf", "RLHF (PPO or GRPO) from a YAML config"),
    "dpo": ("pipelines.stages.dpo", "direct preference optimisation from a YAML config"),
    "distill": ("pipelines.stages.distill", "distil a smaller student from a frozen teacher (KL / GKD)"),
    "pipeline": ("pipelines.pipeline", "SFT -> RM -> PPO -> evals before/after -> release gate -> variants"),
    "eval": ("safety_evals.cli", "run safety eval suites on a model and write results JSON"),
    "dashboard": (
        "safety_evals.review.dashboard",
        "render results JSON / history into one self-contained HTML",
    ),
    "gate": ("safety_evals.review.gate", "turn results JSON into a CI verdict under a release policy"),
    "compare": ("safety_evals.review.compare", "results JSON files beside a base: values and paired changes"),
    "results": ("safety_evals.review.history", "add / list runs in the local SQLite results history"),
    "convert-results": (
        "pipelines.commands.convert_results",
        "rewrite results JSON in lm-eval's results layout",
    ),
    "lm-eval": (
        "pipelines.commands.lm_eval",
        "lm-evaluation-harness's CLI with the align model (--model align)",
    ),
    "judges": ("pipelines.commands.judges", "build a shipped judge (head + card) from human labels"),
    "push": ("pipelines.commands.push", "upload an exported model directory to the Hugging Face Hub"),
}


# Shown under every command's --help: what the exit status means and the variables align reads.
EXIT_CODES = """exit codes:
  0    done
  1    not all done: training stopped early (e.g. a non-finite loss, or a checkpoint the disk refused:
       free space; rerun the same command to resume from the last complete checkpoint),
       an eval suite failed (`align eval`), or the verdict is FAIL (`align gate`, or the release gate
       of a variant in `align pipeline`)
  2    bad input: one line on stderr naming the file, line and field (ALIGN_TRACEBACK=1 for a traceback)
  143  stopped by SIGTERM after saving (preempted); rerun to resume
  other exceptions are bugs and print their traceback"""
ENVIRONMENT = """environment:
  ALIGN_DATA_DIR           where configs and eval suites find their data (default: shared/data beside
                           the checkout)
  ALIGN_CACHE_DIR          converted embedded models (default: ~/.cache/align)
  ALIGN_TRACEBACK=1        raise input errors with their traceback instead of one line
  ALIGN_KEEP_HOST_MEMORY=1 keep freed host memory in the process (faster CPU steps, higher peak RSS)
  XLA_FLAGS                XLA options; align adds its CPU defaults unless the flag is already named
  JAX_COORDINATOR_ADDRESS  or ALIGN_DISTRIBUTED=1: initialise multi-host JAX before the command runs"""


def _top_parser() -> argparse.ArgumentParser:
    lines = [f"  {name:<10} {help_}" for name, (_, help_) in COMMANDS.items()]
    return argparse.ArgumentParser(
        prog="align",
        description="JAX post-training and safety evaluation for Gemma-family models.",
        epilog="commands:\n"
        + "\n".join(lines)
        + f"\n\nRun `align COMMAND --help` for a command's options.\n\n{EXIT_CODES}\n\n{ENVIRONMENT}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        usage="align [-h] COMMAND [options]",
    )


def main(argv: list[str] | None = None) -> int:
    import align

    align.setup()  # first: XLA reads its flags when a backend is created, and malloc settings must
    # precede the threads that allocate
    argv = list(sys.argv[1:] if argv is None else argv)
    top = _top_parser()
    if not argv or argv[0] in ("-h", "--help"):
        top.print_help()
        return 0
    name = argv[0]
    if name not in COMMANDS:
        top.error(f"unknown command {name!r}; choose from: {', '.join(COMMANDS)}")
    module_name, help_ = COMMANDS[name]
    if os.environ.get("JAX_COORDINATOR_ADDRESS") or os.environ.get("ALIGN_DISTRIBUTED"):
        from align import distributed  # before any device is touched (docs/multihost.md)

        distributed.initialize()
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(
        prog=f"align {name}",
        description=help_,
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    module.add_arguments(parser)
    args = parser.parse_args(argv[1:])
    try:
        return int(module.run(args) or 0)
    except Exception as e:
        reported = user_error(e)
        if reported is None or os.environ.get("ALIGN_TRACEBACK") == "1":
            raise
        message, code = reported
        print(f"align {name}: {message}", file=sys.stderr)
        return code


def user_error(e: BaseException) -> tuple[str, int] | None:
    """(one line, exit code) for an exception that is not a bug; None for a bug."""
    from align.errors import InputError, RunStopped

    if isinstance(e, InputError):
        return f"error: {_one_line(e)}", 2
    if isinstance(e, RunStopped):
        return _one_line(e), e.exit_code
    if isinstance(e, (gzip.BadGzipFile, zlib.error, UnicodeDecodeError)):
        path = _file_being_read(e)
        if path is None or not _is_user_path(path):
            return None
        what = f"not UTF-8 text ({e.reason} at byte {e.start})" if isinstance(e, UnicodeDecodeError) else None
        return f"error: {path}: {what or f'not a readable gzip file ({e})'}", 2
    if isinstance(e, OSError) and e.filename is not None and _is_user_path(e.filename):
        parent = Path(os.fsdecode(e.filename)).parent
        if isinstance(e, FileNotFoundError) and not parent.is_dir():
            return f"error: {e.filename}: directory {parent} does not exist", 2
        # A full disk is not bad input: the run is not all done (1), and a rerun after freeing space resumes
        code = 1 if e.errno in (errno.ENOSPC, errno.EDQUOT) else 2
        return f"error: {e.filename}: {e.strerror or e}", code
    return None


def _one_line(e: BaseException) -> str:
    """The message on one line, safe in a CI log: an error can quote text from the file under review
    (a suite's error, a metric name), which must not forge a verdict line or a workflow command."""
    from align.safe_text import one_line

    return one_line(" ".join(str(e).split("\n")))


def _file_being_read(e: BaseException) -> str | None:
    """The name of the innermost open file in the frames `e` passed through (a decode error does not
    carry it; the reader that called read() holds the file object). Streams such as <stderr> are not
    files."""
    tb, found = e.__traceback__, None
    while tb is not None:
        for value in tb.tb_frame.f_locals.values():
            name = getattr(value, "name", None) if isinstance(value, io.IOBase) else None
            if isinstance(name, (str, os.PathLike)) and not os.fspath(name).startswith("<"):
                found = os.fspath(name)
        tb = tb.tb_next
    return found


# Files of align's own packages, of installed libraries and of Python itself: an error there is a bug
# (or a broken install), not a user's file.
_OWN = [
    Path(__file__).resolve().parents[1] / p for p in ("align", "pipelines", "safety_evals", "reward_models")
]
_OWN += [Path(sysconfig.get_paths()[key]).resolve() for key in ("stdlib", "purelib", "platlib")]


def _is_user_path(filename) -> bool:
    path = Path(os.fsdecode(filename)).resolve()
    return not any(path.is_relative_to(own) for own in _OWN)


if __name__ == "__main__":
    sys.exit(main())
