"""Errors in what a user gave (a config, a data file, a model name, a policy), as opposed to bugs.

Their messages already say where the problem is (file, line, field), so the `align` command line
prints such an error as one line and exits 2; any other exception is a bug and keeps its traceback.
Subclasses keep the builtin bases callers catch (ValueError, FileNotFoundError).
"""

from __future__ import annotations


class InputError(Exception):
    """Marker base: the input is wrong, and the message says where."""


class InvalidInput(InputError, ValueError):
    """A value in a config, data file, policy or results file is malformed or out of range."""


class MissingInput(InputError, FileNotFoundError):
    """A named file, directory, split or model does not exist."""
