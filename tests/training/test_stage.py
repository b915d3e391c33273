"""The one stage body (align.training.stage.run_stage) on a tiny model: the run directory's files, a
stop then a resume, a finished run returning its summary untouched, eval_before, eval_after one way;
and, with a fit without a model, the hooks RL uses (a count of iterations, a config completed from the
tokenizer, an evaluation that keeps samples and their comparison)."""

import dataclasses
import itertools
import json
import logging

import numpy as np
import pytest
from flax import nnx

from align.config_io import dump_yaml
from align.data import DataOrder, Tokenized, batches, pad_batch
from align.model import Decoder, ModelConfig
from align.training import OptimConfig, make_optimizer, read_metrics
from align.training.options import MeshOptions, TrainOptions, make_run_mesh
from align.training.run import prepare_run
from align.training import stage
from align.training.stage import (
    Evaluation,
    FitResult,
    LoopFit,
    StageData,
    StageSpec,
    eval_before_done,
    final_eval,
    held_out_eval,
    run_stage,
    write_eval_before,
)
from pipelines.stages.sft import sft_loss

V, T, ROWS, STEPS = 64, 12, 4, 6
CONFIG = ModelConfig.tiny(V).replace(num_layers=1, layer_types=("global",))
LOG = logging.getLogger("test_stage")


@dataclasses.dataclass(frozen=True)
class ToyConfig:
    output_dir: str
    train: TrainOptions = TrainOptions(batch_size=ROWS, log_every=2, progress=False, async_checkpoints=False)
    mesh: MeshOptions = MeshOptions(devices=1)
    export: bool = True


def docs(n: int, seed: int) -> list:
    rs = np.random.default_rng(seed)
    return [Tokenized(rs.integers(3, V, k).astype(np.int32), np.ones(k, bool)) for k in rs.integers(4, T, n)]


def toy_stage(calls: list, limit: int | None = None) -> StageSpec:
    """SFT on random documents; `calls` records which steps the body asked for; the data runs out after
    `limit` batches (a stop the body must resume from)."""

    def load(config):
        calls.append("load")
        return Decoder(CONFIG, rngs=nnx.Rngs(0)), None

    def data(config, tokenizer):
        return StageData(docs(40, 0), docs(8, 1), {"docs": 40})

    def prepare(config, model, tokenizer, data):
        run = prepare_run(
            model,
            make_optimizer(OptimConfig(total_steps=STEPS)),
            sft_loss(chunk_size=16),
            run_dir=config.output_dir,
            train=config.train,
            mesh=make_run_mesh(MeshOptions(devices=1)),
        )
        collate = lambda b: pad_batch(b, T, rows=ROWS)  # noqa: E731
        order = DataOrder(len(data.train), seed=0)
        make = lambda pos: itertools.islice(batches(data.train, order, pos, ROWS, collate), limit)  # noqa: E731
        held = lambda: (collate(data.heldout[i : i + ROWS]) for i in range(0, len(data.heldout), ROWS))  # noqa: E731
        return LoopFit(run, make, STEPS, held_out_eval(run, held, None))

    def export(model, tokenizer, path):
        calls.append("export")
        path.mkdir(parents=True)
        (path / "weights.txt").write_text(type(model).__name__)

    return StageSpec(load=load, data=data, prepare=prepare, export=export)


