"""PPO and GRPO on a (data=2, fsdp=2) mesh of fake CPU devices equal the same run on one device.

Policy, critic, reference and reward model are sharded by the rules table (align.model.sharding);
prompts, rollouts and minibatches split their rows over data x fsdp. Sampling draws the same tokens
(the random bits do not depend on the sharding), so every logged metric and every weight after the
updates must agree up to float32 summation order. Each jitted program compiles once.
"""

import jax
import numpy as np
import pytest
from flax import nnx
from jax.sharding import PartitionSpec as P

import align.rl.grpo as grpo_module
import align.rl.ppo as ppo_module
from align.data import DataOrder, batches, prompt_batch
from align.model import Decoder, ModelConfig
from align.model.heads import ScoreModel
from align.model.sharding import MeshConfig, make_mesh, shard_model
from align.rl import rollout as rollout_module
from align.rl.grpo import GRPOConfig
from align.rl.loop import RLLoopConfig, owned_train_state, resume, rl_loop, rl_shardings
from align.rl.ppo import PolicyAndValue, PPOConfig
from align.rl.reward_model import ScoreModelReward
from align.rl.rewards import TokenFraction
from align.rl.rollout import RolloutConfig
from align.sampling import SamplingConfig, compiled_count
from align.training import Checkpointer, OptimConfig, make_optimizer

V = 32
TARGET = 20
ROLLOUT = RolloutConfig(SamplingConfig(max_new_tokens=6, temperature=1.0), logprob_chunk=64)
PPO = PPOConfig(rollout=ROLLOUT, ppo_epochs=1, minibatch_size=4, kl_coef=0.05, vf_coef=0.5)
GRPO = GRPOConfig(rollout=ROLLOUT, group_size=2, num_iterations=1, minibatch_size=4, beta=0.04)
ITERATIONS = 2
# Not compared: timings, and value_clip_frac, which counts (V_clip - R)^2 > (V - R)^2; on the first
# minibatch V == V_old, so both sides are equal and float rounding alone decides every token.
UNCOMPARED = ("iteration_seconds", "rollout/seconds", "rollout/tokens_per_s", "value_clip_frac")
FSDP_Q = P("fsdp", "tensor", None)  # [D, N, H]: the model dim over fsdp (the tensor axis has size 1)


def _mesh():
    return make_mesh(MeshConfig(data=2, fsdp=2), jax.devices()[:4])


def _prompts(rows: int):
    rng = np.random.default_rng(0)
    out = rng.integers(3, V, size=(32, 4)).astype(np.int32)
    out[:, 0] = 2
    items = [row[: 2 + i % 3] for i, row in enumerate(out)]
    collate = lambda b: prompt_batch(b, 4, padding="right", rows=rows)  # noqa: E731
    return batches(items, DataOrder(len(items), seed=1), None, rows, collate)


def _spy_steps(monkeypatch, module) -> list:
    """The jitted train steps `module` builds, to count their compilations."""
    steps, real = [], module.make_train_step

    def spy(*args, **kwargs):
        steps.append(real(*args, **kwargs))
        return steps[-1]

    monkeypatch.setattr(module, "make_train_step", spy)
    return steps


