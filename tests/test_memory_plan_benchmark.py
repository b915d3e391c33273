"""benchmarks/memory_plan.py: the per-device bytes it reads from XLA split as the mesh says they must."""

import json
import math
import os
import subprocess
import sys

import jax
import pytest
from flax import nnx

from align.model import Decoder, ModelConfig
from tests.scripts import ROOT, load_script

mp = load_script("benchmarks/memory_plan.py")

# Compiles of the tiny SFT step on fsdp=4, batch 4 then 8, and on data=4, batch 8, in one fresh process:
# the script must set XLA_FLAGS (4 fake devices) itself, before JAX starts.
_RUN = """
import sys
sys.path.insert(0, {bench!r})
import memory_plan
for b in (4, 8):
    memory_plan.main(["--preset", "tiny", "--mesh", "fsdp=4", "--steps", "train", "--batch", str(b),
                      "--seq", "32", "--loss-chunk", "32", "--json", f"{{sys.argv[1]}}/b{{b}}.json"])
memory_plan.main(["--preset", "tiny", "--mesh", "data=4", "--steps", "train", "--batch", "8",
                  "--seq", "32", "--loss-chunk", "32", "--json", f"{{sys.argv[1]}}/data.json"])
"""


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    out = tmp_path_factory.mktemp("plan")
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    code = _RUN.format(bench=str(ROOT / "benchmarks"))
    subprocess.run([sys.executable, "-c", code, str(out)], check=True, env=env, cwd=ROOT, timeout=300)
    return [json.loads((out / f"{name}.json").read_text())[0] for name in ("b4", "b8", "data")]


def _param_bytes():
    """(all parameter bytes, bytes of the 1-D ones: norm scales, which the rules replicate)."""
    abstract = nnx.eval_shape(lambda: Decoder(ModelConfig.tiny(), rngs=nnx.Rngs(0)))
    leaves = jax.tree.leaves(nnx.state(abstract, nnx.Param))
    nbytes = [math.prod(x.shape) * 4 for x in leaves]
    return sum(nbytes), sum(n for n, x in zip(nbytes, leaves) if len(x.shape) == 1)


def test_params_split_over_fsdp_and_adam_holds_two_moments(rows):
    small = rows[0]
    total, replicated = _param_bytes()
    # Every matrix has the model dim, split 4 ways; the norm scales are whole on every device.
    assert small["params"] == (total - replicated) // 4 + replicated
    assert 2 * small["params"] <= small["optimizer"] <= 2 * small["params"] + 16  # + Adam's step counts
    # XLA's own argument count is exactly our attribution: params, moments, a quarter of the batch's rows
    # (4 int32 arrays + 1 float32, [4, 32]), the step counter and the rng key.
    assert small["argument"] == small["params"] + small["optimizer"] + 4 * 32 * 5 * 4 // 4 + 4 + 8
    assert small["total"] == small["argument"] + small["output"] + small["temp"]


def test_twice_the_batch_needs_more_temporaries_not_more_state(rows):
    small, big, _ = rows
    assert (big["params"], big["optimizer"]) == (small["params"], small["optimizer"])
    assert big["temp"] > small["temp"]


def test_fsdp_temporaries_no_larger_than_pure_data_parallel(rows):
    # Same 8 rows, 2 per device on both meshes. The decoder's activation constraints keep the residual
    # stream split by rows under fsdp; without them the partitioner split the matmuls over the model dim
    # and gathered whole-batch activations: fsdp=4 needed 2193112 temp bytes against data=4's 1567328.
    _, fsdp, data = rows
    assert (fsdp["mesh"], data["mesh"]) == ("fsdp=4", "data=4")
    assert fsdp["temp"] < data["temp"]
    assert fsdp["params"] < data["params"]  # and the weights are the ones split, not replicated


def test_mesh_grammar_and_bad_input():
    assert mp.mesh_shape("fsdp=8") == (1, 8, 1)
    assert mp.mesh_shape("data=2,fsdp=2,tensor=2") == mp.mesh_shape("2x2x2") == (2, 2, 2)
    for bad in ("fsdp=0", "pipe=2", "2x2", "eight"):
        with pytest.raises(Exception, match="mesh"):
            mp.mesh_shape(bad)
    for argv in (["--steps", "train,dpo"], ["--preset", "gemma9"], ["--mesh", "fsdp=3", "--batch", "8"]):
        with pytest.raises(SystemExit) as e:
            mp.parse_args(argv)
        assert e.value.code == 2
