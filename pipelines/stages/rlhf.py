"""RLHF with PPO or GRPO: `align rlhf --config configs/rlhf/<name>.yaml [key=value ...]`.

Run directory (`output_dir`):
    config.yaml            the resolved config
    checkpoints/<step>/    Orbax checkpoints: weights (policy [+ critic]), Adam moments, rng, data
                           position, iteration and KL coefficient
    metrics.jsonl, tb/     one row per iteration: reward mean/std, KL, entropy, clip fraction,
                           value loss, response length, tokens/s
    eval_before.json       held-out prompts: reward of the starting policy's responses (computed once)
    eval_samples.jsonl     a few held-out prompts with the responses before and after training
    export/                the trained policy as a Hugging Face directory (+ tokenizer files)
    summary.json           written last: its presence means the run is finished and is not redone

The reward is a weighted mixture of reward models (e.g. helpfulness and harmlessness) and rule
rewards; every reward model must share the policy's tokenizer. A stopped run resumes exactly.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import time
from pathlib import Path

import jax
from flax import nnx

from align.data import DataOrder, Tokenizer, batches, prompt_batch
from align import checks, distributed
from align.errors import InvalidInput
from align.rl.feed import RolloutRows, rollout_rows
from align.rl.grpo import GRPOConfig, make_grpo_iteration
from align.model.sharding import shard_model
from align.rl.loop import (
    FromState,
    RLLoopConfig,
    owned_train_state,
    resolve,
    resume,
    rl_loop,
    rl_shardings,
    shared_frozen,
)
from align.rl.ppo import PolicyAndValue, PPOConfig, make_ppo_iteration
from align.rl.rewards import RewardFn
from align.rl.rollout import RolloutConfig
from align.training import Checkpointer, OptimConfig, make_optimizer, trainable_filter
from align.training.metrics import check_report_to, open_metrics_writer
from align.training.options import MeshOptions, make_run_mesh
from align.hub import ModelOptions, load_model
from align.training.rundir import finished_summary, write_json
from pipelines.commands.config import add_config_arguments, run_config_command
from align.config_io import to_dict, write_config
from pipelines.stages.rewards import RewardOptions, build_reward, cached_reward_model, load_value_model
from pipelines.stages.rl_data import PromptDataOptions, load_prompts
from pipelines.stages.rl_eval import evaluate_policy, paired_gain, write_samples

log = logging.getLogger("align.rlhf")
ALGORITHMS = ("ppo", "grpo")


@dataclasses.dataclass(frozen=True)
class RLTrainOptions:
    iterations: int = 10  # rollouts (each followed by its optimizer updates)
    batch_size: int = 8  # prompts per rollout (GRPO samples each group_size times)
    checkpoint_every: int = 0  # iterations; 0: only at the end
    keep_checkpoints: int = 2
    async_checkpoints: bool = True
    seed: int = 0  # data order and the state's rng (sampling, minibatch shuffles)
    trainable: str = "all"  # all | no_embeddings (saves the [V, D] table's gradient and Adam moments)
    value_init: str = "reward"  # PPO critic: "reward" (a copy of the first reward model) | "policy"
    critic: str = (
        "full"  # PPO critic training: "full" | "head" (frozen backbone: half the backward, less memory)
    )
    progress: bool = True
    report_to: tuple[str, ...] = ("jsonl", "tensorboard")  # of jsonl | tensorboard | wandb

    def __post_init__(self):
        check_report_to(self.report_to)
        checks.at_least(self, 1, "iterations", "batch_size", "keep_checkpoints")
        checks.at_least(self, 0, "checkpoint_every", "seed")


@dataclasses.dataclass(frozen=True)
class RLEvalOptions:
    prompts: int = 16  # held-out prompts scored before and after training (0: no evaluation)
    batch_size: int = 8
    seed: int = 1234  # sampling key: before and after see the same noise
    samples: int = 4  # prompts written to eval_samples.jsonl

    def __post_init__(self):
        checks.at_least(self, 0, "prompts", "seed", "samples")
        checks.at_least(self, 1, "batch_size")


@dataclasses.dataclass(frozen=True)
class RLHFConfig:
    output_dir: str
    algorithm: str = "ppo"  # ppo | grpo
    model: ModelOptions = ModelOptions()  # the starting policy (and frozen reference), e.g. an SFT export
    data: PromptDataOptions = PromptDataOptions()
    reward: RewardOptions = RewardOptions()
    optim: OptimConfig = OptimConfig(learning_rate=1e-6, schedule="constant")  # total_steps: derived
    train: RLTrainOptions = RLTrainOptions()
    eval: RLEvalOptions = RLEvalOptions()
    ppo: PPOConfig = PPOConfig()
    grpo: GRPOConfig = GRPOConfig()
    mesh: MeshOptions = MeshOptions()  # policy, critic, reference and reward models share it
    export: bool = True

    def __post_init__(self):
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm={self.algorithm!r}: expected one of {ALGORITHMS}")

    def rows(self) -> dict[str, int]:
        """Rows of each array the data-parallel devices split: a rollout and a minibatch."""
        if self.algorithm == "ppo":
            return {"train.batch_size": self.train.batch_size, "ppo.minibatch_size": self.ppo.minibatch_size}
        group = self.train.batch_size * self.grpo.group_size
        return {"train.batch_size x grpo.group_size": group, "grpo.minibatch_size": self.grpo.minibatch_size}

    @property
    def rollout(self) -> RolloutConfig:
        return self.ppo.rollout if self.algorithm == "ppo" else self.grpo.rollout

    def updates_per_iteration(self) -> int:
        if self.algorithm == "ppo":
            return self.ppo.ppo_epochs * -(-self.train.batch_size // self.ppo.minibatch_size)
        rows = self.train.batch_size * self.grpo.group_size
        return self.grpo.num_iterations * -(-rows // self.grpo.minibatch_size)


def check_mesh_fits(config: RLHFConfig, mesh) -> None:
    """Every rollout and minibatch splits evenly over the data-parallel devices (mesh.data x mesh.fsdp)."""
    n = mesh.shape["data"] * mesh.shape["fsdp"]
    for name, rows in config.rows().items():
        if rows % n:
            raise InvalidInput(
                f"mesh: {name} = {rows} rows do not split over mesh.data x mesh.fsdp = {n} devices; "
                f"make it a multiple of {n}"
            )


def with_tokenizer_ids(config: RLHFConfig, tokenizer: Tokenizer) -> RLHFConfig:
    """Stop ids (<eos>, <end_of_turn>) and the pad id from the tokenizer when the config leaves them empty;
    optim.total_steps from the run length (it only shapes the learning-rate schedule)."""

    def fill(rollout: RolloutConfig) -> RolloutConfig:
        s = rollout.sampling
        s = dataclasses.replace(s, stop_ids=s.stop_ids or tokenizer.stop_ids, pad_id=tokenizer.pad_id)
        return dataclasses.replace(rollout, sampling=s)

    total = max(config.train.iterations * config.updates_per_iteration(), config.optim.warmup_steps, 1)
    return dataclasses.replace(
        config,
        ppo=dataclasses.replace(config.ppo, rollout=fill(config.ppo.rollout)),
        grpo=dataclasses.replace(config.grpo, rollout=fill(config.grpo.rollout)),
        optim=dataclasses.replace(config.optim, total_steps=total),
    )


def prompt_stream(prompts, config: RLHFConfig, pad_id: int, position=None, take: slice | None = None):
    """Prompt batches of train.batch_size rows in the data order; take: the rows this process collates
    (align.rl.feed.RolloutRows.prompts; default all)."""
    rows, length = config.train.batch_size, config.data.max_prompt_length
    mine = rows if take is None else take.stop - take.start
    order = DataOrder(len(prompts), seed=config.train.seed)
    return batches(
        prompts,
        order,
        position,
        rows,
        lambda items: prompt_batch(items, length, padding="right", rows=mine, pad_id=pad_id),
        take=take,
    )


def rollout_layout(config: RLHFConfig, rows) -> RolloutRows:
    """This process's prompts and rows of every rollout (`rows`: the row sharding)."""
    group = config.grpo.group_size if config.algorithm == "grpo" else 1
    return rollout_rows(rows, config.train.batch_size, group)


