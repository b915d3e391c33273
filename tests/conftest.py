"""Test session setup: CPU only, 8 fake devices for sharding tests, float32 matmuls."""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
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