def test_stop_resume_finish_and_skip(tmp_path):
    out, calls = tmp_path / "run", []
    config = ToyConfig(output_dir=str(out))
    stopped = run_stage(config, toy_stage(calls, limit=3), LOG)  # data for 3 of the 6 steps
    assert stopped == {"stopped": "data_exhausted", "step": 3}
    assert sorted(p.name for p in out.iterdir()) == [
        "checkpoints",
        "config.yaml",
        "eval_before.json",
        "metrics.jsonl",
        "tb",
    ]  # no summary.json: the run is not finished
    assert (out / "config.yaml").read_text() == dump_yaml(config)
    before = (out / "eval_before.json").read_text()

    summary = run_stage(config, toy_stage(calls), LOG)
    assert summary["step"] == STEPS and summary["resumed_from"] == 3
    assert (out / "eval_before.json").read_text() == before  # computed once, at step 0
    assert summary["eval_before"]["step"] == 0 and summary["data"] == {"docs": 40}
    # eval_after is the loop's own evaluation at the final step, as metrics.jsonl logged it
    last_eval = [r for r in read_metrics(out / "metrics.jsonl") if "eval/loss" in r][-1]
    assert last_eval["step"] == STEPS and summary["eval_after"]["loss"] == pytest.approx(
        last_eval["eval/loss"]
    )
    assert summary["eval_after"]["loss"] < summary["eval_before"]["loss"]
    assert summary["export"] == str(out / "export") and (out / "export" / "weights.txt").exists()
    assert calls == ["load", "load", "export"]

    # finished: the summary comes back as written and nothing is loaded, trained or exported again
    again = run_stage(config, toy_stage(calls), LOG)
    assert again == json.loads((out / "summary.json").read_text())
    assert calls == ["load", "load", "export"]


def test_eval_before_false_writes_no_eval_before(tmp_path):
    config = ToyConfig(
        output_dir=str(tmp_path / "run"),
        train=dataclasses.replace(ToyConfig.train, eval_before=False),
        export=False,
    )
    summary = run_stage(config, toy_stage([]), LOG)
    assert summary["eval_before"] is None and not (tmp_path / "run" / "eval_before.json").exists()
    assert summary["eval_after"] is not None and "export" not in summary


def test_final_eval_prefers_the_final_steps_row_else_evaluates():
    evaluated = []

    def evaluate(state):
        evaluated.append(state)
        return {"loss": 9.0}

    logs = [{"step": 2, "eval/loss": 3.0}, {"step": 4, "loss": 1.0}, {"step": 4, "eval/loss": 2.0}]
    result = FitResult(step=4, stopped="done", final="S", model=lambda: None, logs=logs)
    assert final_eval(result, evaluate) == {"loss": 2.0} and evaluated == []
    # no evaluation at the final step (a resumed run with nothing left, a probe): evaluated now
    result = FitResult(step=5, stopped="done", final="S", model=lambda: None, logs=logs)
    assert final_eval(result, evaluate) == {"loss": 9.0} and evaluated == ["S"]
    assert final_eval(result, None) is None  # no held-out data


@dataclasses.dataclass(frozen=True)
class CountingConfig:
    output_dir: str
    tokenizer: str = ""  # completed from the tokenizer (spec.configure), as RL's stop ids are
    train: TrainOptions = TrainOptions()
    mesh: MeshOptions = MeshOptions(devices=1)
    export: bool = False


class CountingFit:
    """Counts iterations (as RL's fit): the "model" is a number w, 0 before training and 1 after;
    evaluate(w) keeps one sample per held-out item, reward w + item."""

    start, start_step = 0.0, None

    def __init__(self, calls: list, stop: bool):
        self.calls, self.stop = calls, stop

    def evaluate(self, w):
        self.calls.append(("evaluate", w))
        return Evaluation({"reward/mean": w + 1.0, "n": 3}, [{"item": i, "reward": w + i} for i in range(3)])

    def finished(self, result: FitResult) -> bool:
        return result.stopped == "done"

    def run(self) -> FitResult:
        its = 1 if self.stop else 2
        logs = [{"iteration": i, "kl": 0.1 * i} for i in range(1, its + 1)] + [{"eval/other": 9.0}]
        stopped, resumed = ("sigterm", None) if self.stop else ("done", 1)
        return FitResult(
            its, stopped, 1.0, lambda: 1.0, logs, resumed, {"kl_coef": 0.5}, counter="iterations"
        )


