"""Reward model: learns a separable preference, HF export loads in transformers with equal scores,
Wilson intervals by hand, batched scoring equals one-by-one."""

import json

import numpy as np
import pytest

from align.config_io import load_config
from align.intervals import wilson_ci
from align.reward import RewardScorer, load_reward_model, save_reward_model, score
from reward_models import pairwise_stats, run_rm_training
from reward_models.train import RMConfig

WORDS = ["apple", "river", "stone", "cloud", "green", "seven", "paper", "light", "horse", "music"]


def separable_pairs(path, n=40):
    """Chosen answers are polite ("yes, happy to help"), rejected ones rude: separable by content."""
    rows = []
    for i in range(n):
        w = WORDS[i % len(WORDS)]
        q = [{"role": "user", "content": f"tell me about {w}"}]
        good = {"role": "assistant", "content": f"yes, happy to help with {w}"}
        bad = {"role": "assistant", "content": f"no. {w} is boring, go away"}
        rows.append({"prompt": q, "chosen": [good], "rejected": [bad]})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rm")
    path = tmp / "rm.yaml"
    path.write_text(f"""
output_dir: {tmp / "run"}
model: {{spec: "preset:tiny", seed: 1}}
data: {{path: {separable_pairs(tmp / "pairs.jsonl")}, max_length: 48, heldout: {{heldout_fraction: 0.25}}}}
optim: {{learning_rate: 3.0e-3, warmup_steps: 2, total_steps: 25}}
train: {{batch_size: 4, log_every: 5, progress: false}}
mesh: {{devices: 1}}
""")
    summary = run_rm_training(load_config(RMConfig, path))
    return tmp, summary


def test_rm_beats_chance_on_a_separable_set(trained):
    _, summary = trained
    after = summary["eval_after"]
    assert after["n"] == 10 and summary["data"]["train"]["pairs"] == 30
    assert after["accuracy"] == 1.0 and after["ci_low"] > 0.5
    assert after["margin_mean"] > summary["eval_before"]["margin_mean"] + 0.5
    assert summary["train_last"]["loss"] < 0.69  # below ln 2 = chance


def test_hf_export_loads_in_transformers_with_equal_scores(trained):
    torch = pytest.importorskip("torch")
    from transformers import AutoModelForSequenceClassification

    tmp, summary = trained
    export = summary["export"]
    config = json.loads((tmp / "run" / "export" / "config.json").read_text())
    assert config["architectures"] == ["Gemma3TextForSequenceClassification"] and config["num_labels"] == 1
    hf = AutoModelForSequenceClassification.from_pretrained(export, dtype=torch.float32).eval()
    rm, tok = load_reward_model(export)
    prompts = [[{"role": "user", "content": "tell me about stone"}], "plain prompt", "x"]
    responses = ["yes, happy to help with stone", "no. go away", "a somewhat longer answer than the others"]
    ours = score(rm, tok, prompts, responses, batch_size=2)
    scorer = RewardScorer(rm, tok)
    # HF pools at the last non-pad token of right-padded rows: pad to a common length with a mask.
    seqs = [scorer.encode(p, r).tokens for p, r in zip(prompts, responses)]
    T = max(len(s) for s in seqs)
    ids = torch.tensor(
        np.stack([np.pad(s, (0, T - len(s)), constant_values=tok.pad_id) for s in seqs]), dtype=torch.long
    )
    mask = torch.tensor([[1] * len(s) + [0] * (T - len(s)) for s in seqs])
    with torch.no_grad():
        theirs = hf(input_ids=ids, attention_mask=mask).logits[:, 0].numpy()
    np.testing.assert_allclose(ours, theirs, atol=1e-4)
    assert np.ptp(ours) > 1e-3  # the scores differ between inputs, so the comparison means something


