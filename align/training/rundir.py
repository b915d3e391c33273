"""A run directory's small JSON files, and the rule that makes every training run resumable stage-wise.

Each run (SFT, reward model, DPO, RLHF) writes summary.json last, atomically; while it is absent the
run resumes from its checkpoints, once it exists a re-run returns it instead of training again (which
is what lets `align pipeline` continue where a crash stopped).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from align.fileio import write_text_atomic

SUMMARY = "summary.json"


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write `obj` as indented JSON, atomically (align.fileio: temp file, fsync, rename)."""
    write_text_atomic(path, json.dumps(obj, indent=2))


def read_json(path: str | os.PathLike) -> Any:
    """The parsed file, or None when it does not exist."""
    path = Path(path)
    return json.loads(path.read_text()) if path.exists() else None


def finished_summary(out: str | os.PathLike, log: logging.Logger) -> dict | None:
    """The summary of a finished run in `out` (logged as such), or None when the run is not done."""
    summary = read_json(Path(out) / SUMMARY)
    if summary is not None:
        log.info("%s is finished (%s exists): nothing to do", out, SUMMARY)
    return summary
