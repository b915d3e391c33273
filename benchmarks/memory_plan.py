"""Per-device memory of the real train and RL update steps on a mesh, from XLA's compiler: choose a slice
before renting it.

    python benchmarks/memory_plan.py     # gemma2_2b/9b/27b on fsdp=8, data=2,fsdp=4, data=2,fsdp=2,tensor=2
    python benchmarks/memory_plan.py --preset gemma2_9b --mesh fsdp=16 data=2,fsdp=8 --batch 16 --seq 4096
    python benchmarks/memory_plan.py --preset tiny --mesh fsdp=4 --batch 2 --seq 64 --json rows.json

Nothing is materialised: the model, the train state and the batch are abstract (`nnx.eval_shape`,
`jax.eval_shape`, ShapeDtypeStructs that carry the rules table's shardings), and each step is only
lowered and compiled (`jit(step).lower(state, batch).compile()`) for a mesh of fake CPU devices
(XLA_FLAGS=--xla_force_host_platform_device_count, set here before JAX starts). The steps are the ones
the stages jit:

    train  the SFT step of `align sft`: make_train_step(pipelines.stages.sft.sft_loss, make_optimizer)
    grpo   GRPO's update on one minibatch (align.rl.grpo.grpo_loss_fn): the policy trains
    ppo    PPO's update on one minibatch (align.rl.ppo.ppo_loss): policy and critic (a second decoder
           with a scalar head) train under one optimizer, so params and Adam moments are twice GRPO's

sharded by align.model.sharding.LOGICAL_RULES (params and Adam moments over fsdp x tensor, rows over
data x fsdp), the state donated as in the stages. Columns, bytes per device:

    params     the trained weights' shards (from the abstract shardings)
    optimizer  Adam's two moments (+ counters): 2 x params when both are float32
    other      the batch, the step counter and rng
    temp       XLA's temporaries: activations kept for the backward pass, gradients, logits tiles
    out        outputs not aliased to a donated input (the metrics; ~0 when the state is donated)
    total      argument + output - aliased + temp (`compiled.memory_analysis()`), the step's peak
    frozen     RL only: what the rollout also keeps resident, not the update's arguments: the frozen
               reference (GRPO, PPO) and a reward model the critic's size (PPO), as the rules shard them

The compiler is XLA:CPU's (its scheduler set as `align.setup()` sets it), not the TPU's or the GPU's:
layouts, fusion and scheduling differ, so temp is an estimate (params and optimizer are exact shards).
Leave room for the runtime and the rollout's KV cache; `benchmarks/RESULTS.md` has the table.
"""

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

STEPS = ("train", "grpo", "ppo")
AXES = ("data", "fsdp", "tensor")
DEFAULT_PRESETS = ("gemma2_2b", "gemma2_9b", "gemma2_27b")
DEFAULT_MESHES = ("fsdp=8", "data=2,fsdp=4", "data=2,fsdp=2,tensor=2")
GIB = 2**30
# The executable is never run, so skip LLVM's optimisation of it: buffer assignment (what
# memory_analysis reports) is done on the HLO before, and came out byte for byte the same with and
# without these, while the compile took 7x less time (gemma2_2b, 2 layers, fsdp=8).
FAST = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"


def mesh_shape(text: str) -> tuple[int, int, int]:
    """(data, fsdp, tensor) from "fsdp=8" / "data=2,fsdp=4" (the keys of a config's `mesh:`; unnamed
    axes are 1) or "2x2x2" (data x fsdp x tensor)."""
    try:
        if "=" in text:
            named = dict(part.split("=", 1) for part in text.split(","))
            unknown = set(named) - set(AXES)
            if unknown:
                raise ValueError(f"unknown axis {sorted(unknown)}")
            dims = tuple(int(named.get(a, 1)) for a in AXES)
        else:
            dims = tuple(int(d) for d in text.lower().split("x"))
        if len(dims) != 3 or min(dims) < 1:
            raise ValueError("three sizes >= 1")
    except ValueError as e:
        raise argparse.ArgumentTypeError(
            f"mesh {text!r}: expected AXIS=N[,AXIS=N] with AXIS in {AXES} or DATAxFSDPxTENSOR ({e})"
        ) from None
    return dims


