"""Test session setup: CPU only, 8 fake devices for sharding tests, fast XLA compiles (tests/xla.py) with
one compilation cache, float32 matmuls."""

import os
import shutil
import tempfile

from tests.xla import FAST_COMPILE

os.environ.setdefault("XLA_FLAGS", f"--xla_force_host_platform_device_count=8 {FAST_COMPILE}")
# One persistent compilation cache per test session, shared by the xdist workers (they inherit the
# controller's environment) and every process a test starts (the CLI, the multi-process launches): a
# program one test compiled, the next loads. Removed at the end of the session that made it.
_OWN_JAX_CACHE = None
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _OWN_JAX_CACHE = os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="align-tests-jax-")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import align  # noqa: E402

# What the `align` command line does first: the XLA:CPU defaults (and, when asked for, the malloc
# settings), before any test creates a JAX backend, so tests run as the CLI does.
align.setup()

import jax  # noqa: E402

# Parity tests compare float32 numbers: make XLA's CPU matmuls exact float32 too.
jax.config.update("jax_default_matmul_precision", "highest")


def pytest_unconfigure(config):
    if _OWN_JAX_CACHE is not None:
        shutil.rmtree(_OWN_JAX_CACHE, ignore_errors=True)
