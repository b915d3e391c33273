"""`align rlhf` with `mesh:`: the stage runs on a (data=2, fsdp=2) mesh, its checkpoint resumes onto the
mesh, and a batch the mesh cannot split is an input error. (That a mesh computes what one device
computes is tests/rl/test_rl_sharding.py's subject; here the stage's wiring is.)"""

import json

import jax
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
    "eval.batch_size=4",  # the rollouts' shape: their compiled programs serve the evaluation too
    "ppo.minibatch_size=4",
    "ppo.ppo_epochs=1",
    "ppo.rollout.sampling.max_new_tokens=4",
    "export=false",
]
MESH = ["mesh.devices=4", "mesh.data=2", "mesh.fsdp=2"]


def _config(out, extra: list[str]) -> RLHFConfig:
    path = CONFIGS / "rlhf" / "tiny_cpu.yaml"
    return load_config(RLHFConfig, path, [f"output_dir={out}", *SMALL, *extra])


def test_rlhf_runs_on_a_mesh_and_resumes_onto_it(tmp_path):
    if not DATA.exists():
        pytest.skip(f"{DATA} (shared benchmark data) is not on this machine")
    run_rlhf(_config(tmp_path, [*MESH, "train.iterations=1"]))
    (tmp_path / "summary.json").unlink()  # as if killed after its first checkpoint
    summary = run_rlhf(_config(tmp_path, MESH))
    assert summary["resumed_from"] == 1 and summary["iterations"] == 2 and summary["optimizer_steps"] == 2
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    assert rows[0]["kl/ref"] == 0.0 and rows[1]["kl/ref"] != 0.0  # the resumed policy is the trained one
    for key in ("eval_before", "eval_after"):
        assert summary[key]["n"] == 3  # three prompts in one batch of four rows
    # the starting policy is scored against the reference it is a copy of: zero KL; no "step" (iterations)
    assert summary["eval_before"] == json.loads((tmp_path / "eval_before.json").read_text())
    assert summary["eval_before"]["kl/ref"] == 0.0 and "step" not in summary["eval_before"]
    gain = summary["reward_gain"]  # paired per prompt: its mean is the difference of the two means
    assert gain["n"] == 3
    assert gain["mean"] == pytest.approx(
        summary["eval_after"]["reward/mean"] - summary["eval_before"]["reward/mean"]
    )
    before = json.loads((tmp_path / "eval_before_samples.json").read_text())
    pairs = [json.loads(line) for line in (tmp_path / "eval_samples.jsonl").read_text().splitlines()]
    assert [p["reward_before"] for p in pairs] == [s["reward"] for s in before]  # eval.samples=4 > 3 prompts
    # config.yaml is the config completed from the tokenizer: its stop ids and the schedule's length
    written = load_config(RLHFConfig, tmp_path / "config.yaml")
    assert written.ppo.rollout.sampling.stop_ids and written.optim.total_steps == 2


def test_rows_the_mesh_cannot_split_are_an_input_error(tmp_path):
    mesh = make_mesh(MeshConfig(data=2, fsdp=2), jax.devices()[:4])
    config = _config(tmp_path, ["train.batch_size=6", "ppo.minibatch_size=2"])
    with pytest.raises(InvalidInput, match=r"train.batch_size = 6 rows do not split over .* = 4 devices"):
        check_mesh_fits(config, mesh)
    grpo = _config(
        tmp_path, ["algorithm=grpo", "train.batch_size=2", "grpo.group_size=2", "grpo.minibatch_size=4"]
    )
    check_mesh_fits(grpo, mesh)  # 2 prompts x 2 samples = 4 rows: fits