def mesh_name(dims) -> str:
    return ",".join(f"{a}={d}" for a, d in zip(AXES, dims) if d > 1) or "data=1"


@dataclasses.dataclass(frozen=True)
class Setup:
    """What the compiled step depends on besides preset, mesh and step."""

    batch: int = 8  # train rows per step
    seq: int = 2048  # train tokens per row
    rl_batch: int = 8  # RL rows per minibatch update
    prompt: int = 512  # RL prompt tokens P
    response: int = 512  # RL response tokens M
    dtype: str = "bfloat16"  # activations
    param_dtype: str = "float32"  # weights and Adam moments
    remat: bool = True
    attn_chunk: int = 1024  # Decoder's default: query-chunked attention past this length
    loss_chunk: int = 1024  # SFT's chunk_size / RL's logprob_chunk: tokens per logits tile


def tree_bytes(tree) -> int:
    """Bytes per device of the abstract leaves of `tree` (each leaf's shard under its sharding)."""
    import jax

    total = 0
    for leaf in jax.tree.leaves(tree):
        shape = leaf.sharding.shard_shape(leaf.shape) if leaf.sharding is not None else leaf.shape
        total += math.prod(shape) * leaf.dtype.itemsize
    return total


def _decoder(config, setup: Setup):
    import jax.numpy as jnp
    from flax import nnx

    from align.model import Decoder

    return Decoder(
        config,
        rngs=nnx.Rngs(0),
        param_dtype=jnp.dtype(setup.param_dtype),
        dtype=jnp.dtype(setup.dtype),
        remat=setup.remat,
        attn_chunk=setup.attn_chunk,
    )


def _model_and_loss(config, step: str, setup: Setup):
    """(make_model, loss_fn): the stage's module and its loss, with the stage's defaults otherwise."""
    import functools

    from flax import nnx

    from align.model.heads import ScoreModel
    from align.rl import GRPOConfig, PPOConfig, RolloutConfig
    from align.rl.grpo import grpo_loss_fn
    from align.rl.ppo import PolicyAndValue, ppo_loss
    from pipelines.stages.sft import sft_loss

    decoder = functools.partial(_decoder, config, setup)
    rollout = RolloutConfig(logprob_chunk=setup.loss_chunk)
    if step == "train":
        return decoder, sft_loss(setup.loss_chunk)
    if step == "grpo":
        return decoder, functools.partial(grpo_loss_fn, config=GRPOConfig(rollout=rollout))
    return (
        lambda: PolicyAndValue(decoder(), ScoreModel(decoder(), rngs=nnx.Rngs(1))),
        functools.partial(ppo_loss, config=PPOConfig(rollout=rollout)),
    )


def abstract_batch(config, step: str, setup: Setup, rows) -> dict:
    """ShapeDtypeStructs of one step's batch, rows split by `rows` (a NamedSharding)."""
    import jax
    import jax.numpy as jnp

    from align.rl.advantages import group_relative_advantages

    def sds(shape, dtype):
        return jax.ShapeDtypeStruct(shape, jnp.dtype(dtype), sharding=rows)

    if step == "train":
        B, T = setup.batch, setup.seq
        ints = {k: sds((B, T), "int32") for k in ("tokens", "positions", "segment_ids", "targets")}
        return {**ints, "loss_mask": sds((B, T), "float32")}
    B, M, L = setup.rl_batch, setup.response, setup.prompt + setup.response
    batch = {k: sds((B, L), "int32") for k in ("tokens", "positions", "segment_ids")}
    batch.update(prompt_lengths=sds((B,), "int32"), response=sds((B, M), "int32"))
    batch.update(has_eos=sds((B,), "bool"), scores=sds((B,), "float32"))
    for k in ("response_mask", "logprobs", "ref_logprobs", "values", "entropy"):
        batch[k] = sds((B, M), "float32")
    if step == "ppo":
        batch.update(advantages=sds((B, M), "float32"), returns=sds((B, M), "float32"))
    else:  # one advantage per response (align.rl.grpo): its shape from the function itself
        adv = jax.eval_shape(lambda s: group_relative_advantages(s, 2, True), batch["scores"])
        batch["advantages"] = sds(adv.shape, adv.dtype)
    return batch


