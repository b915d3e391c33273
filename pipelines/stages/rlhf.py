"""RLHF with PPO or GRPO: `align rlhf --config configs/rlhf/<name>.yaml [key=value ...]`.

Run directory (`output_dir`):
    config.yaml            the resolved config
    checkpoints/<step>/    Orbax checkpoints: weights (policy [+ critic]), Adam moments, rng, data
                           position, iteration and KL coefficient
    metrics.jsonl, tb/     one row per iteration: reward mean/std, KL, entropy, clip fraction,
                           value loss, response length, tokens/s
    eval_before.json       held-out prompts: reward of the starting policy's responses (computed once,
                           after its responses, eval_before_samples.json)
    eval_samples.jsonl     a few held-out prompts with the responses before and after training
    export/                the trained policy as a Hugging Face directory (+ tokenizer files)
    summary.json           written last: its presence means the run is finished and is not redone

The reward is a weighted mixture of reward models (e.g. helpfulness and harmlessness) and rule
rewards; every reward model must share the policy's tokenizer. A stopped run resumes exactly.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
from flax import nnx

from align.data import DataOrder, Tokenizer, batches, prompt_batch
from align import checks
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
from align.training.stage import Evaluation, FitResult, StageData, StageSpec, run_stage
from pipelines.commands.config import add_config_arguments, run_config_command
from align.config_io import to_dict
from pipelines.stages.rewards import (
    RewardOptions,
    build_reward,
    cached_reward_model,
    check_rules,
    load_value_model,
)
from pipelines.stages.rl_data import PromptDataOptions, load_prompts
from pipelines.stages.rl_eval import compare_samples, evaluate_policy
from pipelines.stages.sft import export_model

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
    eval_before: bool = True  # score the starting policy too (and so reward_gain, eval_samples.jsonl)

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
        check_rules(self.reward.rules, self.data)  # a prompt-file rule's prompts are trained on

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


@dataclasses.dataclass
class RLFit:
    """The RL loop as the stage body's fit (align.training.stage.Fit): `step` counts iterations, and
    run() resumes from the latest checkpoint of output_dir; evaluate(state) scores a train state's policy
    on the held-out prompts (the starting one, then the trained one)."""

    config: RLHFConfig
    start: Any  # the starting train state (dropped by run: the updates donate its buffers)
    iterate: Callable
    kl_coef: float
    make_stream: Callable  # data position -> prompt batches
    manifest: dict
    shardings: Any  # the state's (rl_shardings(...)[0]): a resumed state is placed as the step expects it
    evaluate: Callable | None
    start_step = None  # eval_before.json has no "step": it is the policy before any iteration

    def finished(self, result: FitResult) -> bool:
        return result.stopped == "done"

    def run(self) -> FitResult:
        train, out = self.config.train, Path(self.config.output_dir)
        state, self.start, kl_coef = self.start, None, self.kl_coef
        ckpt = Checkpointer(
            out / "checkpoints",
            keep=train.keep_checkpoints,
            async_save=train.async_checkpoints,
            manifest=self.manifest,
        )
        start, position = 0, None
        if (resumed := resume(ckpt, state, self.shardings)) is not None:
            state, start, kl_coef = resumed.state, resumed.iteration, resumed.kl_coef
            position = resumed.data_position
            log.info("resuming at iteration %d (%s)", start, ckpt.directory)
        writer = open_metrics_writer(out, train.report_to, self.manifest["config"])
        writer.truncate_after(start)
        loop = RLLoopConfig(train.iterations, train.checkpoint_every, train.progress)
        try:
            result = rl_loop(
                self.iterate,
                state,
                self.make_stream(position),
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
        return FitResult(
            step=result.iteration,
            stopped=result.stopped,
            final=result.state,
            model=lambda: policy_of(result.state),
            logs=result.logs,
            resumed_from=start or None,
            summary={
                "algorithm": self.config.algorithm,
                "optimizer_steps": int(jax.device_get(result.state.step)),
                "kl_coef": result.kl_coef,
            },
            counter="iterations",
        )


def held_out_eval(config: RLHFConfig, reference_src, reward_src, held: list, tokenizer, mesh=None):
    """evaluate(state) -> Evaluation: reward (and KL to the reference) of the state's policy's responses
    to the held-out prompts, scored by the training reward (views of the state's frozen arrays)."""
    options = dict(
        mesh=mesh, rollout=config.rollout, batch_size=config.eval.batch_size, seed=config.eval.seed
    )
    options.update(prompt_length=config.data.max_prompt_length, progress=config.train.progress)

    def evaluate(state) -> Evaluation:
        reference, reward_fn = resolve(reference_src, state), resolve(reward_src, state)
        return evaluate_policy(policy_of(state), reference, reward_fn, held, tokenizer, **options)

    return evaluate


def load_policy(config: RLHFConfig):
    """(the starting policy, sharded over the run's mesh, tokenizer); a mesh the rollouts cannot split
    over is refused before any model loads."""
    mesh = make_run_mesh(config.mesh)
    check_mesh_fits(config, mesh)
    reference, tokenizer = load_model(config.model)
    shard_model(reference, mesh)  # the train state's copy and the reference view share its placement
    return reference, tokenizer


def load_data(config: RLHFConfig, tokenizer) -> StageData:
    train_prompts, held_prompts, report = load_prompts(config.data, tokenizer)
    return StageData(train_prompts, held_prompts[: config.eval.prompts], report)


def prepare(config: RLHFConfig, reference, tokenizer, data: StageData) -> RLFit:
    """The train state (its own copies of the weights; resumed when the loop starts), the iteration
    step and the held-out evaluation, on the run's mesh."""
    mesh = make_run_mesh(config.mesh)
    optimizer = make_optimizer(config.optim)
    state = initial_state(config, reference, optimizer, mesh)
    reference_src, reward_src = training_views(config, reference, tokenizer, mesh)
    shardings = rl_shardings(state, mesh)
    layout = rollout_layout(config, shardings[1])  # each process collates only its prompts
    iterate, kl_coef = make_iteration(config, optimizer, reference_src, reward_src, shardings, layout)
    stream = functools.partial(prompt_stream, data.train, config, tokenizer.pad_id, take=layout.prompts)
    manifest = {"config": to_dict(config), "model_config": reference.config}
    held = data.heldout
    evaluate = held_out_eval(config, reference_src, reward_src, held, tokenizer, mesh) if held else None
    return RLFit(config, state, iterate, kl_coef, stream, manifest, shardings[0], evaluate)


RLHF_STAGE = StageSpec(
    load=load_policy,
    data=load_data,
    prepare=prepare,
    export=export_model,
    configure=lambda config, tokenizer: with_tokenizer_ids(config, tokenizer),  # looked up at each call
    compare=lambda config, before, after: compare_samples(before, after, config.eval.samples),
)


def run_rlhf(config: RLHFConfig) -> dict:
    """Train (or resume, or skip if finished); returns the summary written to summary.json."""
    return run_stage(config, RLHF_STAGE, log)


# ---- CLI -------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, "rlhf", "algorithm=grpo train.iterations=20 ppo.kl_coef=0.1")


def run(args) -> int:
    keys = ("algorithm", "iterations", "eval_before", "eval_after", "reward_gain", "export")
    return run_config_command(args, RLHFConfig, run_rlhf, keys)
