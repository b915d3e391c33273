"""One process of a multi-process test: `align` commands in sequence, as `align` runs them, with a record
of every file it writes under a watched directory.

    python -m tests.multihost.worker REPORT_DIR WATCHED_DIR -- sft --config c.yaml :: eval --model ...

The process joins its peers through the JAX_* variables the harness sets (pipelines.cli.main calls
align.distributed.initialize), runs each command (`::` separates them; `-m MODULE ARGS...` calls
MODULE.main(*ARGS) in this process, a test step that is no `align` command) and writes
REPORT_DIR/process-<i>-<pid>.json: {"exit_codes": [...], "writes": [paths relative to WATCHED_DIR]}. Files
under checkpoints/ are left out of "writes": Orbax writes its shards from every process by design.

ALIGN_TEST_KILL_AT_CHECKPOINT=STEP with ALIGN_TEST_KILL_PROCESS=I: process I SIGKILLs itself once its
checkpoint of STEP is saved, its report written first (the harness then kills the others: a host
lost mid-run).
"""

from __future__ import annotations

import faulthandler
import importlib
import json
import os
import signal
import sys
from pathlib import Path

WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


def watch_writes(root: Path) -> list[str]:
    """Paths under `root` this process opens for writing, renames or replaces (a live list)."""
    root_s, seen = str(root.resolve()), []

    def note(path) -> None:
        if isinstance(path, (str, os.PathLike)):
            p = os.path.realpath(os.fspath(path))
            if p.startswith(root_s + os.sep):
                rel = os.path.relpath(p, root_s)
                if not rel.startswith("checkpoints" + os.sep) and "/checkpoints/" not in f"/{rel}":
                    seen.append(rel)

    def hook(event: str, args: tuple) -> None:
        if event == "open" and len(args) >= 3:
            path, mode, flags = args[:3]
            writing = (
                any(c in mode for c in "wax+") if isinstance(mode, str) else bool((flags or 0) & WRITE_FLAGS)
            )
            if writing:
                note(path)
        elif event in ("os.rename", "os.replace", "os.remove", "os.unlink"):
            note(args[0])
            if event in ("os.rename", "os.replace"):
                note(args[1])

    sys.addaudithook(hook)
    return seen


def kill_at_checkpoint(step: int, before_dying) -> None:
    """SIGKILL this process right after its checkpoint of `step` has been saved (`before_dying()` first)."""
    from align.training.checkpoint import Checkpointer

    save = Checkpointer.save

    def save_then_die(self, state, **kwargs):
        saved = save(self, state, **kwargs)
        self.wait()
        if int(state.step) == step:
            before_dying()
            os.kill(os.getpid(), signal.SIGKILL)
        return saved

    Checkpointer.save = save_then_die


def split_commands(args: list[str]) -> list[list[str]]:
    commands, current = [], []
    for arg in args + ["::"]:
        if arg == "::":
            commands.append(current)
            current = []
        else:
            current.append(arg)
    return commands


def main(argv: list[str]) -> int:
    report_dir, watched, _, *rest = argv
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # the harness asks for stacks of a hung run
    writes = watch_writes(Path(watched))
    index = int(os.environ.get("JAX_PROCESS_ID", "0"))
    codes: list[int] = []

    def write_report() -> None:  # one file per process and launch: a restarted run adds its own
        report = {"exit_codes": codes, "writes": sorted(set(writes))}
        Path(report_dir, f"process-{index}-{os.getpid()}.json").write_text(json.dumps(report))

    kill_at = os.environ.get("ALIGN_TEST_KILL_AT_CHECKPOINT")
    if kill_at and index == int(os.environ["ALIGN_TEST_KILL_PROCESS"]):
        kill_at_checkpoint(int(kill_at), write_report)
    from pipelines import cli

    for command in split_commands(rest):
        if command[0] == "-m":  # a test step: raises on failure
            importlib.import_module(command[1]).main(*command[2:])
            codes.append(0)
        else:
            codes.append(cli.main(command))
        if codes[-1]:
            break
    write_report()
    return max(codes)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
