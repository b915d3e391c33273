"""SFT on benchmark sources (SelfAware train + BEGIN train + a TRL file) on a tiny model: the run trains,
records its splits, and a pipeline whose eval would score trained-on questions is refused up front."""

import json
import logging

import pytest

from align.config_io import ConfigError, load_config
from align.data import Tokenizer
from align.data.selfaware import question_key, read_selfaware, split_selfaware
from align.data.testing import tiny_tokenizer
from align.errors import InvalidInput
from pipelines import cli
from pipelines.pipeline import Pipeline, load_quickstart
from pipelines.stages import evaluate
from pipelines.stages.rl_data import PromptDataOptions, PromptSource, load_prompts
from pipelines.stages.sft import SFTConfig
from tests.paths import CONFIGS, DATA, VARIANTS

SELFAWARE = str(DATA / "selfaware" / "SelfAware.json")
BEGIN = str(DATA / "attribution" / "begin")


def sft_yaml(tmp_path, sources: str) -> str:
    rows = tmp_path / "chat.jsonl"
    rows.write_text('{"prompt": "say hi:", "completion": " hi"}\n' * 8)
    return f"""
output_dir: {tmp_path / "run"}
model: {{spec: "preset:tiny"}}
data:
  sources:{sources.replace("ROWS", str(rows))}
  max_length: 96
  truncation: keep_end
  heldout: {{heldout_fraction: 0.1, seed: 0}}
optim: {{learning_rate: 1.0e-3, warmup_steps: 1, total_steps: 3}}
train: {{batch_size: 4, log_every: 1, checkpoint_every: 0, progress: false}}
mesh: {{devices: 1}}
chunk_size: 64
export: false
"""


SOURCES = f"""
    - {{format: selfaware, path: "{SELFAWARE}", seed: 7, limit: 24}}
    - {{format: begin, path: "{BEGIN}", seed: 7, limit: 8}}
    - {{path: "ROWS"}}"""


def test_tiny_sft_on_the_mixture_trains_and_records_the_splits(tmp_path):
    path = tmp_path / "sft.yaml"
    path.write_text(sft_yaml(tmp_path, SOURCES))
    assert cli.main(["sft", "--config", str(path)]) == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["step"] == 3
    used = [s["used"] if "used" in s else s["rows_loaded"] for s in summary["data"]["sources"]]
    assert used == [24, 8, 8]
    assert summary["data"]["train"]["examples"] + summary["data"]["heldout"]["examples"] == 40
    splits = json.loads((tmp_path / "run" / "splits.json").read_text())
    assert sorted(splits) == ["begin", "selfaware"]
    items, sha = read_selfaware(SELFAWARE)
    held = split_selfaware(items, 7)[1]
    assert splits["selfaware"]["seed"] == 7 and splits["selfaware"]["sha256"] == sha
    assert splits["selfaware"]["heldout_ids"] == [q.id for q in held]
    assert set(splits["begin"]["train_ids"]).isdisjoint(splits["begin"]["heldout_ids"])


def test_a_benchmark_source_never_trains_on_its_heldout_part(tmp_path):
    path = tmp_path / "sft.yaml"
    path.write_text(sft_yaml(tmp_path, f'\n    - {{format: selfaware, path: "{SELFAWARE}", split: heldout}}'))
    with pytest.raises(ConfigError, match="trains on its train part only"):
        load_config(SFTConfig, path)
    path.write_text(sft_yaml(tmp_path, f'\n    - {{format: selfawre, path: "{SELFAWARE}"}}'))
    with pytest.raises(ConfigError, match="'selfawre' is not one of records, selfaware, begin"):
        load_config(SFTConfig, path)


def test_rl_prompts_from_selfaware_are_train_questions():
    tok = Tokenizer(tiny_tokenizer())
    options = PromptDataOptions(
        mixture=(PromptSource(SELFAWARE, format="selfaware", seed=7, limit=40),),
        max_prompt_length=512,
        heldout=PromptDataOptions().heldout,
    )
    train, held, report = load_prompts(options, tok)
    assert len(train) + len(held) == 40 and report["sources"][0]["used"] == 40
    heldout = {question_key(q.question) for q in split_selfaware(read_selfaware(SELFAWARE)[0], 7)[1]}
    for ids in train + held:
        text = tok.decode(ids)
        assert "Q: " in text and question_key(text.split("Q: ")[1].split("\nA:")[0]) not in heldout


def pipeline(tmp_path, *eval_options):
    overrides = [
        f"output_dir={tmp_path}",
        VARIANTS,
        "eval.suites=hedging,attribution",
        f"sft.data={{sources: [{{format: selfaware, path: {SELFAWARE}, seed: 7}}]}}",
        *eval_options,
    ]
    config = load_quickstart(str(CONFIGS / "quickstart_tiny.yaml"), overrides)
    return Pipeline(config, "quickstart_tiny.yaml")


def test_a_pipeline_that_would_evaluate_trained_questions_is_refused(tmp_path):
    with pytest.raises(InvalidInput, match="hedging suite would score selfaware questions.*heldout_seed: 7"):
        pipeline(tmp_path).check()
    with pytest.raises(InvalidInput, match="it is 3"):
        pipeline(tmp_path, "eval.options={heldout_seed: 3}").check()
    pipeline(tmp_path, "eval.options={heldout_seed: 7}").check()


def test_the_factuality_recipe_builds_every_stage_and_evaluates_held_out_parts_only(tmp_path, caplog):
    path = str(CONFIGS / "factuality.yaml")
    p = Pipeline(load_quickstart(path, [f"output_dir={tmp_path}", VARIANTS]), path)
    with caplog.at_level(logging.WARNING, logger="align.pipeline"):
        p.check()
    assert not caplog.records, caplog.text
    assert [s.format for s in p.sft_config().data.sources] == ["selfaware", "begin", "records"]
    rl = p.rlhf_config()
    assert rl.algorithm == "grpo" and [r.kind for r in rl.reward.rules] == ["verifiable_qa"]
    assert [m.name for m in rl.reward.models] == ["helpfulness"]
    for target in evaluate.targets(p):  # base, SFT and every variant: the same held-out parts
        options = evaluate.eval_options(p, target)
        assert options.heldout_seed == 7 and {"hedging", "attribution"} <= set(options.suites)
