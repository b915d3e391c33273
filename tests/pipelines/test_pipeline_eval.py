"""The pipeline's eval stage: each variant is evaluated as it is exported, and a stage whose every
suite failed counts as unfinished (a rerun retries it instead of writing a card of failures)."""

import json

import pytest

from align.config_io import load_config
from pipelines.release.model_card import eval_section
from pipelines.pipeline import Pipeline, QuickstartConfig, StageStopped, run_pipeline
from safety_evals import cli as eval_cli
from safety_evals import results
from safety_evals.review.documents import load_results
from tests.paths import CONFIGS, VARIANTS

CONFIG = str(CONFIGS / "quickstart_tiny.yaml")


def _suite(ok: bool) -> dict:
    data = results.DataInfo("d.jsonl", "ab" * 32, 1)
    return results.run_suite("1", lambda: results.SuiteResult(data, metrics={}) if ok else 1 / 0)


@pytest.fixture
def pipeline(tmp_path):
    return Pipeline(load_config(QuickstartConfig, CONFIG, [f"output_dir={tmp_path}", VARIANTS]), CONFIG)


def _fake_eval(statuses: dict[str, bool], seen: list):
    def run(args):
        seen.append(args)
        doc = results.build_document(
            model=results.model_record("m", None, variant=args.variant),
            config={"chat_template": args.chat_template, "system_prompt": args.system_prompt},
            suites={name: _suite(ok) for name, ok in statuses.items()},
        )
        results.write_atomic(args.out, doc)
        return 0 if all(statuses.values()) else 1

    return run


def test_each_variant_is_evaluated_with_its_template_and_system_prompt(pipeline, monkeypatch):
    seen = []
    monkeypatch.setattr(eval_cli, "run", _fake_eval({"hedging": True}, seen))
    for v in pipeline.variants:
        assert pipeline.run_eval(v) is None
    chat, developer = pipeline.variants
    assert [a.variant for a in seen] == ["chat", "developer"]
    assert seen[0].chat_template == "gemma" and seen[0].system_prompt == chat.system_prompt
    assert seen[1].chat_template == "gemma" and seen[1].system_prompt is None


def test_an_eval_where_every_suite_failed_stops_the_pipeline_and_is_retried(pipeline, monkeypatch, tmp_path):
    seen = []
    monkeypatch.setattr(eval_cli, "run", _fake_eval({"hedging": False, "crows_pairs": False}, seen))
    chat = pipeline.variants[0]
    stopped = pipeline.run_eval(chat)
    assert "every eval suite failed (ZeroDivisionError" in stopped["stopped"]
    assert not pipeline.results_file("chat").exists()  # unfinished: a rerun retries it
    assert (tmp_path / "evals" / "chat.failed.json").exists()

    stage = next(s for s in pipeline.stages() if s.name == "eval:chat")
    monkeypatch.setattr(Pipeline, "stages", lambda self: [stage])
    with pytest.raises(StageStopped, match="stage eval:chat stopped early \\(every eval suite failed"):
        run_pipeline(pipeline.config, CONFIG)


def test_an_eval_where_some_suites_failed_is_finished(pipeline, monkeypatch):
    monkeypatch.setattr(eval_cli, "run", _fake_eval({"hedging": True, "crows_pairs": False}, []))
    assert pipeline.run_eval(pipeline.variants[0]) is None
    doc = json.loads(pipeline.results_file("chat").read_text())
    assert [s["status"] for s in doc["suites"].values()] == ["ok", "failed"]


@pytest.mark.parametrize(
    "config, says",
    [
        ({"chat_template": "gemma", "system_prompt": "Be kind."},
         'one user turn of the gemma chat template with the system prompt "Be kind."'),
        ({"chat_template": "gemma", "system_prompt": None}, "gemma chat template with no system prompt"),
        ({"chat_template": "none"}, "Generation prompts were raw text"),
        ({}, None),  # documents written before the template was recorded
    ],
)  # fmt: skip
def test_the_card_says_how_generation_prompts_were_wrapped(tmp_path, config, says):
    doc = results.build_document(
        model=results.model_record("m", None, variant="chat"), config=config, suites={"x": _suite(True)}
    )
    results.write_atomic(tmp_path / "r.json", doc)
    text = "\n".join(eval_section(load_results(tmp_path / "r.json"), "chat"))
    if says is None:
        assert "Generation prompts" not in text
    else:
        assert says in text


def test_the_card_marks_wilson_intervals(tmp_path):
    data = results.DataInfo("d.jsonl", "ab" * 32, 20)
    metrics = {
        "rate": results.mean_metric([0] * 20, higher_is_better=False),  # a proportion: Wilson
        "score": results.mean_metric([0.1, 0.3, 0.2], higher_is_better=True),
    }  # bootstrap
    suite = results.run_suite("1", lambda: results.SuiteResult(data, metrics))
    doc = results.build_document(
        model=results.model_record("m", None, variant="chat"), config={}, suites={"x": suite}
    )
    results.write_atomic(tmp_path / "r.json", doc)
    loaded = load_results(tmp_path / "r.json")
    assert [m.ci_method for m in loaded.metrics().values()] == ["wilson", "bootstrap"]
    rows = [line for line in eval_section(loaded, "chat") if line.startswith("| x |")]
    assert rows[0].startswith("| x | rate | 0 | [0, 0.16") and "(Wilson)" in rows[0]
    assert "(Wilson)" not in rows[1]
