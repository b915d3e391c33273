"""Knowledge distillation: `align distill --config configs/distill/<name>.yaml [key=value ...]`.

A student learns the frozen teacher's next-token distributions (align.rl.distill) on fixed data
(prompts + responses, e.g. teacher samples) and, on a `distill.on_policy` share of the steps, on its
own samples scored by the teacher (GKD). The student is a smaller copy of the teacher (every other
layer, or the first N) or any model spec with the teacher's vocabulary.

Run directory (`output_dir`), as for SFT:
    config.yaml, checkpoints/<step>/ (student weights and Adam moments, the frozen teacher, rng, data
    position), metrics.jsonl, tb/, eval_before.json (held-out KL to the teacher and NLL of the data),
    export/ (the student as a Hugging Face directory), summary.json (written last)
"""

from __future__ import annotations

import argparse
import dataclasses
import logging

import numpy as np

from align import checks
from align.data import DataOrder, batches, pad_batch
from align.config_io import to_dict
from align.errors import InvalidInput
from align.hub import ModelOptions, load_model
from align.model.sharding import shard_model
from align.rl.distill import (
    Distiller,
    DistillLoss,
    OnPolicy,
    distill_eval_fn,
    distill_loss_fn,
    is_on_policy,
    kept_layers,
    sparse_loss_fn,
    student_from_teacher,
    student_only,
    topk_targets,
    with_on_policy,
)
from align.training import OptimConfig, make_optimizer
from align.training.optim import learning_rate_schedule
from align.training.feed import Zipped, chunk_rows, local_rows, rows_on_mesh
from align.training.options import MeshOptions, TrainOptions, make_run_mesh
from align.training.run import prepare_run, with_lora
from align.training.stage import LoopFit, StageData, StageSpec, held_out_eval, run_stage
from align.training.step import make_eval_step
from pipelines.commands.config import add_config_arguments, run_config_command
from pipelines.stages.sft import SFTDataOptions, _eval_batches, _train_batches, export_model, load_sft_data

log = logging.getLogger("align.distill")


@dataclasses.dataclass(frozen=True)
class StudentOptions:
    init: str = "teacher"  # teacher: a copy of the teacher keeping some layers | model: `model` below
    keep: str = "every_other"  # with init=teacher: every_other | first_n
    num_layers: int = 0  # with keep=first_n: how many of the teacher's first layers
    model: ModelOptions = ModelOptions()  # with init=model: any spec sharing the teacher's vocabulary

    def __post_init__(self):
        checks.one_of(self, "init", ("teacher", "model"))
        checks.one_of(self, "keep", ("every_other", "first_n"))
        checks.at_least(self, 0, "num_layers")


@dataclasses.dataclass(frozen=True)
class DistillOptions:
    beta: float = 0.0  # 0 forward KL(teacher || student) as Gemma 2, 1 reverse KL, between: GKD's JSD
    temperature: float = 1.0
    on_policy: float = 0.0  # GKD's lambda: the share of steps on the student's own samples
    max_new_tokens: int = 32  # on-policy response length
    sample_temperature: float = 1.0  # the student's sampling temperature on on-policy steps
    chunk_size: int = 256  # tokens per logits tile
    vocab_chunk: int | None = None  # vocabulary rows per slice (None: whole vocabulary per tile)
    # > 0: sparse targets: the teacher's top-k log-probs, computed in one teacher pass over the data when
    # the run starts and kept with each sequence; training then runs the student alone (forward KL to
    # the teacher renormalised on its top k, align.training.distill.sparse_topk_kl)
    topk: int = 0

    def loss(self) -> DistillLoss:
        return DistillLoss(self.beta, self.temperature, self.chunk_size, self.vocab_chunk)