def test_batched_scoring_equals_one_by_one_and_round_trips(trained, tmp_path):
    _, summary = trained
    rm, tok = load_reward_model(summary["export"])
    prompts = [f"q{i}" * (i + 1) for i in range(5)]
    responses = [" ok" * (5 - i) for i in range(5)]
    batched = score(rm, tok, prompts, responses, batch_size=2)
    single = np.array([score(rm, tok, [p], [r], batch_size=1)[0] for p, r in zip(prompts, responses)])
    np.testing.assert_allclose(batched, single, atol=1e-5)
    save_reward_model(rm, tmp_path / "again", tokenizer=tok)
    rm2, tok2 = load_reward_model(tmp_path / "again")
    np.testing.assert_array_equal(score(rm2, tok2, prompts, responses, batch_size=2), batched)


def test_held_out_scoring_on_a_mesh_equals_scoring_on_one_device(trained):
    """score_pairs(mesh=...): the weights placed by the rules table and each batch's pairs split over
    the data axes (2 x fsdp 2 x tensor 2 of the 8 fake devices); the same rewards as one device's,
    10 pairs in batches of 4 (the last one padded)."""
    from align.data.sequences import TokenizedPair
    from align.model.sharding import MeshConfig, make_mesh
    from reward_models.evaluate import score_pairs

    _, summary = trained
    rm, _ = load_reward_model(summary["export"])
    rng = np.random.default_rng(0)
    pairs = []
    for i in range(10):
        prompt, lengths = 3 + i % 4, np.array([9 + i % 5, 7 + i % 3], np.int32)
        tokens = rng.integers(1, 200, (2, lengths.max())).astype(np.int32)
        mask = np.zeros(tokens.shape, bool)
        for k in range(2):
            tokens[k, lengths[k] :] = 0
            mask[k, prompt : lengths[k]] = True
        tokens[1, :prompt] = tokens[0, :prompt]
        pairs.append(TokenizedPair(tokens, mask, lengths, prompt))
    plain = score_pairs(rm, pairs, batch_size=4, length=16)
    on_mesh = score_pairs(rm, pairs, batch_size=4, length=16, mesh=make_mesh(MeshConfig(2, 2, 2)))
    assert plain.shape == (10, 2) and np.ptp(plain) > 1e-3
    np.testing.assert_allclose(on_mesh, plain, rtol=1e-5, atol=1e-6)


def test_export_refuses_a_head_bias(trained, tmp_path):
    _, summary = trained
    rm, tok = load_reward_model(summary["export"])
    rm.head.b[...] = rm.head.b[...] + 0.5
    with pytest.raises(ValueError, match="bias"):
        save_reward_model(rm, tmp_path / "x", tokenizer=tok)


def test_wilson_interval_and_pair_stats_by_hand():
    low, high = wilson_ci(8, 10)
    assert abs(low - 0.4902) < 1e-4 and abs(high - 0.9433) < 1e-4
    low, high = wilson_ci(0, 4)
    assert low == 0.0 and abs(high - 0.4899) < 1e-4
    stats = pairwise_stats(np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0], [2.0, 1.0]]))
    assert stats["accuracy"] == 0.5 and stats["ties"] == 1 and stats["n"] == 4
    assert stats["margin_mean"] == 0.0 and stats["chosen_mean"] == 1.5 and stats["rejected_mean"] == 1.5
    assert (stats["ci_low"], stats["ci_high"]) == wilson_ci(2, 4)


def test_pair_stats_of_no_pairs_are_none_not_nan():
    """n = 0: one behaviour with align.intervals.wilson_ci, JSON null in summary.json (NaN is not JSON)."""
    stats = pairwise_stats(np.zeros((0, 2)))
    assert stats["n"] == 0 and stats["ties"] == 0
    assert all(stats[k] is None for k in stats if k not in ("n", "ties"))
    json.dumps(stats, allow_nan=False)  # raises on NaN


def test_a_missing_or_plain_checkpoint_is_an_input_error(tmp_path):
    from flax import nnx

    from align.errors import InvalidInput, MissingInput
    from align.model import Decoder, ModelConfig
    from align.model.hf_io import save_hf_dir

    with pytest.raises(MissingInput, match="export/ directory of an `align rm` run"):
        load_reward_model(tmp_path / "nope")
    save_hf_dir(Decoder(ModelConfig.tiny(), rngs=nnx.Rngs(0)), tmp_path / "lm")  # a decoder, no score head
    with pytest.raises(InvalidInput, match="no score.weight"):
        load_reward_model(tmp_path / "lm")