def counting_stage(calls: list, stop: bool = False) -> StageSpec:
    def compare(config, before, after):  # per item after - before; the first two items as rows
        gain = [a["reward"] - b["reward"] for b, a in zip(before, after)]
        return {"gain": gain}, [{"before": b["reward"], "after": a["reward"]} for b, a in zip(before, after)][
            :2
        ]

    return StageSpec(
        load=lambda config: (None, "tok"),
        data=lambda config, tokenizer: StageData([1], [0, 1, 2], {"prompts": 1}),
        prepare=lambda config, model, tokenizer, data: CountingFit(calls, stop),
        export=None,
        configure=lambda config, tokenizer: dataclasses.replace(config, tokenizer=tokenizer),
        compare=compare,
    )


def test_a_fit_counting_iterations_with_samples_and_their_comparison(tmp_path):
    out, calls = tmp_path / "run", []
    config = CountingConfig(output_dir=str(out))
    stopped = run_stage(config, counting_stage(calls, stop=True), LOG)
    assert stopped == {"stopped": "sigterm", "iterations": 1}
    # config.yaml is the completed config; eval_before.json has no "step"; its samples beside it
    assert (out / "config.yaml").read_text() == dump_yaml(dataclasses.replace(config, tokenizer="tok"))
    assert json.loads((out / "eval_before.json").read_text()) == {"reward/mean": 1.0, "n": 3}
    before = json.loads((out / "eval_before_samples.json").read_text())
    assert before == [{"item": i, "reward": float(i)} for i in range(3)]
    assert not (out / "eval_samples.jsonl").exists()

    summary = run_stage(config, counting_stage(calls), LOG)
    assert calls == [("evaluate", 0.0), ("evaluate", 1.0)]  # the start once, then the trained model
    assert summary["iterations"] == 2 and "step" not in summary and summary["resumed_from"] == 1
    assert summary["kl_coef"] == 0.5 and summary["data"] == {"prompts": 1}
    assert summary["eval_before"] == {"reward/mean": 1.0, "n": 3}
    assert summary["eval_after"] == {"reward/mean": 2.0, "n": 3}
    assert summary["gain"] == [1.0, 1.0, 1.0]
    rows = [json.loads(line) for line in (out / "eval_samples.jsonl").read_text().splitlines()]
    assert rows == [{"before": 0.0, "after": 1.0}, {"before": 1.0, "after": 2.0}]
    assert summary["train_last"] == {"iteration": 2, "kl": 0.2}  # not the evaluation row after it
    assert json.loads((out / "summary.json").read_text()) == summary


def test_a_run_killed_between_the_samples_and_eval_before_redoes_it(tmp_path, monkeypatch):
    # eval_before.json marks the starting model's evaluation done, so it is written after its samples
    fit, real_write, writes = CountingFit([], stop=False), stage.write_json, []

    def killed_at_the_second_write(path, obj):
        writes.append(path.name)
        if len(writes) == 2:
            raise KeyboardInterrupt  # the process dies here
        real_write(path, obj)

    monkeypatch.setattr(stage, "write_json", killed_at_the_second_write)
    with pytest.raises(KeyboardInterrupt):
        write_eval_before(tmp_path, TrainOptions(), fit, samples=True)
    assert writes == ["eval_before_samples.json", "eval_before.json"]
    assert not (tmp_path / "eval_before.json").exists() and not eval_before_done(tmp_path, samples=True)

    monkeypatch.setattr(stage, "write_json", real_write)
    write_eval_before(tmp_path, TrainOptions(), fit, samples=True)
    assert eval_before_done(tmp_path, samples=True)
    assert json.loads((tmp_path / "eval_before.json").read_text()) == {"reward/mean": 1.0, "n": 3}


def test_eval_before_without_its_samples_is_not_done(tmp_path):
    (tmp_path / "eval_before.json").write_text("{}")  # left by a run killed before the samples came first
    assert eval_before_done(tmp_path) and not eval_before_done(tmp_path, samples=True)
    (tmp_path / "eval_before_samples.json").write_text("[]")
    assert eval_before_done(tmp_path, samples=True)
