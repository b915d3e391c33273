"""Distillation on a (data=2, fsdp=2) mesh of fake CPU devices equals the one-device run.

Teacher and student share one train state (the teacher in its frozen part), so both shard by the
rules table on the same mesh; on-policy steps sample the student's responses row-parallel. The
sampled tokens do not depend on the sharding, so losses and weights agree up to summation order.
"""

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from align.model.sharding import MeshConfig, batch_sharding, make_mesh
from align.rl.distill import (
    Distiller,
    DistillLoss,
    OnPolicy,
    distill_loss_fn,
    is_on_policy,
    student_from_teacher,
    student_only,
    with_on_policy,
)
from align.training import OptimConfig, create_train_state, make_optimizer, make_train_step
from align.training.state import shard_train_state, train_state_shardings
from tests.rl.test_distill import _batch, _teacher

SEED = 2  # steps 0, 1, 2: on-policy, off-policy, off-policy
ON_POLICY = OnPolicy(fraction=0.5, max_new_tokens=4, temperature=1.0, stop_ids=(), pad_id=0)


def _run(mesh, vocab_chunk=16):
    """(per-step metrics, student params as numpy, final state) of three steps."""
    teacher = _teacher(4)
    pair = Distiller(student_from_teacher(teacher, [0, 2]), teacher)
    # Adam's eps above the rounding noise of the smallest gradients (see tests/rl/test_rl_sharding.py)
    optimizer = make_optimizer(OptimConfig(learning_rate=1e-2, total_steps=3, warmup_steps=0, eps=1e-2))
    state = create_train_state(pair, optimizer, trainable=student_only("all"), seed=SEED)
    shardings = None
    if mesh is not None:
        state = shard_train_state(state, mesh)
        shardings = (train_state_shardings(state, mesh), batch_sharding(mesh, 1))
    loss = DistillLoss(beta=0.5, chunk_size=8, vocab_chunk=vocab_chunk)
    step = make_train_step(distill_loss_fn(loss), optimizer, shardings=shardings)
    step = with_on_policy(step, ON_POLICY, SEED, mesh=mesh)
    logs = []
    for _ in range(3):
        state, metrics = step(state, _batch(rows=4))
        logs.append({k: float(v) for k, v in jax.device_get(metrics).items()})
    return logs, jax.tree.map(np.asarray, state.params), state


@pytest.mark.parametrize("vocab_chunk", [16, None])  # None: the fused loss
def test_distillation_on_a_mesh_equals_one_device(vocab_chunk):
    assert [is_on_policy(SEED, k, ON_POLICY.fraction) for k in range(3)] == [True, False, False]
    mesh = make_mesh(MeshConfig(data=2, fsdp=2), jax.devices()[:4])
    logs, params, state = _run(mesh, vocab_chunk)
    logs1, params1, _ = _run(None, vocab_chunk)
    for row, row1 in zip(logs, logs1, strict=True):
        for k in row1:
            assert row[k] == pytest.approx(row1[k], rel=1e-5, abs=1e-6), k
    diffs = jax.tree.leaves(jax.tree.map(lambda a, b: float(np.max(np.abs(a - b))), params, params1))
    assert max(diffs) < 1e-6
    assert logs[0]["loss"] > 0 and logs[1]["loss"] > 0
    # teacher (frozen) and student (trained) shard by the same table on the same four devices
    for part, tree in (("teacher", state.frozen), ("student", state.params)):
        q = tree[part]["layers"][1]["attn"]["q"][...]
        assert q.sharding.spec == P("fsdp", "tensor", None), part
        assert len(q.sharding.device_set) == 4 and q.addressable_shards[0].data.shape == (32, 4, 16)
