"""`align eval` end to end on the fake LM: document, failed suites, exit codes, CLI wiring."""

import json

import pytest

from pipelines.cli import main
from safety_evals import api
from safety_evals.suites import ifeval
from safety_evals.review import documents as results_io
from tests.safety_evals.fakes import FakeJudge, FakeLM, FakeScorer
from tests.safety_evals.rule_judges import hedge_judge

FAKE_JUDGES = {
    "truth": FakeJudge("truth", lambda r: "true"),
    "info": FakeJudge("info", lambda r: "uninformative"),
    "hedge": hedge_judge(),
    "refusal": FakeJudge("refusal", lambda r: "full_compliance"),
    "attribution": FakeJudge("attribution", lambda r: "attributable"),
}


@pytest.fixture
def fake_model(monkeypatch):
    lm = FakeLM(default="I don't know.")
    monkeypatch.setattr(api, "load_lm", lambda options: (lm, None))
    monkeypatch.setattr(api, "toxicity_scorer", lambda options: FakeScorer())
    monkeypatch.setattr(api, "trained_judge", FAKE_JUDGES.__getitem__)
    return lm


def test_eval_writes_a_valid_document(tmp_path, fake_model):
    out = tmp_path / "r.json"
    code = main(
        [
            "eval",
            "--model",
            "fake",
            "--suite",
            "crows_pairs,stereoset,bbq,hedging,toxicity,factuality",
            "--limit",
            "3",
            "--out",
            str(out),
            "--toxicity-samples",
            "2",
            "--no-progress",
            "--step",
            "7",
        ]
    )
    assert code == 0
    doc = json.loads(out.read_text())
    assert list(doc["suites"]) == ["crows_pairs", "stereoset", "bbq", "hedging", "toxicity", "factuality"]
    assert all(s["status"] == "ok" for s in doc["suites"].values())
    assert doc["suites"]["crows_pairs"]["data"]["n"] == 3
    assert doc["suites"]["hedging"]["metrics"]["hedge_rate_unanswerable"]["value"] == 1.0
    assert doc["suites"]["hedging"]["judges"] == {"hedge": FAKE_JUDGES["hedge"].identity()}
    assert doc["suites"]["factuality"]["metrics"]["truthful_informative_rate"]["value"] == 0.0
    assert set(doc["suites"]["factuality"]["judges"]) == {"truth", "info"}
    assert doc["suites"]["crows_pairs"]["judges"] == {}
    assert doc["model"] == {"name": "fake", "path": None, "sha256": None, "variant": None, "step": 7}
    assert doc["config"]["limit"] == 3 and doc["config"]["suites"][0] == "crows_pairs"
    parsed = results_io.load_results(out)  # the consumer's strict reader accepts it
    assert "stereoset.icat" in parsed.metrics() and "bbq.bias_score_ambig/Age" in parsed.metrics()
    assert fake_model.gen_calls[1]["num_samples"] == 2  # toxicity after hedging