def make_iteration(
    config: RLHFConfig, optimizer, reference, reward_fn: RewardFn, shardings=None, layout=None
):
    """(iterate, initial KL coefficient); shardings: align.rl.loop.rl_shardings of the state; layout:
    rollout_layout's, when each process feeds only its prompts."""
    make = make_ppo_iteration if config.algorithm == "ppo" else make_grpo_iteration
    algo = config.ppo if config.algorithm == "ppo" else config.grpo
    iterate = make(algo, optimizer, reference, reward_fn, shardings=shardings, layout=layout)
    return iterate, config.ppo.kl_coef if config.algorithm == "ppo" else config.grpo.beta


def trainable_for(config: RLHFConfig):
    """The nnx filter of trained Variables: train.trainable, minus the critic's backbone with critic=head."""
    if config.train.critic not in ("full", "head"):
        raise InvalidInput(f"train.critic={config.train.critic!r}: expected 'full' or 'head'")
    base = trainable_filter(config.train.trainable)
    if config.algorithm == "ppo" and config.train.critic == "head":
        return nnx.All(base, nnx.Not(nnx.PathContains("backbone")))  # only the critic has a "backbone"
    return base


def initial_state(config: RLHFConfig, policy, optimizer, mesh=None):
    """PPO: PolicyAndValue(policy, critic); GRPO: the policy alone. The state owns copies of the weights,
    sharded over `mesh`."""
    trainable = trainable_for(config)
    model = policy
    if config.algorithm == "ppo":
        critic = load_value_model(config.train.value_init, config.reward, policy, mesh)
        model = PolicyAndValue(policy, critic)
    return owned_train_state(model, optimizer, seed=config.train.seed, trainable=trainable, mesh=mesh)


