"""Short human names for the models in results documents, for headers, plot rows and summaries.

`align eval --model` records what it was given, so a pipeline's documents name their models by the
export directory (`runs/quickstart/rl/export`) and carry no step. The reader sees the stage that made
the model (`rl`) instead of a path, and a step only when one was recorded (never "step ?").
"""

from __future__ import annotations

from pathlib import PurePosixPath

# directory names that say nothing about which model it is
_GENERIC = {"export", "hf", "model", "checkpoint", "final", ""}


def display_name(name: str) -> str:
    """`runs/q/rl/export` -> `rl`, `/m/gemma.gguf` -> `gemma.gguf`; embedded names and hub ids
    (`gemma3-270m`, `google/gemma-3-270m`) unchanged."""
    text = name.replace("\\", "/").rstrip("/")
    parts = [p for p in PurePosixPath(text).parts if p != "/"]
    is_path = text.startswith(("/", ".", "~", "$")) or len(parts) > 2 or text.endswith("/export")
    if not is_path:
        return name
    meaningful = [p for p in parts if p.lower() not in _GENERIC]
    return meaningful[-1] if meaningful else name


def run_label(name: str, variant: str | None, step: int | None, *, with_name: bool = True) -> str:
    """`rl · chat · step 40`: the parts that are known, the model's display name first."""
    parts = [display_name(name)] if with_name else []
    parts += [variant] if variant else []
    parts += [f"step {step}"] if step is not None else []
    return " · ".join(parts) or display_name(name)