@dataclasses.dataclass(frozen=True)
class DistillConfig:
    output_dir: str
    teacher: ModelOptions = ModelOptions()
    student: StudentOptions = StudentOptions()
    data: SFTDataOptions = SFTDataOptions()
    distill: DistillOptions = DistillOptions()
    optim: OptimConfig = OptimConfig()  # optim.total_steps is the run length
    train: TrainOptions = TrainOptions()
    mesh: MeshOptions = MeshOptions()
    export: bool = True

    def __post_init__(self):
        try:
            self.distill.loss()
            self.on_policy(0)
        except ValueError as e:
            raise InvalidInput(f"distill: {e}") from None
        if (self.distill.on_policy > 0 or self.distill.topk > 0) and self.data.packing:
            # an on-policy batch takes one prompt per row (align.rl.distill.prompt_lengths), and stored
            # targets one sequence per row
            raise InvalidInput("distill.on_policy > 0 and distill.topk > 0 need data.packing: false")
        if self.distill.topk > 0 and self.distill.on_policy > 0:
            raise InvalidInput(
                "distill.topk (stored teacher targets) cannot score on-policy samples: set one"
            )
        if self.distill.topk < 0:
            raise InvalidInput(f"distill.topk must be >= 0, got {self.distill.topk}")

    def on_policy(self, pad_id: int, stop_ids: tuple[int, ...] = ()) -> OnPolicy:
        d = self.distill
        return OnPolicy(d.on_policy, d.max_new_tokens, d.sample_temperature, stop_ids, pad_id)


def load_pair(config: DistillConfig):
    """(Distiller(student, teacher), the teacher's tokenizer)."""
    teacher, tokenizer = load_model(config.teacher)
    s = config.student
    if s.init == "teacher":
        try:
            keep = kept_layers(teacher.config.num_layers, s.keep, s.num_layers)
        except ValueError as e:
            raise InvalidInput(f"student: {e}") from None
        student = student_from_teacher(teacher, keep)
        log.info("student: teacher layers %s of %d", keep, teacher.config.num_layers)
    else:
        student, _ = load_model(s.model)
    if student.config.vocab_size != teacher.config.vocab_size:
        raise InvalidInput(
            f"student.model {s.model.spec!r}: vocabulary {student.config.vocab_size} differs from the "
            f"teacher's {teacher.config.vocab_size}"
        )
    return Distiller(student, teacher), tokenizer


def _prepare(config: DistillConfig, pair: Distiller, tokenizer, data: StageData) -> LoopFit:
    """The run (resumed when possible): student trainable, teacher frozen in the same state."""
    if config.distill.topk:
        return _prepare_sparse(config, pair, tokenizer, data)
    pair.student = with_lora(pair.student, config.train)
    mesh = make_run_mesh(config.mesh)
    run = prepare_run(  # the teacher is in the state's frozen part: sharded like the student
        pair,
        make_optimizer(config.optim),
        distill_loss_fn(config.distill.loss()),
        run_dir=config.output_dir,
        train=config.train,
        mesh=mesh,
        trainable=student_only(config.train.trainable),
        learning_rate=learning_rate_schedule(config.optim),
        manifest={"config": to_dict(config), "model_config": pair.student.config},
    )
    on_policy = config.on_policy(tokenizer.pad_id, tuple(tokenizer.stop_ids))
    run.step_fn = with_on_policy(run.step_fn, on_policy, config.train.seed, mesh=mesh)
    run.eval_fn = make_eval_step(distill_eval_fn(config.distill.loss()))
    pad, take = tokenizer.pad_id, local_rows(mesh, config.train.batch_size)  # this process's rows
    held = lambda: _eval_batches(data.heldout, config, pad, take)  # noqa: E731
    evaluate = held_out_eval(run, held, config.train.eval_batches) if data.heldout else None
    return DistillFit(
        run, _train_batches(data.train, config, pad, take), config.optim.total_steps, evaluate, config
    )


class DistillFit(LoopFit):
    """LoopFit whose summary also counts the on-policy steps (fixed by the seed, so also across resumes)."""

    def __init__(self, run, make_batches, total_steps, evaluate, config: DistillConfig):
        super().__init__(run, make_batches, total_steps, evaluate)
        self._on_policy = (config.train.seed, config.distill.on_policy)

    def run(self):
        result = super().run()
        seed, fraction = self._on_policy
        on = sum(is_on_policy(seed, k, fraction) for k in range(result.step))
        result.summary["on_policy_steps"] = on
        return result