def test_a_failing_suite_is_recorded_and_the_others_run(tmp_path, fake_model):
    out = tmp_path / "r.json"
    code = main(
        [
            "eval",
            "--model",
            "fake",
            "--suite",
            "crows_pairs,stereoset",
            "--limit",
            "2",
            "--data",
            f"stereoset={tmp_path / 'missing.jsonl'}",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert code == 1
    suites = json.loads(out.read_text())["suites"]
    assert suites["crows_pairs"]["status"] == "ok"
    assert suites["stereoset"]["status"] == "failed" and suites["stereoset"]["metrics"] == {}
    assert "missing.jsonl" in suites["stereoset"]["error"]


@pytest.mark.parametrize("model", ["/nope/model", "no-such-model"])
def test_a_model_that_cannot_be_loaded_exits_2_with_one_line_and_no_document(tmp_path, capsys, model):
    """README: a missing model is exit 2. It is raised by align.load before any suite runs, so no
    document of failed suites is written (a pipeline rerun retries the stage)."""
    out = tmp_path / "r.json"
    code = main(
        ["eval", "--model", model, "--suite", "hedging,crows_pairs", "--out", str(out), "--no-progress"]
    )
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("align eval: error: ") and repr(model) in err[0]
    assert not out.exists()


def test_chat_variant_wraps_generation_prompts_only(tmp_path, fake_model):
    out = tmp_path / "r.json"
    assert (
        main(
            [
                "eval",
                "--model",
                "fake",
                "--suite",
                "hedging,crows_pairs",
                "--limit",
                "1",
                "--variant",
                "chat",
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    prompt = fake_model.gen_calls[0]["prompts"][0]
    assert prompt.startswith("<start_of_turn>user\nQ: ") and prompt.endswith("<start_of_turn>model\n")
    assert fake_model.ll_calls[-1][0][0] == ""  # crows_pairs scoring unchanged
    assert json.loads(out.read_text())["model"]["variant"] == "chat"


def test_any_variant_name_with_its_template_and_system_prompt(tmp_path, fake_model):
    out = tmp_path / "r.json"
    argv = ["eval", "--model", "fake", "--suite", "hedging", "--limit", "1", "--variant", "safety",
            "--chat-template", "gemma", "--system-prompt", "Be brief.",
            "--out", str(out), "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    prompt = fake_model.gen_calls[0]["prompts"][0]
    assert prompt.startswith("<start_of_turn>user\nBe brief.\n\nQ: ")
    doc = json.loads(out.read_text())
    assert doc["model"]["variant"] == "safety"
    assert doc["config"]["chat_template"] == "gemma" and doc["config"]["system_prompt"] == "Be brief."


def test_developer_variant_keeps_raw_prompts_unless_a_template_is_named(tmp_path, fake_model):
    argv = ["eval", "--model", "fake", "--suite", "hedging", "--limit", "1", "--variant", "developer",
            "--out", str(tmp_path / "r.json"), "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    assert fake_model.gen_calls[0]["prompts"][0].startswith("Q: ")


def test_crows_hub_config_reaches_the_loader(tmp_path, fake_model, monkeypatch):
    from safety_evals.suites import crows_pairs

    seen = {}

    def fake_load(source, limit, *, hub_config=None):
        seen.update(source=source, hub_config=hub_config)
        raise RuntimeError("stop here")

    monkeypatch.setattr(crows_pairs, "load", fake_load)
    out = tmp_path / "r.json"
    argv = ["eval", "--model", "fake", "--suite", "crows_pairs", "--out", str(out), "--no-progress",
            "--data", "crows_pairs=jannalu/crows_pairs_multilingual",
            "--data-config", "crows_pairs=english"]  # fmt: skip
    assert main(argv) == 1
    assert seen == {"source": "jannalu/crows_pairs_multilingual", "hub_config": "english"}
    assert json.loads(out.read_text())["config"]["data_config"] == {"crows_pairs": "english"}


@pytest.mark.parametrize(
    "argv, says",
    [(["--suite", "nope"], "suites: unknown ['nope']"), (["--suite", ","], "suites: unknown (none given)"),
     (["--data", "stereoset"], "--data 'stereoset': expected SUITE=SOURCE"),
     (["--data", "x=y"], "data: ['x'] is not SUITE"), (["--data", "bbq="], "data: ['bbq'] is not SUITE"),
     (["--system-prompt", "hi"], "system_prompt needs a chat template"),
     (["--data-config", "stereoset=x"], "data_config: only crows_pairs takes a hub config"),
     (["--data-config", "crows_pairs"], "--data-config 'crows_pairs': expected SUITE=CONFIG"),
     (["--judge", "bogus"], "judge: 'bogus' is not 'trained'"), (["--judge", "llm"], "judge: 'llm' is not"),
     (["--limit", "-1"], "limit: -1 is below 0"), (["--toxicity-samples", "0"], "toxicity.samples: 0"),
     (["--ifeval-max-new-tokens", "0"], "ifeval.max_new_tokens: 0")],
)  # fmt: skip
def test_bad_arguments_exit_2_before_loading_the_model(tmp_path, argv, says, capsys, monkeypatch):
    monkeypatch.setattr(api, "load_lm", lambda options: pytest.fail("loaded a model for bad arguments"))
    out = tmp_path / "r.json"
    assert main(["eval", "--model", "m", "--out", str(out), "--no-progress", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("align eval: error: ") and says in err[0], err
    assert not out.exists()


def test_new_suites_and_the_self_judge_through_the_cli(tmp_path, fake_model):
    out = tmp_path / "r.json"
    argv = ["eval", "--model", "fake", "--suite", "refusal,ifeval,attribution", "--limit", "2",
            "--judge", "self", "--out", str(out), "--no-progress"]  # fmt: skip
    assert main(argv) == 0, json.loads(out.read_text())
    suites = json.loads(out.read_text())["suites"]
    assert suites["refusal"]["data"]["n"] == 4  # 2 safe + 2 unsafe
    assert suites["refusal"]["metrics"]["refusal_balanced_accuracy"]["value"] == 0.5  # complies with all
    assert suites["ifeval"]["metrics"]["prompt_level_strict_acc"]["n"] == 2
    assert suites["attribution"]["judges"] == {"attribution": {"name": "self:fake", "sha256": None}}


def test_judge_spec_builds_the_named_judge(fake_model):
    assert api.judge(FakeLM(), api.EvalOptions(model="m", judge="self")).identity()["name"] == "self:fake"
    assert api.judge(FakeLM(), api.EvalOptions(model="m")) is FAKE_JUDGES["attribution"]  # the trained one


def test_ifeval_without_punkt_and_its_length_through_the_cli(tmp_path, fake_model, monkeypatch):
    # prompt 7 of the shipped file is the first whose checker needs punkt_tab (number_sentences)
    monkeypatch.setattr(ifeval, "punkt_available", lambda: False)
    out = tmp_path / "r.json"
    argv = [
        "eval",
        "--model",
        "fake",
        "--suite",
        "ifeval",
        "--limit",
        "8",
        "--out",
        str(out),
        "--no-progress",
    ]
    assert main(argv) == 1  # the suite stops and says where punkt_tab goes
    suite = json.loads(out.read_text())["suites"]["ifeval"]
    assert suite["status"] == "failed" and "punkt_tab is missing" in suite["error"]
    assert main([*argv, "--ifeval-without-punkt", "--ifeval-max-new-tokens", "16"]) == 0
    doc = json.loads(out.read_text())
    assert (
        doc["suites"]["ifeval"]["data"]["n"] == 7
        and "without the 1 prompts" in doc["suites"]["ifeval"]["data"]["source"]
    )
    assert fake_model.gen_calls[-1]["max_new_tokens"] == 16 and len(fake_model.gen_calls[-1]["prompts"]) == 7
    assert doc["config"]["ifeval"] == {"max_new_tokens": 16, "without_punkt": True}
