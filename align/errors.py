"""Errors that are not bugs: bad input (a config, a data file, a model name, a policy) and runs that
stopped early for a reason they can name (preemption, a non-finite loss, a checkpoint the disk
refused).

Their messages say where and why, so the `align` command line prints them as one line: exit code 2
for an InputError, RunStopped.exit_code for a stopped run. Any other exception is a bug and keeps its
traceback. Subclasses keep the builtin bases callers catch (ValueError, FileNotFoundError, ...).
"""

from __future__ import annotations


class InputError(Exception):
    """Marker base: the input is wrong, and the message says where."""


class InvalidInput(InputError, ValueError):
    """A value in a config, data file, policy or results file is malformed or out of range."""


class MissingInput(InputError, FileNotFoundError):
    """A named file, directory, split or model does not exist."""


def stop_exit_code(reason: str | None) -> int:
    """The exit code of a run that stopped early: 143 after SIGTERM (what a scheduler expects from a
    job it preempted), else 1."""
    return 143 if reason == "sigterm" else 1


class RunStopped(Exception):
    """A run stopped early; the message says why and how to resume (a rerun continues from the last
    checkpoint). `exit_code`: stop_exit_code of the reason."""

    exit_code = 1
