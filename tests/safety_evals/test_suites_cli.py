"""`align eval` end to end on the fake LM: document, failed suites, exit codes, CLI wiring."""

import argparse
import json

import pytest

from pipelines.cli import main
from safety_evals import cli
from safety_evals.review import documents as results_io
from tests.safety_evals.fakes import FakeLM, FakeScorer


@pytest.fixture
def fake_model(monkeypatch):
    lm = FakeLM(default="I don't know.")
    monkeypatch.setattr(cli, "load_lm", lambda args: (lm, None))
    monkeypatch.setattr(cli, "_scorer", lambda args: FakeScorer())
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


def test_model_that_fails_to_load_fails_every_suite(tmp_path, monkeypatch):
    def no_model(args):
        raise FileNotFoundError("no checkpoint at /nope")

    monkeypatch.setattr(cli, "load_lm", no_model)
    out = tmp_path / "r.json"
    code = main(
        ["eval", "--model", "/nope", "--suite", "hedging,crows_pairs", "--out", str(out), "--no-progress"]
    )
    assert code == 1
    suites = json.loads(out.read_text())["suites"]
    assert [s["status"] for s in suites.values()] == ["failed", "failed"]
    assert "no checkpoint at /nope" in suites["hedging"]["error"]


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
    "argv",
    [["--suite", "nope"], ["--data", "stereoset"], ["--data", "x=y"], ["--system-prompt", "hi"],
     ["--data-config", "stereoset=x"], ["--data-config", "crows_pairs"]],
)  # fmt: skip
def test_bad_arguments_exit_2(tmp_path, argv, capsys):
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    args = parser.parse_args(["--model", "m", "--out", str(tmp_path / "r.json"), *argv])
    assert cli.run(args) == 2
    assert "align eval:" in capsys.readouterr().err
    assert not (tmp_path / "r.json").exists()


def test_judge_spec_errors_are_explicit():
    args = argparse.Namespace(judge="bogus", device="cpu")
    with pytest.raises(ValueError, match="--judge 'bogus'"):
        cli._judge(FakeLM(), args)
    assert cli._judge(FakeLM(), argparse.Namespace(judge="llm", device="cpu")).name == "llm:fake"
