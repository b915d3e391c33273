"""Variants: exported directories load in transformers and generate like align; templates, configs, cards."""

import json

import jax
import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from align.data import render_chat
from align.sampling import SamplingConfig, generate
from align.hub import ModelOptions, load_model
from pipelines.release.model_card import StageRecord, rl_notes
from pipelines.stages.rewards import RewardModelSpec, RewardOptions
from pipelines.release.variants import (
    GenerationDefaults,
    VariantsConfig,
    VariantSpec,
    chat_template,
    export_variant,
    load_variants,
    weighted_reward,
)
from safety_evals import results
from safety_evals.review.documents import load_results
from tests.paths import VARIANTS_FILE

SYSTEM = "Be kind | brief."
CHAT = VariantSpec(
    name="chat",
    description="assistant",
    system_prompt=SYSTEM,
    reward_weights={"helpfulness": 1.0, "harmlessness": 2.0},
    generation=GenerationDefaults(temperature=0.7, top_k=20, top_p=0.9, max_new_tokens=12),
)
DEVELOPER = VariantSpec(name="developer", generation=GenerationDefaults(temperature=0.0, max_new_tokens=12))


def _results(tmp_path, variant):
    suites = {
        "crows_pairs": {
            "status": "ok",
            "version": "1",
            "error": None,
            "seconds": 1.0,
            "data": {"source": "crows_pairs.csv", "sha256": "0" * 64, "n": 1508},  # an ok suite has its data
            "metrics": {
                "pct_stereotype": {
                    "value": 0.61,
                    "ci_low": 0.585,
                    "ci_high": 0.634,
                    "n": 1508,
                    "higher_is_better": False,
                },
                "pct_stereotype/gender": {
                    "value": 0.5,
                    "ci_low": 0.4,
                    "ci_high": 0.6,
                    "n": 10,
                    "higher_is_better": False,
                },
            },
        },
        "toxicity": {
            "status": "failed",
            "version": "1",
            "error": "RuntimeError: no detoxify weights\ntrace",
            "seconds": 0.1,
            "metrics": {},
        },
    }
    doc = results.build_document(
        model=results.model_record("tiny", None, variant=variant, step=3), config={"limit": 50}, suites=suites
    )
    path = tmp_path / f"results_{variant}.json"
    results.write_atomic(path, doc)
    return load_results(path)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model, tokenizer = load_model(ModelOptions(spec="preset:tiny", seed=0))
    root = tmp_path_factory.mktemp("variants")
    stages = [
        StageRecord("sft", "hh helpful-base (64 rows)", 20),
        StageRecord(
            "ppo",
            "${ALIGN_DATA_DIR}/hh_rlhf/harmless-base/test.jsonl.gz",
            12,
            "iterations",
            "held-out reward 0.10 -> 0.30",
        ),
    ]
    dirs = {}
    for spec in (CHAT, DEVELOPER):
        dirs[spec.name] = export_variant(
            model,
            tokenizer,
            spec,
            root / spec.name,
            base_model="preset:tiny",
            stages=stages,
            results=_results(root, spec.name),
            reward_mixture=[{"name": "helpfulness", "weight": 1.0, "source": "rm"}],
        )
    return model, tokenizer, dirs


def test_exported_variants_load_in_transformers_and_generate_like_align(exported):
    model, tokenizer, dirs = exported
    prompt = tokenizer.encode_chat(
        [{"role": "user", "content": "Hi there"}], add_generation_prompt=True
    ).tokens
    ours = generate(
        model,
        prompt[None],
        np.array([len(prompt)]),
        SamplingConfig(max_new_tokens=6, stop_ids=tokenizer.stop_ids),
        jax.random.PRNGKey(0),
    )
    for path in dirs.values():
        hf = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        out = hf.generate(torch.tensor(prompt[None], dtype=torch.long), do_sample=False, max_new_tokens=6)
        assert (
            out[0, len(prompt) :].tolist()
            == np.asarray(ours.tokens[0, : out.shape[1] - len(prompt)]).tolist()
        )
        assert hf.generation_config.eos_token_id == list(tokenizer.stop_ids)
    chat_gen = AutoModelForCausalLM.from_pretrained(dirs["chat"]).generation_config
    assert (chat_gen.do_sample, chat_gen.temperature, chat_gen.top_k, chat_gen.top_p) == (True, 0.7, 20, 0.9)
    assert json.loads((dirs["developer"] / "generation_config.json").read_text())["do_sample"] is False