def compile_case(preset: str, dims, step: str, setup: Setup) -> dict:
    """One row: the step for `preset` on a (data, fsdp, tensor) mesh, compiled; bytes per device."""
    import jax

    from align.model.config import PRESETS
    from align.model.sharding import MeshConfig, make_mesh
    from align.rl.loop import rl_shardings
    from align.training import OptimConfig, make_optimizer, make_train_step
    from align.training.state import abstract_train_state, with_shardings

    config = PRESETS[preset]()
    n = math.prod(dims)
    mesh = make_mesh(MeshConfig(*dims), jax.devices()[:n])
    optimizer = make_optimizer(OptimConfig())
    make_model, loss_fn = _model_and_loss(config, step, setup)
    abstract = abstract_train_state(make_model, optimizer)
    state_sh, rows = rl_shardings(abstract, mesh)  # the rules table's state shardings; rows over data x fsdp
    state = with_shardings(abstract, state_sh)
    batch = abstract_batch(config, step, setup, rows)
    fn = make_train_step(loss_fn, optimizer, shardings=(state_sh, rows))
    t0 = time.perf_counter()
    stats = fn.lower(state, batch).compile().memory_analysis()
    seconds = time.perf_counter() - t0
    params, optim = tree_bytes(state.params), tree_bytes(state.opt_state)
    args = stats.argument_size_in_bytes
    total = args + stats.output_size_in_bytes - stats.alias_size_in_bytes + stats.temp_size_in_bytes
    policy = params if step == "grpo" else params // 2  # PPO's state holds policy + critic
    return {
        "preset": preset,
        "mesh": mesh_name(dims),
        "devices": n,
        "step": step,
        "rows": setup.batch if step == "train" else setup.rl_batch,
        "tokens": setup.seq if step == "train" else setup.prompt + setup.response,
        "params": params,
        "optimizer": optim,
        "other": args - params - optim,
        "argument": args,
        "temp": stats.temp_size_in_bytes,
        "output": stats.output_size_in_bytes - stats.alias_size_in_bytes,
        "total": total,
        "frozen": 0 if step == "train" else policy * (1 if step == "grpo" else 2),
        "compile_s": round(seconds, 1),
    }


def gib(x: int) -> str:
    return f"{x / GIB:.2f}"


