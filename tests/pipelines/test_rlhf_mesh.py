"""`align rlhf` with `mesh:`: the stage on a (data=2, fsdp=2) mesh logs what the one-device run logs,
its checkpoint resumes onto the mesh, and a batch the mesh cannot split is an input error."""

import json

import jax
import numpy as np
import pytest

from align.config_io import load_config
from align.errors import InvalidInput
from align.model.sharding import MeshConfig, make_mesh
from pipelines.stages.rlhf import RLHFConfig, check_mesh_fits, run_rlhf
from tests.paths import CONFIGS
from tests.paths import DATA as SHARED

DATA = SHARED / "hh_rlhf/helpful-base/test.jsonl.gz"
SMALL = [
    "data.limit=24",
    "train.iterations=2",
    "train.batch_size=4",
    "train.checkpoint_every=1",
    "train.progress=false",
    "train.async_checkpoints=false",
    "eval.prompts=3",
    "eval.batch_size=3",  # three rows do not split over four devices: replicated, not refused
    "ppo.minibatch_size=4",
    "ppo.ppo_epochs=1",
    "ppo.rollout.sampling.max_new_tokens=4",
    "optim.eps=1e-2",  # see tests/rl/test_rl_sharding.py: Adam's eps above the rounding noise
    "export=false",
]
UNCOMPARED = ("iteration_seconds", "rollout/seconds", "rollout/tokens_per_s", "value_clip_frac")


def _metrics(out) -> list[dict]:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in UNCOMPARED} for r in rows]


def _config(out, mesh: list[str]) -> RLHFConfig:
    path = CONFIGS / "rlhf" / "tiny_cpu.yaml"
    return load_config(RLHFConfig, path, [f"output_dir={out}", *SMALL, *mesh])


def test_rlhf_on_a_mesh_logs_what_one_device_logs_and_resumes(tmp_path):
    if not DATA.exists():
        pytest.skip(f"{DATA} (shared benchmark data) is not on this machine")
    one = run_rlhf(_config(tmp_path / "one", ["mesh.devices=1"]))
    mesh = ["mesh.devices=4", "mesh.data=2", "mesh.fsdp=2"]
    stopped = _config(tmp_path / "mesh", [*mesh, "train.iterations=1"])
    run_rlhf(stopped)
    (tmp_path / "mesh" / "summary.json").unlink()  # as if killed after its first checkpoint
    sharded = run_rlhf(_config(tmp_path / "mesh", mesh))
    assert sharded["resumed_from"] == 1 and one["iterations"] == sharded["iterations"] == 2
    got, want = _metrics(tmp_path / "mesh"), _metrics(tmp_path / "one")
    assert [r["step"] for r in got] == [r["step"] for r in want] == [1, 2]
    for row, row1 in zip(got, want):
        for k in row1:
            assert row[k] == pytest.approx(row1[k], rel=1e-5, abs=1e-5), (row["step"], k)
    for key in ("eval_before", "eval_after"):
        assert sharded[key]["reward/mean"] == pytest.approx(one[key]["reward/mean"], abs=1e-6)
        assert sharded[key]["kl/ref"] == pytest.approx(one[key]["kl/ref"], abs=1e-5)


def test_rows_the_mesh_cannot_split_are_an_input_error(tmp_path):
    mesh = make_mesh(MeshConfig(data=2, fsdp=2), jax.devices()[:4])
    config = _config(tmp_path, ["train.batch_size=6", "ppo.minibatch_size=2"])
    with pytest.raises(InvalidInput, match=r"train.batch_size = 6 rows do not split over .* = 4 devices"):
        check_mesh_fits(config, mesh)
    grpo = _config(
        tmp_path, ["algorithm=grpo", "train.batch_size=2", "grpo.group_size=2", "grpo.minibatch_size=4"]
    )
    check_mesh_fits(grpo, mesh)  # 2 prompts x 2 samples = 4 rows: fits
    assert np.prod(list(mesh.shape.values())) == 4
