"""`align pipeline configs/quickstart_tiny.yaml` end to end, then a re-run that skips finished stages.

One pipeline run (the module fixture) serves every end-to-end assertion: it has the optional
`distill:` stage, so chat, developer and nano come out of it, nano a half-depth student of chat,
evaluated and exported with its card like the other two. A second full run costs minutes of CI."""

import dataclasses
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from align.config_io import load_config
from align.data_dir import data_dir, portable_path
from align.errors import InvalidInput
from pipelines.pipeline import Pipeline, QuickstartConfig, run_pipeline
from pipelines.stages.instructions import fill_sources
from safety_evals.review.documents import load_results
from tests.paths import CONFIGS, VARIANTS, VARIANTS_FILE
from tests.paths import DATA as SHARED

CONFIG = str(CONFIGS / "quickstart_tiny.yaml")
DATA = SHARED / "hh_rlhf/helpful-base/test.jsonl.gz"
DISTILL = {
    "teacher_variant": "chat",
    "student": {"init": "teacher", "keep": "every_other"},
    "data": {"path": str(DATA), "limit": 32, "max_length": 96,
             "truncation": "keep_end", "heldout": {"heldout_fraction": 0.25, "seed": 0}},
    "distill": {"beta": 0.0, "on_policy": 0.5, "max_new_tokens": 8, "chunk_size": 128},
    "optim": {"learning_rate": 3.0e-3, "warmup_steps": 1, "total_steps": 4, "schedule": "cosine"},
    "train": {"batch_size": 4, "log_every": 2, "progress": False},
    "mesh": {"devices": 1},
}  # fmt: skip


def _config(out, **distill):
    config = load_config(QuickstartConfig, CONFIG, [f"output_dir={out}", VARIANTS])
    return dataclasses.replace(config, distill={**DISTILL, **distill})


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    if not DATA.exists():
        pytest.skip(f"{DATA} (shared benchmark data) is not on this machine")
    out = tmp_path_factory.mktemp("quickstart")
    config = _config(out)
    log = io.StringIO()
    report = run_pipeline(config, CONFIG, stream=log)
    return config, out, report, log.getvalue()


def test_every_stage_runs_and_writes_its_output(finished):
    config, out, report, log = finished
    stages = [s.name for s in Pipeline(config, CONFIG).stages()]
    assert stages[0] == "sft" and stages[-1] == "variant:nano"
    assert {s for s in stages if s.startswith("rm:")} == {f"rm:{rm.name}" for rm in config.reward_models}
    assert all(report[s]["status"] == "ran" for s in stages)
    assert f"[1/{len(stages)}] sft" in log and str(out / "variants" / "developer") in log
    rl = json.loads((out / "rl" / "summary.json").read_text())
    assert rl["iterations"] == config.rlhf["train"]["iterations"]
    assert set(rl["eval_after"]) >= {"reward/mean", "kl/ref"}
    gain = rl["reward_gain"]  # paired per prompt: its mean is the difference of the two means
    assert gain["n"] == rl["eval_after"]["n"] == 8  # two eval batches of 4
    assert gain["mean"] == pytest.approx(rl["eval_after"]["reward/mean"] - rl["eval_before"]["reward/mean"])
    for variant in ("chat", "developer"):
        assert load_results(out / "evals" / f"{variant}.json").model.variant == variant
        exported = out / "variants" / variant
        assert {
            "config.json",
            "model.safetensors",
            "generation_config.json",
            "tokenizer.json",
            "README.md",
        } <= {p.name for p in exported.iterdir()}
        card = (exported / "README.md").read_text()
        assert f"variant-{variant}" in card and "| crows_pairs | pct_stereotype |" in card
        assert "held-out reward" in card  # the RL row of the training table
        # one RL run shared by both variants: the card must not pass off the variant's RL settings as used
        assert "> **Note:** These weights come from one RL run shared by all variants" in card
    chat_card = (out / "variants" / "chat" / "README.md").read_text()
    assert "| reward weights | helpfulness x1, harmlessness x1 (configured, not applied:" in chat_card
    chat = json.loads((out / "variants" / "chat" / "generation_config.json").read_text())
    developer = json.loads((out / "variants" / "developer" / "generation_config.json").read_text())
    assert chat["temperature"] < developer["temperature"]


