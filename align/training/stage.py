"""One training stage's body, shared by SFT, DPO, reward-model training (fine-tuned or probed),
distillation and RLHF.

    summary = run_stage(config, StageSpec(load=..., data=..., prepare=..., export=...), log)

The body, in order (each stage supplies the four steps of its StageSpec, and optionally two hooks):

    finished?        summary.json exists -> return it (a finished run is never redone)
    config.yaml      the resolved config, written atomically (align.config_io.write_config)
    load             model and tokenizer                                   (spec.load)
    config.yaml      rewritten when the tokenizer completes the config     (spec.configure)
    data             train / held-out items and a report                   (spec.data)
    prepare          the fit, resumed from the latest checkpoint if any    (spec.prepare)
    eval_before.json the starting model on the held-out items, once, when train.eval_before
                     (+ eval_before_samples.json, written first, when the evaluation keeps samples)
    fit              the loop (or a closed-form fit); a stopped run returns {"stopped", <counter>}
    summary          <counter> (step or iterations), the fit's own entries, seconds, resumed_from,
                     data, eval_before, eval_after (`final_eval`), train_last
    eval_samples     with samples, spec.compare: its summary entries and eval_samples.jsonl
    export/          the trained model, when config.export                 (spec.export)
    summary.json     written last, atomically: its presence means the run is finished

so every stage's run directory holds the same files written the same way.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

import jax

from align import distributed
from align.config_io import write_config
from align.fileio import write_text_atomic
from align.training.feed import global_batches, global_eval_batches
from align.training.loop import LoopConfig
from align.training.options import MeshOptions, TrainOptions, make_run_mesh
from align.training.run import Run, evaluate, fit
from align.training.rundir import SUMMARY, finished_summary, read_json, write_json

EVAL_BEFORE = "eval_before.json"
EVAL_BEFORE_SAMPLES = "eval_before_samples.json"
EVAL_SAMPLES = "eval_samples.jsonl"


class StageConfig(Protocol):
    """The fields of a stage's config the body reads; the rest is the stage's own."""

    output_dir: str
    train: TrainOptions
    mesh: MeshOptions
    export: bool


@dataclasses.dataclass(frozen=True)
class StageData:
    train: list  # training items (sequences, pairs, ...)
    heldout: list  # held-out items (may be empty: then no evaluation)
    report: dict  # rows loaded, skipped, truncated: copied into the summary


@dataclasses.dataclass
class Evaluation:
    """A held-out evaluation that keeps per-item samples (e.g. RL's responses and their rewards), so
    that spec.compare can set the final model's beside the starting model's."""

    metrics: dict
    samples: list[dict]


@dataclasses.dataclass
class FitResult:
    step: int | None  # optimizer steps done (None: a fit without steps, e.g. a closed-form probe)
    stopped: str  # done | sigterm | data_exhausted (align.training.loop)
    final: Any  # what the fit's `evaluate` takes: the final train state (or model)
    model: Callable[[], Any]  # () -> the trained model, for the export
    logs: list[dict] = dataclasses.field(default_factory=list)  # the loop's rows (eval rows "eval/...")
    resumed_from: int | None = None
    summary: dict = dataclasses.field(default_factory=dict)  # the fit's own summary entries
    counter: str = "step"  # what `step` counts, as the summary's key: "step", or "iterations" (RL)


class Fit(Protocol):
    """A prepared fit: where it starts, how it evaluates (None: no held-out data), how it runs."""

    start: Any  # what `evaluate` takes, before training
    start_step: int | None  # eval_before.json's "step" (None: left out, e.g. RL counts iterations)
    evaluate: Callable[[Any], Mapping | Evaluation] | None
    finished: Callable[[FitResult], bool]

    def run(self) -> FitResult: ...


@dataclasses.dataclass(frozen=True)
class StageSpec:
    """What one training stage supplies to `run_stage`; everything else is the shared body."""

    load: Callable[[Any], tuple[Any, Any]]  # config -> (model, tokenizer)
    data: Callable[[Any, Any], StageData]  # (config, tokenizer) -> StageData
    prepare: Callable[[Any, Any, Any, StageData], Fit]  # (config, model, tokenizer, data) -> Fit
    export: Callable[[Any, Any, Path], Any]  # (trained model, tokenizer, directory) -> written
    # (config, tokenizer) -> the config completed from the tokenizer (e.g. stop ids), as config.yaml
    configure: Callable[[Any, Any], Any] | None = None
    # (config, samples before, samples after) -> (summary entries, eval_samples.jsonl rows), for a fit
    # whose evaluate returns an Evaluation (e.g. RL's paired reward gain)
    compare: Callable[[Any, list, list], tuple[dict, list[dict]]] | None = None


def loop_config(train: TrainOptions, total_steps: int) -> LoopConfig:
    """The host loop's settings from a config's `train` section."""
    return LoopConfig(
        total_steps=total_steps,
        log_every=train.log_every,
        eval_every=train.eval_every,
        checkpoint_every=train.checkpoint_every,
        progress=train.progress,
    )


class LoopFit:
    """The usual fit: align.training's resumable train loop over `make_batches` from a prepared Run.

    evaluate(state): held-out metrics of a train state (None: no held-out data).
    """

    def __init__(
        self,
        run: Run,
        make_batches: Callable[[Mapping | None], Iterator],
        total_steps: int,
        evaluate: Callable[[Any], Mapping] | None = None,
    ):
        self._run, self.make_batches, self.total_steps, self.evaluate = (
            run,
            make_batches,
            total_steps,
            evaluate,
        )
        self.start = run.state
        self.start_step = int(jax.device_get(run.state.step))

    def finished(self, result: FitResult) -> bool:
        return result.stopped == "done" or result.step >= self.total_steps

    def run(self) -> FitResult:
        run = self._run
        self.start = None  # the loop donates the starting state's buffers
        rows = run.train.batch_size

        def make_batches(position):  # each process's rows -> global arrays
            return global_batches(self.make_batches(position), run.mesh, rows)

        result = fit(run, make_batches, loop_config(run.train, self.total_steps), self.evaluate)
        run.checkpointer.close()
        return FitResult(
            step=result.step,
            stopped=result.stopped,
            final=result.state,
            model=result.state.model,
            logs=result.logs,
            resumed_from=run.resumed_from,
        )


def held_out_eval(run: Run, batches: Callable[[], Iterator], limit: int | None):
    """evaluate(state): the loss's weighted metrics over the held-out `batches()` (at most `limit`);
    `batches()` yields this process's rows of each [train.batch_size, ...] batch."""

    def held_out(state):
        return evaluate(
            run.eval_fn, state, global_eval_batches(batches(), run.mesh, run.train.batch_size), limit
        )

    return held_out


def final_eval(
    result: FitResult, evaluate: Callable[[Any], Mapping | Evaluation] | None
) -> Mapping | Evaluation | None:
    """eval_after, one way for every stage: the held-out evaluation of the final model.

    The loop's own evaluation at the final step when it logged one (it evaluates there whenever it
    reaches total_steps), else evaluated now (a fit without a loop, or a resumed run whose loop had
    nothing left to do). None without held-out data.
    """
    if evaluate is None:
        return None
    for row in reversed(result.logs):
        if row.get("step") == result.step and any(k.startswith("eval/") for k in row):
            return {k[len("eval/") :]: v for k, v in row.items() if k.startswith("eval/")}
    return evaluate(result.final)


def _split(evaluation: Mapping | Evaluation) -> tuple[dict, list | None]:
    """(metrics, samples or None)."""
    if isinstance(evaluation, Evaluation):
        return evaluation.metrics, evaluation.samples
    return dict(evaluation), None


def eval_before_done(out: Path, samples: bool = False) -> bool:
    """eval_before.json exists, and with samples (a stage that compares them) eval_before_samples.json
    too: the samples are written first, but a run directory from before they were can hold
    eval_before.json alone, and the comparison after training needs both."""
    return (out / EVAL_BEFORE).exists() and (not samples or (out / EVAL_BEFORE_SAMPLES).exists())


def write_eval_before(out: Path, train: TrainOptions, prepared: Fit, samples: bool = False) -> None:
    """eval_before.json: the starting model on the held-out items, once per run, when train.eval_before;
    its samples (when the evaluation keeps them) first, so eval_before.json marks both done."""
    if prepared.evaluate is None or not train.eval_before or eval_before_done(out, samples):
        return
    # on every process: the batches span all of them
    metrics, items = _split(prepared.evaluate(prepared.start))
    if distributed.is_primary():
        if items is not None:
            write_json(out / EVAL_BEFORE_SAMPLES, items)
        step = {} if prepared.start_step is None else {"step": prepared.start_step}
        write_json(out / EVAL_BEFORE, {**step, **metrics})
    distributed.barrier("eval-before")


def held_out_summary(out: Path, config, spec: StageSpec, result: FitResult, prepared: Fit) -> dict:
    """eval_before, eval_after and, for a stage that compares samples, its entries; process 0 writes
    eval_samples.jsonl (the comparison's rows)."""
    evaluation = final_eval(result, prepared.evaluate)
    after, samples = (None, None) if evaluation is None else _split(evaluation)
    entries = {"eval_before": read_json(out / EVAL_BEFORE), "eval_after": after}
    before = read_json(out / EVAL_BEFORE_SAMPLES) if spec.compare is not None else None
    if before is not None and samples is not None:
        more, rows = spec.compare(config, before, samples)
        entries.update(more)
        if distributed.is_primary():
            write_text_atomic(out / EVAL_SAMPLES, "".join(json.dumps(r) + "\n" for r in rows))
    return entries


def train_last(logs: list[dict]) -> dict | None:
    """The fit's last training row (not a held-out evaluation's "eval/..." row)."""
    return next((r for r in reversed(logs) if not any(k.startswith("eval/") for k in r)), None)


def run_stage(config: StageConfig, spec: StageSpec, log: logging.Logger) -> dict:
    """Train (or resume, or skip if finished); returns the summary written to summary.json."""
    out = Path(config.output_dir)
    if (done := finished_summary(out, log)) is not None:
        return done
    make_run_mesh(config.mesh)  # a mesh the devices cannot fill fails now, before any file, model or data
    out.mkdir(parents=True, exist_ok=True)
    primary = distributed.is_primary()  # run files: process 0 writes, the others read (a shared directory)
    if primary:
        write_config(out, config)
    model, tokenizer = spec.load(config)
    if spec.configure is not None and (completed := spec.configure(config, tokenizer)) != config:
        config = completed
        if primary:
            write_config(out, config)
    data = spec.data(config, tokenizer)
    log.info("data: %s", data.report)
    prepared = spec.prepare(config, model, tokenizer, data)
    del model  # the prepared fit holds the weights now; do not keep a second copy alive
    write_eval_before(out, config.train, prepared, samples=spec.compare is not None)
    t0 = time.perf_counter()
    result = prepared.run()
    if not prepared.finished(result):
        log.warning("stopped at %s %s (%s); run again to resume", result.counter, result.step, result.stopped)
        return {"stopped": result.stopped, result.counter: result.step}
    summary = {
        result.counter: result.step,
        **result.summary,
        "seconds": time.perf_counter() - t0,
        "resumed_from": result.resumed_from,
        "data": data.report,
        **held_out_summary(out, config, spec, result, prepared),
        "train_last": train_last(result.logs),
    }
    if config.export:  # every process: the export gathers parameters spread over hosts
        spec.export(result.model(), tokenizer, out / "export")
        summary["export"] = str(out / "export")
    if primary:
        write_json(out / SUMMARY, summary)
    distributed.barrier("summary")  # no process reports done before summary.json exists
    return summary