def eval_options(config: RLHFConfig, mesh=None) -> dict:
    e = config.eval
    return {
        "mesh": mesh,
        "rollout": config.rollout,
        "batch_size": e.batch_size,
        "prompt_length": config.data.max_prompt_length,
        "seed": e.seed,
        "progress": config.train.progress,
    }


def training_views(config: RLHFConfig, reference, tokenizer, mesh=None):
    """(reference, reward) for the iterations: views that share the train state's frozen arrays.

    With trainable="no_embeddings", the policy's frozen [V, D] table is the reference's, and the
    critic's (initialised from the first reward model) is that reward model's: sharing them instead of
    keeping copies saves two tables (2 x 0.67 GB for Gemma 3 270M in float32); with critic="head" the
    reward model shares the critic's whole backbone.
    """
    trainable = trainable_for(config)
    ppo = config.algorithm == "ppo"
    reference_view = FromState(shared_frozen(reference, trainable, "policy" if ppo else None))
    models = [cached_reward_model(m.path, mesh) for m in config.reward.models]
    if not (ppo and config.train.value_init == "reward" and models):
        return reference_view, build_reward(config.reward, tokenizer, models)
    critic_view = shared_frozen(models[0], trainable, "value")
    rest = models[1:]
    cached_reward_model.cache_clear()
    return reference_view, FromState(
        lambda s: build_reward(config.reward, tokenizer, [critic_view(s), *rest])
    )


def policy_of(state):
    model = state.model()
    return model.policy if isinstance(model, PolicyAndValue) else model


def prompt_stream_from(prompts, config: RLHFConfig, pad_id: int, take: slice | None = None):
    return lambda position: prompt_stream(prompts, config, pad_id, position, take)


def train(config: RLHFConfig, state, iterate, kl_coef: float, make_stream, manifest: dict, shardings=None):
    """rl_loop from the latest checkpoint of `output_dir` (or from `state`) -> (RLResult, start iteration).

    shardings: the state's (rl_shardings(...)[0]): a resumed state is placed as the step expects it."""
    out = Path(config.output_dir)
    ckpt = Checkpointer(
        out / "checkpoints",
        keep=config.train.keep_checkpoints,
        async_save=config.train.async_checkpoints,
        manifest=manifest,
    )
    start, position = 0, None
    resumed = resume(ckpt, state, shardings)
    if resumed is not None:
        state, start, kl_coef, position = (
            resumed.state,
            resumed.iteration,
            resumed.kl_coef,
            resumed.data_position,
        )
        log.info("resuming at iteration %d (%s)", start, ckpt.directory)
    writer = open_metrics_writer(out, config.train.report_to, manifest["config"])
    writer.truncate_after(start)
    loop = RLLoopConfig(
        iterations=config.train.iterations,
        checkpoint_every=config.train.checkpoint_every,
        progress=config.train.progress,
    )
    try:
        result = rl_loop(
            iterate,
            state,
            make_stream(position),
            loop,
            kl_coef=kl_coef,
            start_iteration=start,
            checkpointer=ckpt,
            writer=writer,
            data_position=position,
        )
    finally:
        writer.close()
        ckpt.close()
    return result, start


def eval_before_done(out: Path) -> bool:
    """Both files of the starting policy's evaluation exist (evaluate_after reads the two)."""
    return (out / "eval_before.json").exists() and (out / "eval_before_samples.json").exists()


