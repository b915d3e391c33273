"""Reward-model training: Bradley-Terry on preference pairs, on align.training's step/loop/checkpoints.

    summary = run_rm_training(RMConfig(output_dir="runs/rm", model=ModelOptions(spec="runs/sft/export"), ...))

The backbone comes from any model spec (typically the SFT export); a spec that is itself a reward
model export continues from its head. Run directory, resume and skip rules are those of the SFT
pipeline (pipelines/stages/sft.py): checkpoints/, metrics.jsonl, tb/, eval_before.json, export/ (a HF
sequence-classification directory), summary.json (written last; a finished run is not redone).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

import jax
from flax import nnx

from align.data import DataOrder, Tokenizer, batches, encode_preferences, load_records, preference_batch
from align.errors import InvalidInput
from align.training import LoopConfig, OptimConfig, make_optimizer
from align.training.optim import excluding, learning_rate_schedule, trainable_filter
from align.training.run import (
    MeshOptions,
    ModelOptions,
    SplitOptions,
    TrainOptions,
    fit,
    heldout_split,
    load_model,
    make_run_mesh,
    prepare_run,
    with_lora,
)
from align.training.rundir import finished_summary, read_json, write_json
from reward_models.evaluate import evaluate_reward_model
from reward_models.losses import bradley_terry_loss
from reward_models.model import (
    HEAD_BIAS,
    build_reward_model,
    is_reward_model_dir,
    load_reward_model,
    pair_rewards,
    save_reward_model,
)
from reward_models.probe import DEFAULT_L2_GRID, fit_probe

log = logging.getLogger("align.rm")


@dataclasses.dataclass(frozen=True)
class RMDataOptions:
    path: str = ""  # preference rows (align.data.load_records)
    split: str = "train"
    limit: int | None = None
    max_length: int = 512  # T of each [B, P, T] batch
    max_prompt_length: int | None = None  # default max_length // 2 (align.data.encode_preferences)
    skip_invalid: bool = True
    heldout: SplitOptions = SplitOptions()


@dataclasses.dataclass(frozen=True)
class ProbeOptions:
    """fit=probe: l2 picked from `l2_grid` by `folds`-fold cross-validation on the training pairs."""

    l2_grid: tuple[float, ...] = DEFAULT_L2_GRID
    folds: int = 5
    batch_size: int = 8  # pairs per feature forward


@dataclasses.dataclass(frozen=True)
class RMConfig:
    output_dir: str
    model: ModelOptions = ModelOptions()
    data: RMDataOptions = RMDataOptions()
    optim: OptimConfig = OptimConfig()  # optim.total_steps is the run length
    train: TrainOptions = TrainOptions()
    mesh: MeshOptions = MeshOptions()
    margin: float = 0.0  # the chosen reward must win by this much (Llama 2's margin loss)
    center_coef: float = 0.0  # weight of mean((r_c + r_r)^2)
    export: bool = True
    fit: str = "finetune"  # finetune: the training loop below | probe: head only, frozen backbone (probe.py)
    probe: ProbeOptions = ProbeOptions()

    def __post_init__(self):
        if self.fit not in ("finetune", "probe"):
            raise ValueError(f"fit={self.fit!r}: expected finetune or probe")


def rm_loss(margin: float = 0.0, center_coef: float = 0.0):
    """loss_fn(model, batch, rng): Bradley-Terry on the batch's [B, P] rewards (every row a real pair)."""

    def loss_fn(model, batch, rng):
        del rng
        r = pair_rewards(model, batch)  # [B, P]
        loss, metrics = bradley_terry_loss(r[:, 0], r[:, 1], margin if margin else None, center_coef)
        return loss, {**metrics, "n_pairs": float(r.shape[0])}

    return loss_fn


def rm_trainable(kind: str):
    """What trains: the backbone per `kind`, the head's weight always, the head's bias never."""
    backbone = trainable_filter(kind)
    if kind == "lora":
        backbone = nnx.Any(nnx.LoRAParam, nnx.All(nnx.Param, nnx.PathContains("head")))
    return excluding(backbone, HEAD_BIAS)


def load_pairs(options: RMDataOptions, tokenizer: Tokenizer):
    """(train pairs, held-out pairs, report) as TokenizedPairs."""
    if not options.path:
        raise InvalidInput("data.path is empty: set it in the config or with data.path=FILE")
    records = load_records(
        options.path, options.split, limit=options.limit, kind="preference", skip_invalid=options.skip_invalid
    )
    train_ex, held_ex = heldout_split(list(records), options.heldout)
    report, out = {"rows_loaded": len(records), "rows_skipped": records.report.skipped}, []
    for name, part in (("train", train_ex), ("heldout", held_ex)):
        pairs, stats = encode_preferences(
            part, tokenizer, max_length=options.max_length, max_prompt_length=options.max_prompt_length
        )
        report[name] = {"pairs": len(pairs), "truncation": dataclasses.asdict(stats)}
        out.append(pairs)
    if not out[0]:
        raise InvalidInput(
            f"{options.path}: no training pair (preference rows loaded: {len(records)}, "
            f"skipped: {records.report.skipped}, held out: {len(held_ex)}; skipped rows "
            "are logged with their reasons)"
        )
    return out[0], out[1], report


