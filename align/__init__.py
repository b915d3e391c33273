"""align: JAX post-training and responsible-AI alignment for Gemma-family models.

Public surface: `align.load` (model + tokenizer from a name, GGUF file, HF directory or hub id) and the
sub-packages `align.model`, `align.data`, `align.sampling`, `align.training`, `align.rl`.
"""

from align.host_memory import keep_host_memory
from align.xla_flags import apply_cpu_defaults

apply_cpu_defaults()  # before anything creates a JAX backend: see align/xla_flags.py
# only with ALIGN_KEEP_HOST_MEMORY=1, before XLA's threads allocate: see align/host_memory.py
keep_host_memory()

from align.hub import Loaded, ModelNotFound, load  # noqa: E402

__all__ = ["Loaded", "ModelNotFound", "load"]