def evaluate_before(config: RLHFConfig, reference, held: list, tokenizer, mesh=None) -> None:
    """eval_before.json (+ samples): the starting policy's held-out reward, computed once per run."""
    out = Path(config.output_dir)
    reward_fn = build_reward(config.reward, tokenizer, mesh=mesh)
    before = evaluate_policy(reference, reference, reward_fn, held, tokenizer, **eval_options(config, mesh))
    # The samples first and eval_before.json last: a run killed between the two writes must not look
    # evaluated, or evaluate_after would find no samples once the whole training is done.
    if distributed.is_primary():  # every process evaluated; one writes, the others read it later
        write_json(out / "eval_before_samples.json", before.samples)
        write_json(out / "eval_before.json", before.metrics)
    distributed.barrier("rl-eval-before")


def evaluate_after(
    config: RLHFConfig, policy, reference, reward_fn, held: list, tokenizer, mesh=None
) -> dict:
    """{"eval_before", "eval_after"} for the summary; eval_samples.jsonl with both responses."""
    out = Path(config.output_dir)
    after = evaluate_policy(policy, reference, reward_fn, held, tokenizer, **eval_options(config, mesh))
    before_samples = json.loads((out / "eval_before_samples.json").read_text())
    if distributed.is_primary():
        write_samples(out / "eval_samples.jsonl", before_samples, after.samples, config.eval.samples)
    return {
        "eval_before": json.loads((out / "eval_before.json").read_text()),
        "eval_after": after.metrics,
        "reward_gain": paired_gain(
            [s["reward"] for s in before_samples], [s["reward"] for s in after.samples]
        ),
    }


def run_rlhf(config: RLHFConfig) -> dict:
    """Train (or resume, or skip if finished); returns the summary written to summary.json."""
    out = Path(config.output_dir)
    if (done := finished_summary(out, log)) is not None:
        return done
    out.mkdir(parents=True, exist_ok=True)
    mesh = make_run_mesh(config.mesh)
    check_mesh_fits(config, mesh)
    reference, tokenizer = load_model(config.model)
    shard_model(reference, mesh)  # the train state's copy, the reference view and evaluations share it
    config = with_tokenizer_ids(config, tokenizer)
    if distributed.is_primary():  # run files: process 0 writes (a directory all processes share)
        write_config(out, config)
    train_prompts, held_prompts, data_report = load_prompts(config.data, tokenizer)
    log.info("prompts: %s", data_report)
    optimizer = make_optimizer(config.optim)
    state = initial_state(config, reference, optimizer, mesh)
    held = held_prompts[: config.eval.prompts]
    if held and not eval_before_done(out):
        evaluate_before(config, reference, held, tokenizer, mesh)
    reference_src, reward_src = training_views(config, reference, tokenizer, mesh)
    model_config = reference.config
    del reference  # from here on its frozen arrays live only in the train state
    shardings = rl_shardings(state, mesh)
    layout = rollout_layout(config, shardings[1])  # each process collates only its prompts
    iterate, kl_coef = make_iteration(config, optimizer, reference_src, reward_src, shardings, layout)
    t0 = time.perf_counter()
    stream = prompt_stream_from(train_prompts, config, tokenizer.pad_id, layout.prompts)
    manifest = {"config": to_dict(config), "model_config": model_config}
    result, start = train(config, state, iterate, kl_coef, stream, manifest, shardings[0])
    if result.stopped != "done":
        log.warning("stopped at iteration %d (%s); run again to resume", result.iteration, result.stopped)
        return {"stopped": result.stopped, "iteration": result.iteration}
    policy = policy_of(result.state)
    summary = {
        "algorithm": config.algorithm,
        "iterations": result.iteration,
        "optimizer_steps": int(jax.device_get(result.state.step)),
        "seconds": time.perf_counter() - t0,
        "resumed_from": start or None,
        "data": data_report,
        "kl_coef": result.kl_coef,
        "train_last": result.logs[-1] if result.logs else None,
    }
    if held:
        sources = (resolve(reference_src, result.state), resolve(reward_src, result.state))
        summary.update(evaluate_after(config, policy, *sources, held, tokenizer, mesh))
    if config.export:  # every process: the export gathers parameters spread over hosts
        from pipelines.stages.sft import export_model

        export_model(policy, tokenizer, out / "export")
        summary["export"] = str(out / "export")
    if distributed.is_primary():
        write_json(out / "summary.json", summary)
    distributed.barrier("rl-summary")  # no process reports done before summary.json exists
    return summary


# ---- CLI -------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, "rlhf", "algorithm=grpo train.iterations=20 ppo.kl_coef=0.1")


def run(args) -> int:
    keys = ("algorithm", "iterations", "eval_before", "eval_after", "reward_gain", "export")
    return run_config_command(args, RLHFConfig, run_rlhf, keys)