def _with_targets(seqs, teacher, config: DistillConfig, pad: int, mesh) -> Zipped:
    """(sequence, top-k ids [T, K], top-k log-probs [T, K]) items: one teacher pass over `seqs`, `rows`
    at a time, each process laying out only its rows of each (chunk_rows), so a process tokenizes only
    its share; the rows split over the mesh's data axes; every process gets all the targets."""
    rows, length, d = config.train.batch_size, config.data.max_length, config.distill
    if d.topk > teacher.config.vocab_size:
        raise InvalidInput(f"distill.topk={d.topk} exceeds the vocabulary ({teacher.config.vocab_size})")
    if not len(seqs):
        return Zipped(seqs, None, None)
    take = local_rows(mesh, rows)
    ids, lps = [], []
    for mine in chunk_rows(len(seqs), rows, take):
        local = pad_batch([seqs[k] for k in mine], length, rows=take.stop - take.start, pad_id=pad)
        batch = rows_on_mesh({k: local[k] for k in ("tokens", "positions", "segment_ids")}, mesh, rows)
        chunk_ids, chunk_lps = topk_targets(teacher, batch, d.topk, d.chunk_size)
        ids.append(chunk_ids)
        lps.append(chunk_lps)
    n = len(seqs)  # [N rounded up to whole chunks, T, K] -> [N, T, K]
    return Zipped(seqs, np.concatenate(ids)[:n], np.concatenate(lps)[:n])


def _sparse_collate(rows: int, length: int, pad: int, k: int):
    def collate(items):  # `rows`: this process's rows of a batch, which may hold no sequence at all
        batch = pad_batch([s for s, _, _ in items], length, rows=rows, pad_id=pad)
        ids, lps = np.zeros((rows, length, k), np.int32), np.zeros((rows, length, k), np.float32)
        if items:
            ids[: len(items)] = np.stack([i for _, i, _ in items])
            lps[: len(items)] = np.stack([lp for _, _, lp in items])
        return {**batch, "topk_ids": ids, "topk_logps": lps}

    return collate


def _prepare_sparse(config: DistillConfig, pair: Distiller, tokenizer, data: StageData) -> LoopFit:
    """The run on stored top-k targets: the teacher runs once here, then only the student trains.

    The targets are recomputed (deterministically) when a stopped run resumes, so resume stays exact.
    """
    pad, rows, length = tokenizer.pad_id, config.train.batch_size, config.data.max_length
    mesh = make_run_mesh(config.mesh)
    teacher = shard_model(pair.teacher, mesh)  # on the student's mesh, as in the dense runs
    train_items = _with_targets(data.train, teacher, config, pad, mesh)
    held_items = _with_targets(data.heldout, teacher, config, pad, mesh)
    loss_fn = sparse_loss_fn(config.distill.loss())
    run = prepare_run(
        with_lora(pair.student, config.train),
        make_optimizer(config.optim),
        loss_fn,
        run_dir=config.output_dir,
        train=config.train,
        mesh=mesh,
        learning_rate=learning_rate_schedule(config.optim),
        manifest={"config": to_dict(config), "model_config": pair.student.config},
    )
    take = local_rows(mesh, rows)  # this process's rows of every batch
    collate = _sparse_collate(take.stop - take.start, length, pad, config.distill.topk)
    held = lambda: (  # noqa: E731
        collate([held_items[k] for k in mine]) for mine in chunk_rows(len(held_items), rows, take)
    )
    evaluate = held_out_eval(run, held, config.train.eval_batches) if len(held_items) else None
    order = DataOrder(len(train_items), seed=config.train.seed)
    make_batches = lambda pos: batches(train_items, order, pos, rows, collate, take=take)  # noqa: E731
    return DistillFit(run, make_batches, config.optim.total_steps, evaluate, config)


def _student(trained):
    """The student of a trained pair (the sparse-target runs train the student alone)."""
    return trained.student if isinstance(trained, Distiller) else trained


