"""The XLA:CPU defaults `align.setup()` applies (never `import align`), and the behaviour they exist
for (remat saves memory)."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest
from flax import nnx

from align.host_memory import ENV
from align.model import Decoder, ModelConfig
from align.xla_flags import CPU_DEFAULTS, apply_cpu_defaults, with_cpu_defaults

FLAG = "--xla_cpu_enable_concurrency_optimized_scheduler"


def test_defaults_are_appended_and_a_users_choice_wins():
    assert with_cpu_defaults("") == f"{FLAG}=false"
    assert with_cpu_defaults("--xla_force_host_platform_device_count=8") == (
        f"--xla_force_host_platform_device_count=8 {FLAG}=false"
    )
    assert with_cpu_defaults(f"{FLAG}=true --foo=1") == f"{FLAG}=true --foo=1"
    env = {"XLA_FLAGS": "--foo=1"}
    apply_cpu_defaults(env)
    apply_cpu_defaults(env)  # idempotent
    assert env["XLA_FLAGS"].split() == ["--foo=1", *(f"{k}={v}" for k, v in CPU_DEFAULTS.items())]


def test_this_process_runs_with_the_defaults():
    assert f"{FLAG}=" in os.environ["XLA_FLAGS"]  # tests/conftest.py calls align.setup()


def _child_xla_flags(code: str) -> str:
    """XLA_FLAGS as a fresh interpreter leaves it after running `code`, started with XLA_FLAGS=--foo=1."""
    env = {**os.environ, "XLA_FLAGS": "--foo=1", ENV: "0"}
    code += "\nimport os; print(os.environ['XLA_FLAGS'])"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return out.stdout.strip().splitlines()[-1]


def test_importing_align_leaves_xla_flags_alone():
    # align.load pulls in align.hub and with it the model, data and JAX: still no process setting.
    assert _child_xla_flags("import align; align.load; import align.training, pipelines.cli") == "--foo=1"


def test_setup_appends_the_defaults_once():
    code = "import align; align.setup(); r = align.setup(); print(r)"
    assert _child_xla_flags(code) == f"--foo=1 {FLAG}=false"


def test_the_cli_entry_point_runs_setup():
    code = "from pipelines.cli import main; main(['--help'])"
    assert _child_xla_flags(code) == f"--foo=1 {FLAG}=false"


def _grad_temp_bytes(remat: bool) -> int:
    cfg = ModelConfig.tiny().replace(num_layers=4, layer_types=("local", "global") * 2)
    model = nnx.eval_shape(lambda: Decoder(cfg, rngs=nnx.Rngs(0), remat=remat, attn_chunk=None))
    graphdef, state = nnx.split(model)
    B, T = 2, 256
    tokens = jnp.ones((B, T), jnp.int32)
    positions = jnp.broadcast_to(jnp.arange(T), (B, T))

    def loss(state):
        return nnx.merge(graphdef, state).hidden(tokens, positions, jnp.ones((B, T), jnp.int32)).sum()

    return jax.jit(jax.grad(loss)).lower(state).compile().memory_analysis().temp_size_in_bytes


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="an XLA:CPU scheduling property")
def test_remat_shrinks_backward_memory_on_cpu():
    # Under XLA:CPU's default concurrency-optimised scheduler both numbers are equal (remat is undone).
    stored, recomputed = _grad_temp_bytes(False), _grad_temp_bytes(True)
    assert recomputed < 0.6 * stored, (stored, recomputed)
