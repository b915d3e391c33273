"""Text from a results document or a policy, made safe to print on one line of a CI log.

A suite's error message, a metric name or a run id is written by whoever wrote the file under
review. Printed raw, a newline followed by `align gate: PASS` forges a verdict line, and a line that
starts with `::` (GitHub Actions) or holds `##vso[` (Azure Pipelines) is a workflow command (set an
output, add a path, mask or unmask text). So every control character (newlines included, also the
Unicode line separators and the bidirectional overrides that reorder what a reader sees) is escaped
as `\\xNN` / `\\uNNNN`, and the two command prefixes get a backslash that breaks them.
"""

from __future__ import annotations

import re
import unicodedata

_COMMANDS = re.compile(r"::|##vso\[", re.IGNORECASE)


def _escape(ch: str) -> str:
    if ch in "\t":
        return " "
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def one_line(text: object) -> str:
    """`text` as one printable line: control and format characters escaped, CI commands defanged."""
    s = str(text)
    out = "".join(_escape(c) if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") else c for c in s)
    return _COMMANDS.sub(lambda m: m.group(0)[0] + "\\" + m.group(0)[1:], out)