def test_the_distill_stage_adds_nano_evaluated_and_exported_like_the_others(finished):
    config, out, report, _ = finished
    stages = [s.name for s in Pipeline(config, CONFIG).stages()]
    assert (
        stages.index("rl")
        < stages.index("distill")
        < stages.index("eval:nano")
        < stages.index("variant:nano")
    )
    assert "rl:nano" not in stages and all(report[s]["status"] == "ran" for s in stages)
    assert load_results(out / "evals" / "nano.json").model.variant == "nano"
    # nano: half the teacher's depth, distilled from the chat policy
    nano = json.loads((out / "variants" / "nano" / "config.json").read_text())
    chat = json.loads((out / "variants" / "chat" / "config.json").read_text())
    assert nano["num_hidden_layers"] * 2 == chat["num_hidden_layers"]
    card = (out / "variants" / "nano" / "README.md").read_text()
    assert "variant-nano" in card and "| crows_pairs | pct_stereotype |" in card
    assert "| distill |" in card and "forward KL to chat" in card
    summary = json.loads((out / "distill" / "summary.json").read_text())
    assert summary["step"] == 4 and summary["eval_after"]["loss"] < summary["eval_before"]["loss"]


def test_without_a_distill_section_there_is_no_nano_stage(tmp_path):
    config = load_config(QuickstartConfig, CONFIG, [f"output_dir={tmp_path}", VARIANTS])
    assert not [s.name for s in Pipeline(config, CONFIG).stages() if "nano" in s.name or s.name == "distill"]


def test_an_unknown_teacher_variant_fails_before_any_stage_runs(tmp_path):
    with pytest.raises(InvalidInput, match="teacher_variant 'large'"):
        Pipeline(_config(tmp_path, teacher_variant="large"), CONFIG)


def test_rerun_skips_finished_stages_and_redoes_only_missing_ones(finished):
    config, out, _, _ = finished
    (out / "variants" / "developer" / "README.md").unlink()
    shutil.rmtree(out / "evals")
    # The RL stage lost its summary but kept its checkpoints: it resumes at its last iteration.
    (out / "rl" / "summary.json").unlink()
    log = io.StringIO()
    report = run_pipeline(config, CONFIG, stream=log)
    assert report["sft"]["status"] == "skipped" and report["variant:chat"]["status"] == "skipped"
    assert report["distill"]["status"] == "skipped"
    assert report["rl"]["status"] == "ran" and report["variant:developer"]["status"] == "ran"
    assert report["eval:chat"]["status"] == "ran"
    rl = json.loads((out / "rl" / "summary.json").read_text())
    assert rl["resumed_from"] == config.rlhf["train"]["iterations"]  # no iteration was redone
    assert "done already" in log.getvalue()


def test_per_variant_rl_stages_take_each_variants_mixture_system_prompt_and_reward_weights(tmp_path):
    rms = "[{name: helpfulness, weight: 1.0}, {name: harmlessness, weight: 1.0}]"
    config = load_config(
        QuickstartConfig,
        CONFIG,
        [f"output_dir={tmp_path}", "rl_per_variant=true", f"reward_models={rms}", VARIANTS],
    )
    pipeline = Pipeline(config, CONFIG)
    names = [s.name for s in pipeline.stages()]
    expected = ["sft", "rm:helpfulness", "rm:harmlessness", "instructions", "rl:chat", "rl:developer"]
    assert names[:6] == expected  # instructions: the developer's prompt file, before RL
    for variant in pipeline.variants:
        rl = pipeline.rlhf_config(variant)
        assert rl.output_dir == str(tmp_path / f"rl_{variant.name}")
        assert rl.model.spec == str(tmp_path / "sft" / "export")
        assert rl.data.system_prompt == variant.system_prompt
        # the variant's own mixture, the pipeline's prompt file in place of pipeline:instructions
        assert rl.data.mixture == fill_sources(variant.data, tmp_path / "instructions" / "prompts.jsonl")
        assert rl.data.system_handling == variant.system_handling
        weights = {m.name: m.weight for m in rl.reward.models}
        assert weights == {"helpfulness": 1.0, "harmlessness": 1.0, **variant.reward_weights}
        assert {m.path for m in rl.reward.models} == {str(tmp_path / f"rm_{n}" / "export") for n in weights}


