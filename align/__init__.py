"""align: JAX post-training and responsible-AI alignment for Gemma-family models.

Public surface: `align.load` (model + tokenizer from a name, GGUF file, HF directory or hub id) and the
sub-packages `align.model`, `align.data`, `align.sampling`, `align.training`, `align.rl`.
"""

from align.host_memory import keep_host_memory
from align.xla_flags import apply_cpu_defaults

apply_cpu_defaults()  # before anything creates a JAX backend: see align/xla_flags.py
# only with ALIGN_KEEP_HOST_MEMORY=1, before XLA's threads allocate: see align/host_memory.py
keep_host_memory()

__all__ = ["Loaded", "ModelNotFound", "load"]


def __getattr__(name: str):
    # Imported on first use: `align.hub` pulls in JAX (seconds), which modules that only need a
    # light piece of align (align.errors for the gate, dashboard and config reader) never pay for.
    if name in __all__:
        from align import hub

        return getattr(hub, name)
    raise AttributeError(f"module 'align' has no attribute {name!r}")