DISTILL_STAGE = StageSpec(
    load=load_pair,
    data=lambda config, tokenizer: load_sft_data(config.data, tokenizer),
    prepare=_prepare,
    export=lambda trained, tokenizer, path: export_model(_student(trained), tokenizer, path),
)


def run_distill(config: DistillConfig) -> dict:
    """Train (or resume, or skip if finished); returns the summary written to summary.json."""
    return run_stage(config, DISTILL_STAGE, log)


# ---- the pipeline's optional `distill:` stage: a third variant, nano ----------------------------


def with_nano(variants: tuple, distill: dict, source: str) -> tuple:
    """`variants` plus nano when the quickstart has a `distill:` section. nano takes its teacher
    variant's template, system prompt and generation settings, and its weights from the distill stage
    (source: distill), so the pipeline evaluates, gates and exports it like the others."""
    if not distill:
        return variants
    _, teacher = _teacher_variant(variants, distill, source)
    description = (
        f"The {teacher.name} variant distilled into a student of about half its depth, for small devices."
    )
    nano = dataclasses.replace(teacher, name="nano", source="distill", description=description)
    return (*variants, nano)


def _teacher_variant(variants, distill: dict, source: str):
    name = distill.get("teacher_variant", "chat")
    teacher = next((v for v in variants if v.name == name and v.source != "distill"), None)
    if teacher is None:
        names = ", ".join(v.name for v in variants)
        raise InvalidInput(f"{source}: distill.teacher_variant {name!r} is not a variant ({names})")
    return name, teacher


def pipeline_config(pipeline) -> DistillConfig:
    """The distill stage's config: the quickstart's `distill:` mapping (`align distill` keys, less
    output_dir and teacher) with the teacher variant's trained policy as the teacher."""
    from align.config_io import build

    _, teacher = _teacher_variant(pipeline.variants, pipeline.config.distill, pipeline.source)
    mapping = {k: v for k, v in pipeline.config.distill.items() if k != "teacher_variant"}
    model = dataclasses.replace(pipeline.config.model, spec=str(pipeline.policy_dir(teacher)), tokenizer=None)
    fixed = {"output_dir": str(pipeline.out / "distill"), "teacher": to_dict(model)}
    return build(DistillConfig, {**mapping, **fixed}, source=f"{pipeline.source}: distill")


def pipeline_stages(pipeline) -> list:
    """[the distill stage], or none without a `distill:` section; its eval and export are the pipeline's
    own (nano is one of pipeline.variants). The config is built here, before any stage runs, so that a
    typo fails first."""
    from pipelines.pipeline import Stage

    if not pipeline.config.distill:
        return []
    config = pipeline_config(pipeline)
    return [Stage("distill", pipeline.out / "distill" / "summary.json", lambda: run_distill(config), "nano")]


def stage_records(pipeline) -> list:
    """nano's training record for its card: its teacher variant's, then the distillation (held-out
    divergence to the teacher before -> after)."""
    from align.training.rundir import SUMMARY, read_json
    from pipelines.release.model_card import StageRecord, stage_records

    _, teacher = _teacher_variant(pipeline.variants, pipeline.config.distill, pipeline.source)
    config = pipeline_config(pipeline)
    summary = read_json(pipeline.out / "distill" / SUMMARY) or {}
    before, after = summary.get("eval_before") or {}, summary.get("eval_after") or {}
    kind = "forward KL" if config.distill.beta == 0 else f"JSD beta={config.distill.beta:g}"
    notes = f"{kind} to {teacher.name}, on-policy share {config.distill.on_policy:g}"
    if "loss" in before and "loss" in after:
        notes += f"; held-out divergence {before['loss']:.4f} -> {after['loss']:.4f}"
    record = StageRecord("distill", config.data.path, summary.get("step"), notes=notes)
    return [*stage_records(pipeline, teacher), record]


# ---- CLI -------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, "distill", "distill.beta=0.5 distill.on_policy=0.5 student.keep=first_n")


def run(args) -> int:
    return run_config_command(
        args, DistillConfig, run_distill, ("step", "on_policy_steps", "eval_before", "eval_after", "export")
    )