def test_per_variant_rl_runs_end_to_end_and_each_card_reports_its_own_rl(tmp_path):
    import copy

    import yaml

    if not DATA.exists():
        pytest.skip(f"{DATA} (shared benchmark data) is not on this machine")
    raw = yaml.safe_load(Path(CONFIG).read_text())
    harmless = copy.deepcopy(raw["reward_models"][0])
    harmless["name"] = "harmlessness"
    harmless["config"]["data"]["path"] = str(DATA.parent.parent / "harmless-base" / "test.jsonl.gz")
    raw["reward_models"].append(harmless)
    raw.update(output_dir=str(tmp_path / "run"), rl_per_variant=True, variants=str(VARIANTS_FILE))
    raw["rlhf"]["train"]["iterations"] = 2
    raw["rlhf"]["data"]["max_prompt_length"] = 160  # byte-level tokens: the constraints fit whole
    raw["eval"]["suites"] = "crows_pairs"
    path = tmp_path / "per_variant.yaml"
    path.write_text(yaml.safe_dump(raw))
    config = load_config(QuickstartConfig, path)
    report = run_pipeline(config, str(path), stream=io.StringIO())
    out = tmp_path / "run"
    assert {"rl:chat", "rl:developer"} <= set(report) and "rl" not in report
    assert report["instructions"]["status"] == "ran"  # the developer's RLVR prompts, before RL
    pipeline = Pipeline(config, str(path))
    prompts = str(pipeline.instructions_file())
    for variant in pipeline.variants:
        rl = json.loads((out / f"rl_{variant.name}" / "summary.json").read_text())
        sources = [(src["path"], src["used"] > 0) for src in rl["data"]["sources"]]
        mixture = pipeline.rlhf_config(variant).data.mixture  # the variant's own, its file filled in
        assert sources == [(portable_path(s.path), True) for s in mixture]  # no path of this machine
        assert (prompts in {s.path for s in mixture}) == (variant.name == "developer")
        card = (out / "variants" / variant.name / "README.md").read_text()
        weights = ", ".join(f"{k} x{v:g}" for k, v in variant.reward_weights.items())
        assert f"| reward weights | {weights} |" in card and "Note:" not in card
        assert ("- rule:instructions: weight 1.0" in card) == (variant.name == "developer")
    for summary in out.rglob("summary.json"):  # every stage's data report names data by ${ALIGN_DATA_DIR}
        assert str(data_dir()) not in summary.read_text(), summary
    from safetensors.numpy import load_file

    chat, developer = (load_file(out / "variants" / v / "model.safetensors") for v in ("chat", "developer"))
    assert any(not np.array_equal(chat[k], developer[k]) for k in chat)  # two RL runs, two policies


@pytest.mark.parametrize(
    "result, code, why",
    [
        ({"stopped": "sigterm"}, 143, "sigterm"),
        (None, 1, "see its log"),
        (Path("results.json"), 1, "see its log"),
    ],
)  # a non-training stage's return
def test_a_stage_that_stops_early_exits_with_one_line_and_its_code(
    tmp_path, monkeypatch, capsys, result, code, why
):
    from pipelines.cli import main
    from pipelines.pipeline import Stage

    def stages(self):  # one stage that ended (e.g. preempted) before writing its output
        return [Stage("sft", tmp_path / "sft" / "summary.json", lambda: result, "SFT")]

    monkeypatch.setattr(Pipeline, "check", lambda self: None)
    monkeypatch.setattr(Pipeline, "stages", stages)
    assert main(["pipeline", CONFIG, f"output_dir={tmp_path}", VARIANTS]) == code
    err = capsys.readouterr().err
    assert f"align pipeline: stage sft stopped early ({why})" in err and "run the same command again" in err
    assert "Traceback" not in err


def test_a_non_finite_loss_exits_1_with_its_message(tmp_path, monkeypatch, capsys):
    from align.training import NonFiniteLoss
    from pipelines.cli import main
    from pipelines.pipeline import Stage

    def diverge():
        raise NonFiniteLoss("loss is nan at step 3; the last checkpoint is step 2")

    monkeypatch.setattr(Pipeline, "check", lambda self: None)
    monkeypatch.setattr(Pipeline, "stages", lambda self: [Stage("sft", tmp_path / "s.json", diverge, "SFT")])
    assert main(["pipeline", CONFIG, f"output_dir={tmp_path}", VARIANTS]) == 1
    assert capsys.readouterr().err == "align pipeline: loss is nan at step 3; the last checkpoint is step 2\n"