def _run(algorithm: str, mesh, monkeypatch, ckpt_dir):
    """(logs, final params as numpy, final state) of ITERATIONS iterations: the first, a checkpoint,
    then the rest from the restored state (placed as the step expects it)."""
    cfg = ModelConfig.tiny(vocab_size=V)
    policy = Decoder(cfg, rngs=nnx.Rngs(0))
    reward_model = ScoreModel(Decoder(cfg, rngs=nnx.Rngs(1)), rngs=nnx.Rngs(2))
    if mesh is not None:  # the frozen models live on the train state's mesh
        shard_model(policy, mesh)
        shard_model(reward_model, mesh)
    # Adam's eps well above the smallest gradients: plain Adam turns a 1e-9 gradient's rounding noise
    # into a full lr-sized step of either sign, which would test Adam, not the sharding.
    optim = OptimConfig(learning_rate=2e-3, total_steps=100, schedule="constant", eps=1e-2)
    optimizer = make_optimizer(optim)
    if algorithm == "ppo":
        model = PolicyAndValue(policy, ScoreModel(Decoder(cfg, rngs=nnx.Rngs(3)), rngs=nnx.Rngs(4)))
        module, config, rows, coef = ppo_module, PPO, 8, PPO.kl_coef
    else:
        model, module, config, rows, coef = policy, grpo_module, GRPO, 4, GRPO.beta
    state = owned_train_state(model, optimizer, seed=7, mesh=mesh)
    shardings = None if mesh is None else rl_shardings(state, mesh)
    steps = _spy_steps(monkeypatch, module)
    make = module.make_ppo_iteration if algorithm == "ppo" else module.make_grpo_iteration
    # GRPO is rewarded by a (sharded) reward model, PPO by a rule: one model compile less per run
    reward = ScoreModelReward(reward_model) if algorithm == "grpo" else TokenFraction(TARGET)
    iterate = make(config, optimizer, policy, reward, shardings=shardings)
    monkeypatch.undo()
    with Checkpointer(ckpt_dir, async_save=False) as ckpt:
        loop = RLLoopConfig(iterations=1, progress=False)
        first = rl_loop(iterate, state, _prompts(rows), loop, kl_coef=coef, checkpointer=ckpt)
        compiled = (compiled_count(), rollout_module._score_jit._cache_size(), steps[0]._cache_size())
        resumed = resume(ckpt, first.state, None if shardings is None else shardings[0])
    rest = rl_loop(
        iterate,
        resumed.state,
        _prompts(rows),  # the first batch again: the comparison needs the same batches on both sides
        RLLoopConfig(iterations=ITERATIONS, progress=False),
        kl_coef=resumed.kl_coef,
        start_iteration=resumed.iteration,
    )
    recompiled = (compiled_count(), rollout_module._score_jit._cache_size(), steps[0]._cache_size())
    assert recompiled == compiled, "a later iteration compiled a program again"
    logs = [{k: v for k, v in row.items() if k not in UNCOMPARED} for row in first.logs + rest.logs]
    params = jax.tree.map(np.asarray, rest.state.params)
    return logs, params, rest.state


def _has_mu(x) -> bool:
    return hasattr(x, "mu")


def _assert_same(sharded, single, tol, param_tol):
    (logs, params, _), (logs1, params1, _) = sharded, single
    assert len(logs) == len(logs1) == ITERATIONS
    for row, row1 in zip(logs, logs1):
        assert row.keys() == row1.keys()
        for k in row:
            assert row[k] == pytest.approx(row1[k], rel=tol, abs=tol), (row["iteration"], k)
    diffs = jax.tree.leaves(jax.tree.map(lambda a, b: float(np.max(np.abs(a - b))), params, params1))
    assert max(diffs) < param_tol


@pytest.mark.parametrize("algorithm", ["ppo", "grpo"])
def test_rl_iterations_on_a_mesh_equal_one_device(algorithm, monkeypatch, tmp_path):
    mesh = _mesh()
    sharded = _run(algorithm, mesh, monkeypatch, tmp_path / "mesh")
    single = _run(algorithm, None, monkeypatch, tmp_path / "one")
    _assert_same(sharded, single, tol=1e-5, param_tol=1e-6)  # measured: 1.5e-6, 6e-8
    state = sharded[2]
    params = state.params["policy"] if algorithm == "ppo" else state.params
    q = params["layers"][0]["attn"]["q"][...]
    assert q.sharding.spec == FSDP_Q and len(q.sharding.device_set) == 4
    assert q.addressable_shards[0].data.shape == (32, 4, 16)  # D 64 split in two
    if algorithm == "ppo":  # the critic shards by the same table
        k = state.params["value"]["backbone"]["layers"][1]["attn"]["k"][...]
        assert k.sharding.spec == P("fsdp", None, None)  # [D, K, H]: kv heads are never split
    adam = [x for x in jax.tree.leaves(state.opt_state, is_leaf=_has_mu) if _has_mu(x)]
    mu = adam[0].mu  # Adam's moments shard like their parameter
    mu_q = (mu["policy"] if algorithm == "ppo" else mu)["layers"][0]["attn"]["q"][...]
    assert mu_q.sharding.spec == FSDP_Q