def test_chat_templates_carry_each_variants_system_policy(exported):
    _, _, dirs = exported
    user = [{"role": "user", "content": "Hi there"}]
    chat_tok, dev_tok = (
        AutoTokenizer.from_pretrained(dirs["chat"]),
        AutoTokenizer.from_pretrained(dirs["developer"]),
    )
    # chat: the default system prompt is folded in exactly like an explicit system message
    assert chat_tok.apply_chat_template(user, tokenize=False, add_generation_prompt=True) == render_chat(
        [{"role": "system", "content": SYSTEM}, *user], add_generation_prompt=True
    )
    # developer: plain Gemma, a given system message still folds in
    assert dev_tok.apply_chat_template(user, tokenize=False) == render_chat(user)
    with_system = [{"role": "system", "content": "Reply in French."}, *user]
    assert dev_tok.apply_chat_template(with_system, tokenize=False) == render_chat(with_system)
    dropped = VariantSpec(name="x", system_handling="drop")
    assert "messages[1:]" in chat_template(dropped)
    assert chat_template(VariantSpec(name="raw", chat_template="none")) is None


def test_model_card_reports_training_and_the_variants_results(exported, tmp_path):
    _, tokenizer, dirs = exported
    card = (dirs["chat"] / "README.md").read_text()
    assert card.startswith("---\n") and "\nlibrary_name: transformers\n" in card
    assert "| crows_pairs | pct_stereotype | 0.61 | [0.585, 0.634] | 1508 | lower |" in card
    body = card.split("\n---\n", 1)[1]
    assert "pct_stereotype/gender" not in body  # breakdowns: in the JSON and the model-index only
    assert "| toxicity | **failed** | RuntimeError: no detoxify weights |" in card
    assert (
        "| ppo | Anthropic hh-rlhf, harmless-base, test | 12 iterations | held-out reward 0.10 -&gt; 0.30 |"
        in card
    )
    assert "Be kind \\| brief." in card  # table cells escape pipes
    assert '"temperature": 0.7' in card
    with pytest.raises(ValueError, match="results are for variant 'developer', not 'chat'"):
        export_variant(
            exported[0],
            tokenizer,
            CHAT,
            tmp_path / "x",
            base_model="t",
            results=_results(tmp_path, "developer"),
        )


def test_card_of_a_shared_rl_run_marks_the_variants_rl_settings_as_not_applied(exported, tmp_path):
    model, tokenizer, dirs = exported
    assert "Note:" not in (dirs["chat"] / "README.md").read_text()
    assert "| reward weights | helpfulness x1, harmlessness x2 |" in (dirs["chat"] / "README.md").read_text()
    out = export_variant(model, tokenizer, CHAT, tmp_path / "shared", base_model="t", rl_applied=False)
    card = (out / "README.md").read_text()
    assert "| reward weights | helpfulness x1, harmlessness x2 (configured, not applied: one RL run" in card
    assert "| RL prompt mixture | n/a |" in card  # nothing configured: nothing to mark
    assert "assistant\n\n> **Note:** These weights come from one RL run shared" in card  # under description


