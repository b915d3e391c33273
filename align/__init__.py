"""align: JAX post-training and responsible-AI alignment for Gemma-family models.

Public surface: `align.load` (model + tokenizer from a model spec: embedded name, `preset:NAME`, GGUF
file, HF directory or hub id; the grammar is in align/hub.py), `align.load_model` (the same with a
config's `ModelOptions`: dtypes, remat, attention kernel), `align.setup` (process settings, called by
entry points) and the sub-packages `align.model`, `align.data`, `align.sampling`, `align.training`,
`align.rl`.

Importing `align` changes nothing in the process; `align.setup()` is the one place that does.
"""

from __future__ import annotations

__all__ = ["Loaded", "ModelNotFound", "ModelOptions", "load", "load_model", "setup"]


def setup() -> dict[str, object]:
    """Apply align's process-wide settings; call it first thing in an entry point, before JAX runs.

    - XLA:CPU defaults appended to the XLA_FLAGS environment variable, unless it already names them
      (align/xla_flags.py says which and why). XLA reads XLA_FLAGS once, when JAX creates its first
      backend, so a call after that reaches only subprocesses (and warns).
    - glibc malloc settings that keep freed host memory in the process, only when the environment sets
      ALIGN_KEEP_HOST_MEMORY=1 (align/host_memory.py). They reach only threads that have not allocated
      yet, which is another reason to call this before JAX starts its thread pools.

    Idempotent: a second call leaves XLA_FLAGS as the first left it. The `align` command line calls it
    in `pipelines.cli.main`; a script or notebook that wants the same behaviour calls it itself.
    Returns what it did: {"XLA_FLAGS": the resulting value, "keep_host_memory": bool}.
    """
    import os
    import sys

    from align.host_memory import keep_host_memory
    from align.xla_flags import apply_cpu_defaults

    before = os.environ.get("XLA_FLAGS")
    apply_cpu_defaults()
    if os.environ["XLA_FLAGS"] != before and "jax" in sys.modules and _jax_backend_exists():
        import warnings

        warnings.warn(
            "align.setup() ran after JAX created a backend: XLA reads XLA_FLAGS only once, so its "
            "XLA:CPU defaults reach subprocesses but not this process; call it before running JAX",
            stacklevel=2,
        )
    return {"XLA_FLAGS": os.environ["XLA_FLAGS"], "keep_host_memory": keep_host_memory()}


def _jax_backend_exists() -> bool:
    try:  # a private helper: if a JAX release drops it, setup only loses its warning
        from jax._src.xla_bridge import backends_are_initialized
    except ImportError:
        return False
    return bool(backends_are_initialized())


def __getattr__(name: str):
    # Imported on first use: `align.hub` pulls in JAX (seconds), which modules that only need a
    # light piece of align (align.errors for the gate, dashboard and config reader) never pay for.
    if name in ("Loaded", "ModelNotFound", "ModelOptions", "load", "load_model"):
        from align import hub

        return getattr(hub, name)
    raise AttributeError(f"module 'align' has no attribute {name!r}")
