"""The local data directory: where benchmark and preference files live when there is no hub.

One setting names it, the ALIGN_DATA_DIR environment variable. Unset, it is `shared/data` in the
folder that holds this checkout (`../shared/data` from the repository root), where this project's
machines keep CrowS-Pairs, StereoSet, TruthfulQA, HH-RLHF and the rest. Configs write
`${ALIGN_DATA_DIR}/hh_rlhf/...` (expanded when a config is loaded) and the safety evals' default
sources are paths under it (fixed when safety_evals is imported), so a checkout elsewhere needs one
variable, not an override per path. Hub names and other paths are passed through untouched.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from align.errors import MissingInput

ENV = "ALIGN_DATA_DIR"
PLACEHOLDER = "${" + ENV + "}"

# align/data_dir.py -> parents[1] is the checkout, parents[2] the folder that holds it.
_BESIDE_CHECKOUT = Path(__file__).resolve().parents[2] / "shared" / "data"


def data_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """$ALIGN_DATA_DIR (with ~ expanded) when set and not blank, else ../shared/data beside the checkout."""
    value = environ.get(ENV, "").strip()
    return Path(value).expanduser() if value else _BESIDE_CHECKOUT


def data_path(relative: str, environ: Mapping[str, str] = os.environ) -> str:
    """`relative` under the data directory, as a string (the form sources are passed around in)."""
    return str(data_dir(environ) / relative)


def expand_data_dir(text: str, environ: Mapping[str, str] = os.environ) -> str:
    """`text` with every ${ALIGN_DATA_DIR} replaced by the data directory; other text unchanged."""
    return text.replace(PLACEHOLDER, str(data_dir(environ))) if PLACEHOLDER in text else text


def portable_path(path: str | os.PathLike | None, environ: Mapping[str, str] = os.environ) -> str | None:
    """`path` as a document written on this machine should name it, free of the machine's layout: under
    the data directory it becomes `${ALIGN_DATA_DIR}/...` (what the configs write), under the home
    directory `~/...`; hub names and other paths are returned unchanged. The inverse, for the data
    directory, of expand_data_dir."""
    if path is None:
        return None
    text = os.fspath(path)
    if not os.path.isabs(text):
        return text
    for root, name in ((data_dir(environ), PLACEHOLDER), (Path.home(), "~")):
        try:
            return str(Path(name) / Path(text).resolve().relative_to(root.resolve()))
        except ValueError:
            continue
    return text


def data_dir_hint(path: str | os.PathLike, environ: Mapping[str, str] = os.environ) -> str:
    """For errors about a missing file: how to move the data directory, when `path` lies under it."""
    root = data_dir(environ)
    try:
        Path(path).expanduser().absolute().relative_to(root.absolute())
    except ValueError:
        return ""
    how = f"{ENV}={environ[ENV]}" if environ.get(ENV, "").strip() else f"{ENV} is unset"
    return f"; the data directory is {root} ({how}): set {ENV} to where the data lives"


def missing_data_path(source: str | os.PathLike, environ: Mapping[str, str] = os.environ) -> MissingInput:
    """The error for a local data path that is not there: the path, where a relative one resolved to,
    and data_dir_hint's advice when it lies under the data directory."""
    path = Path(source).expanduser()
    resolved = "" if str(path.absolute()) == str(source) else f" (resolved to {path.absolute()})"
    return MissingInput(f"data path {source} does not exist{resolved}{data_dir_hint(path, environ)}")