def test_rl_note_carries_the_paired_change_and_its_interval():
    summary = {
        "eval_before": {"reward/mean": -0.7297, "kl/ref": 0.0},
        "eval_after": {"reward/mean": -1.0541, "kl/ref": -0.197},
        "reward_gain": {"mean": -0.3244, "stderr": 0.218, "ci_low": -0.7516, "ci_high": 0.1028, "n": 8},
    }
    assert rl_notes(summary) == (
        "held-out reward -0.730 -> -1.054 over 8 prompts (paired change -0.324, 95% interval "
        "[-0.752, 0.103]); sampled KL to the starting policy -0.20 nats"
    )
    del summary["reward_gain"]  # summaries written before the paired gain existed
    no_gain = "held-out reward -0.730 -> -1.054; sampled KL to the starting policy -0.20 nats"
    assert rl_notes(summary) == no_gain
    assert rl_notes({"eval_after": {"reward/mean": 1.0}}) == ""


def test_reward_weights_by_name_and_config_file():
    reward = RewardOptions(
        models=(RewardModelSpec("a", 1.0, "helpfulness"), RewardModelSpec("b", 1.0, "harmlessness"))
    )
    assert [m.weight for m in weighted_reward(reward, CHAT).models] == [1.0, 2.0]
    with pytest.raises(ValueError, match=r"\['honesty'\] match no reward model"):
        weighted_reward(reward, VariantSpec(name="y", reward_weights={"honesty": 1.0}))
    config = load_variants(VARIANTS_FILE)
    assert [v.name for v in config.variants] == ["chat", "developer"]
    assert (
        config.get("chat").reward_weights["harmlessness"]
        > config.get("developer").reward_weights["harmlessness"]
    )
    with pytest.raises(ValueError, match="unique"):
        VariantsConfig(variants=(CHAT, CHAT))


def test_exported_templates_render_typed_parts_like_align(exported):
    """transformers' apply_chat_template on an export renders {"type": "text"} parts as align does."""
    from align.data import normalize_row

    _, _, dirs = exported
    messages = [
        {"role": "system", "content": [{"type": "text", "text": " Reply in French. "}]},
        {"role": "user", "content": [{"type": "text", "text": " Hi "}, {"type": "text", "text": "there\n"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Salut"}]},
        {"role": "user", "content": "Merci"},
    ]
    ours = render_chat(normalize_row({"messages": messages}).messages, add_generation_prompt=True)
    for name in ("chat", "developer"):
        hf = AutoTokenizer.from_pretrained(dirs[name])
        assert hf.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) == ours, name
    image = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "what is this?"}]}]
    with pytest.raises(Exception, match="images are not supported"):
        hf.apply_chat_template(image, tokenize=False)


def test_sampling_without_top_k_disables_transformers_default_top_k(exported, tmp_path):
    from transformers import GenerationConfig

    model, tokenizer, _ = exported
    spec = VariantSpec(name="open", generation=GenerationDefaults(temperature=0.8, top_k=None, top_p=None))
    out = export_variant(model, tokenizer, spec, tmp_path / "open", base_model="t")
    loaded = GenerationConfig.from_pretrained(out)
    assert (loaded.top_k, loaded.top_p) == (0, 1.0)  # 0: transformers adds no TopKLogitsWarper (not 50)


def test_card_names_data_and_models_without_the_machine_paths(tmp_path, monkeypatch):
    from pipelines.release.model_card import StageRecord, training_section

    monkeypatch.setenv("ALIGN_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "data" / "hh").mkdir(parents=True)
    hh = tmp_path / "data" / "hh_rlhf" / "helpful-base" / "test.jsonl.gz"
    data = f"{hh}, {tmp_path / 'data' / 'hh' / 'b.jsonl.gz'}"
    lines = training_section(
        [StageRecord("sft", data, 12)],
        [{"name": "helpfulness", "weight": 1.0, "source": str(tmp_path / "home" / "runs" / "rm")}],
    )
    text = "\n".join(lines)
    assert "Anthropic hh-rlhf, helpful-base, test; hh/b.jsonl.gz (from the data directory)" in text
    assert "~/runs/rm" in text and str(tmp_path) not in text