def load_reward_backbone(config: RMConfig):
    """(ScoreModel, Tokenizer): continue an exported reward model, or a fresh head on a decoder."""
    if is_reward_model_dir(config.model.spec):
        from align.training.run import DTYPES

        model, tokenizer = load_reward_model(
            config.model.spec, param_dtype=DTYPES[config.model.param_dtype], dtype=DTYPES[config.model.dtype]
        )
        model.backbone.remat = config.model.remat
        model.backbone = with_lora(model.backbone, config.train)
        return model, tokenizer
    backbone, tokenizer = load_model(config.model)
    return build_reward_model(with_lora(backbone, config.train), seed=config.model.seed), tokenizer


def run_rm_training(config: RMConfig) -> dict:
    """Train (or resume, or skip if finished) a reward model; returns the summary (summary.json)."""
    out = Path(config.output_dir)
    if (done := finished_summary(out, log)) is not None:
        return done
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "config.json", dataclasses.asdict(config))
    model, tokenizer = load_reward_backbone(config)
    train_pairs, held_pairs, data_report = load_pairs(config.data, tokenizer)
    log.info("data: %s", data_report)
    if config.fit == "probe":
        return _run_probe(config, model, tokenizer, train_pairs, held_pairs, data_report)
    run = prepare_run(
        model,
        make_optimizer(config.optim),
        rm_loss(config.margin, config.center_coef),
        run_dir=out,
        train=config.train,
        mesh=make_run_mesh(config.mesh),
        trainable=rm_trainable(config.train.trainable),
        learning_rate=learning_rate_schedule(config.optim),
        manifest={"config": dataclasses.asdict(config), "model_config": model.backbone.config},
    )
    del model  # the run's state holds the weights now; do not keep a second copy alive
    evaluate = _eval_fn(held_pairs, config, tokenizer.pad_id) if held_pairs else None
    if evaluate is not None and config.train.eval_before and not (out / "eval_before.json").exists():
        write_json(
            out / "eval_before.json", {"step": int(jax.device_get(run.state.step)), **evaluate(run.state)}
        )
    rows, length = config.train.batch_size, config.data.max_length
    order = DataOrder(len(train_pairs), seed=config.train.seed)

    def make_batches(position):
        return batches(
            train_pairs,
            order,
            position,
            rows,
            lambda b: preference_batch(b, length, rows=rows, pad_id=tokenizer.pad_id),
        )

    loop = LoopConfig(
        total_steps=config.optim.total_steps,
        log_every=config.train.log_every,
        eval_every=config.train.eval_every,
        checkpoint_every=config.train.checkpoint_every,
        progress=config.train.progress,
    )
    t0 = time.perf_counter()
    result = fit(run, make_batches, loop, evaluate)
    run.checkpointer.close()
    if result.stopped != "done" and result.step < config.optim.total_steps:
        log.warning("stopped at step %d (%s); run again to resume", result.step, result.stopped)
        return {"stopped": result.stopped, "step": result.step}
    summary = {
        "step": result.step,
        "seconds": time.perf_counter() - t0,
        "resumed_from": run.resumed_from,
        "data": data_report,
        "eval_before": read_json(out / "eval_before.json"),
        "eval_after": evaluate(result.state) if evaluate else None,
        "train_last": next((r for r in reversed(result.logs) if "loss" in r), None),
    }
    return _finish(config, summary, result.state.model(), tokenizer)


def _finish(config: RMConfig, summary: dict, model, tokenizer) -> dict:
    """Export the model (when asked) and write summary.json last: the run is finished."""
    out = Path(config.output_dir)
    if config.export:
        save_reward_model(model, out / "export", tokenizer=tokenizer)
        summary["export"] = str(out / "export")
    write_json(out / "summary.json", summary)
    return summary


def _run_probe(config: RMConfig, model, tokenizer, train_pairs, held_pairs, data_report) -> dict:
    """fit=probe: one feature pass over the training pairs, the head solved exactly, then as above."""
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    with tqdm(
        total=len(train_pairs),
        desc="rm probe features",
        unit="pair",
        dynamic_ncols=True,
        disable=not config.train.progress,
    ) as bar:
        model, report = fit_probe(
            model,
            train_pairs,
            batch_size=config.probe.batch_size,
            length=config.data.max_length,
            pad_id=tokenizer.pad_id,
            l2_grid=config.probe.l2_grid,
            folds=config.probe.folds,
            seed=config.train.seed,
            progress=bar.update,
        )
    log.info("probe: %s", report)
    summary = {
        "fit": "probe",
        "probe": report,
        "seconds": time.perf_counter() - t0,
        "data": data_report,
        "eval_after": evaluate_reward_model(
            model,
            held_pairs,
            batch_size=config.probe.batch_size,
            length=config.data.max_length,
            pad_id=tokenizer.pad_id,
            progress=config.train.progress,
        )
        if held_pairs
        else None,
    }
    return _finish(config, summary, model, tokenizer)


def _eval_fn(held, config: RMConfig, pad_id: int):
    def evaluate(state):
        return evaluate_reward_model(
            state.model(),
            held,
            batch_size=config.train.batch_size,
            length=config.data.max_length,
            pad_id=pad_id,
            progress=config.train.progress,
        )

    return evaluate