def markdown(rows: list[dict]) -> str:
    cols = ("preset", "mesh", "step", "B x T", "params", "optimizer", "other", "temp", "out", "total")
    cols += ("frozen", "compile s")
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        cells = [r["preset"], r["mesh"], r["step"], f"{r['rows']} x {r['tokens']}"]
        cells += [gib(r[k]) for k in ("params", "optimizer", "other", "temp", "output", "total")]
        cells += [gib(r["frozen"]) if r["frozen"] else "", str(r["compile_s"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Per-device memory (GiB) of the SFT train step and the GRPO / PPO update step, "
        "compiled for a mesh of fake CPU devices from abstract shapes (nothing is materialised).",
        epilog="Mesh axes as in a config's mesh: section; rows split over data x fsdp, weights and Adam "
        "moments over fsdp x tensor (align.model.sharding.LOGICAL_RULES).",
    )
    d = Setup()
    p.add_argument(
        "--preset", nargs="+", default=list(DEFAULT_PRESETS), help="align.model.config.PRESETS names"
    )
    p.add_argument(
        "--mesh",
        nargs="+",
        type=mesh_shape,
        default=[mesh_shape(m) for m in DEFAULT_MESHES],
        help="AXIS=N[,AXIS=N] (axes data, fsdp, tensor; others 1) or DATAxFSDPxTENSOR; default: %s"
        % " ".join(DEFAULT_MESHES),
    )
    p.add_argument(
        "--steps", default="train,ppo", help=f"comma-separated, of {','.join(STEPS)} (default train,ppo)"
    )
    p.add_argument("--batch", type=int, default=d.batch, help="train rows per step (split over data x fsdp)")
    p.add_argument("--seq", type=int, default=d.seq, help="train tokens per row")
    p.add_argument("--rl-batch", type=int, default=d.rl_batch, help="RL rows per minibatch update")
    p.add_argument("--prompt", type=int, default=d.prompt, help="RL prompt tokens")
    p.add_argument("--response", type=int, default=d.response, help="RL response tokens")
    p.add_argument("--dtype", default=d.dtype, choices=("bfloat16", "float32"), help="activation dtype")
    p.add_argument(
        "--param-dtype",
        default=d.param_dtype,
        choices=("bfloat16", "float32"),
        help="weights and Adam moments",
    )
    p.add_argument("--no-remat", dest="remat", action="store_false", help="store every block's activations")
    p.add_argument(
        "--attn-chunk", type=int, default=d.attn_chunk, help="query-chunked attention past this length"
    )
    p.add_argument(
        "--loss-chunk", type=int, default=d.loss_chunk, help="tokens per logits tile in the losses"
    )
    p.add_argument("--json", type=Path, help="also write the rows (bytes) as JSON here")
    args = p.parse_args(argv)
    _check(p, args)
    return args


def _check(p: argparse.ArgumentParser, args) -> None:
    """Refuse what would only fail after a long compile (argparse's error: one line, exit 2)."""
    from align.model.config import PRESETS

    args.steps = tuple(s.strip() for s in args.steps.split(","))
    if bad := [s for s in args.steps if s not in STEPS]:
        p.error(f"--steps {','.join(bad)}: expected a comma-separated list of {','.join(STEPS)}")
    if bad := [s for s in args.preset if s not in PRESETS]:
        p.error(f"--preset {' '.join(bad)}: unknown; choose from {', '.join(sorted(PRESETS))}")
    for name in ("batch", "seq", "rl_batch", "prompt", "response", "attn_chunk", "loss_chunk"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    for dims in args.mesh:
        rows_split = dims[0] * dims[1]
        for flag, rows in (("--batch", args.batch), ("--rl-batch", args.rl_batch)):
            if rows % rows_split:
                p.error(
                    f"{flag} {rows} does not split over data x fsdp = {rows_split} of mesh {mesh_name(dims)}"
                )


def main(argv=None) -> int:
    args = parse_args(argv)
    n = max(math.prod(d) for d in args.mesh)
    # Before JAX starts: fake devices for the largest mesh, and align's XLA:CPU scheduler setting.
    from align.xla_flags import with_cpu_defaults

    flags = os.environ.get("XLA_FLAGS", "")
    flags = " ".join(f for f in flags.split() if not f.startswith("--xla_force_host_platform_device_count"))
    os.environ["XLA_FLAGS"] = with_cpu_defaults(f"{flags} --xla_force_host_platform_device_count={n} {FAST}")
    os.environ["JAX_PLATFORMS"] = "cpu"
    import jax

    if jax.device_count() < n:
        sys.exit(f"memory_plan: {jax.device_count()} CPU devices, {n} needed (JAX started before XLA_FLAGS)")
    setup = Setup(
        batch=args.batch,
        seq=args.seq,
        rl_batch=args.rl_batch,
        prompt=args.prompt,
        response=args.response,
        dtype=args.dtype,
        param_dtype=args.param_dtype,
        remat=args.remat,
        attn_chunk=args.attn_chunk,
        loss_chunk=args.loss_chunk,
    )
    rows = []
    for preset in args.preset:
        for dims in args.mesh:
            for step in args.steps:
                print(f"compiling {preset} {mesh_name(dims)} {step} ...", file=sys.stderr, flush=True)
                rows.append(compile_case(preset, dims, step, setup))
                r = rows[-1]
                print(
                    f"  total {gib(r['total'])} GiB per device ({r['compile_s']} s)",
                    file=sys.stderr,
                    flush=True,
                )
                if args.json:
                    args.json.write_text(json.dumps(rows, indent=1))
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
