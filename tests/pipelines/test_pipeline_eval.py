"""The pipeline's eval stage: each variant is evaluated as it is exported (safety_evals.api.run_eval with
typed options, no argv), and a stage whose every suite failed counts as unfinished (a rerun retries it
instead of writing a card of failures)."""

import dataclasses
import json

import pytest

from align.config_io import ConfigError, load_config
from align.errors import MissingInput
from pipelines.release.model_card import eval_section
from pipelines.pipeline import Pipeline, QuickstartConfig, run_pipeline
from pipelines.stage_runner import StageStopped
from safety_evals import api, results
from safety_evals.review.documents import load_results
from tests.paths import CONFIGS, VARIANTS
from tests.safety_evals.fakes import tiny_model_dir

CONFIG = str(CONFIGS / "quickstart_tiny.yaml")


def _suite(ok: bool) -> dict:
    data = results.DataInfo("d.jsonl", "ab" * 32, 1)
    return results.run_suite("1", lambda: results.SuiteResult(data, metrics={}) if ok else 1 / 0)


@pytest.fixture
def pipeline(tmp_path):
    return Pipeline(load_config(QuickstartConfig, CONFIG, [f"output_dir={tmp_path}", VARIANTS]), CONFIG)


def _fake_eval(statuses: dict[str, bool], seen: list):
    def run(options: api.EvalOptions) -> dict:
        seen.append(options)
        return results.build_document(
            model=results.model_record(options.model, None, variant=options.variant),
            config=api.config_record(options),
            suites={name: _suite(ok) for name, ok in statuses.items()},
        )

    return run


def test_each_variant_is_evaluated_with_its_template_and_system_prompt(pipeline, monkeypatch):
    seen = []
    monkeypatch.setattr(api, "run_eval", _fake_eval({"hedging": True}, seen))
    for v in pipeline.variants:
        assert pipeline.run_eval(v) is None
        assert load_results(pipeline.results_file(v.name)).model.variant == v.name
    chat, developer = pipeline.variants
    assert [o.variant for o in seen] == ["chat", "developer"]
    assert seen[0] == api.EvalOptions(
        model=str(pipeline.policy_dir(chat)),
        suites=("crows_pairs", "stereoset"),  # configs/quickstart_tiny.yaml's eval section
        limit=4,
        batch_size=8,
        variant="chat",
        chat_template="gemma",
        system_prompt=chat.system_prompt,
    )
    assert seen[1].chat_template == "gemma" and seen[1].system_prompt is None


def test_eval_options_from_the_config_reach_run_eval_and_typos_name_the_config(tmp_path):
    overrides = [f"output_dir={tmp_path}", VARIANTS, "eval.options={judge: self, seed: 3}"]
    pipeline = Pipeline(load_config(QuickstartConfig, CONFIG, overrides), CONFIG)
    options = pipeline.eval_options(pipeline.variants[0])
    assert (options.judge, options.seed, options.limit) == ("self", 3, 4)
    for bad, says in [("{jduge: llm}", "unknown key 'jduge'; did you mean 'judge'"),
                      ("{judge: bogus}", "judge: 'bogus' is not")]:  # fmt: skip
        config = load_config(
            QuickstartConfig, CONFIG, [f"output_dir={tmp_path}", VARIANTS, f"eval.options={bad}"]
        )
        with pytest.raises(ConfigError, match=rf"quickstart_tiny.yaml.*{says}"):
            Pipeline(config, CONFIG).check()  # before any training


def test_a_missing_policy_is_an_input_error_and_writes_no_results(pipeline):
    with pytest.raises(MissingInput, match="rl/export"):
        pipeline.run_eval(pipeline.variants[0])
    assert not pipeline.results_file("chat").exists()


def test_an_eval_where_every_suite_failed_stops_the_pipeline_and_is_retried(pipeline, monkeypatch, tmp_path):
    monkeypatch.setattr(api, "run_eval", _fake_eval({"hedging": False, "crows_pairs": False}, []))
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
    monkeypatch.setattr(api, "run_eval", _fake_eval({"hedging": True, "crows_pairs": False}, []))
    assert pipeline.run_eval(pipeline.variants[0]) is None
    doc = json.loads(pipeline.results_file("chat").read_text())
    assert [s["status"] for s in doc["suites"].values()] == ["ok", "failed"]


def test_the_eval_stage_runs_a_real_tiny_policy(pipeline, monkeypatch):
    """One real run_eval: a tiny random Gemma3 at the policy's export path, 2 CrowS pairs."""
    chat = pipeline.variants[0]
    tiny_model_dir(pipeline.policy_dir(chat))
    eval_section_ = dataclasses.replace(pipeline.config.eval, suites="crows_pairs", limit=2)
    monkeypatch.setattr(pipeline, "config", dataclasses.replace(pipeline.config, eval=eval_section_))
    assert pipeline.run_eval(chat) is None
    doc = load_results(pipeline.results_file("chat"))
    assert doc.model.variant == "chat" and doc.model.sha256 is not None
    assert {name: s.status for name, s in doc.suites.items()} == {"crows_pairs": "ok"}
    assert doc.suites["crows_pairs"].data["n"] == 2


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
