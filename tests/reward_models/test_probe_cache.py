"""fit: probe with probe.cache_dir: the same head and held-out figures as the uncached probe, a rerun
that reads every feature from the cache, the held-out report per file, and by-hand per-file numbers."""

import json

import numpy as np
import pytest

from align.config_io import load_config
from align.reward import load_reward_model
from reward_models.data import source_name
from reward_models.evaluate import length_report, reward_report, score_pairs
from reward_models.train import ProbeOptions, RMConfig, load_pairs, run_rm_training
from tests.reward_models.test_rm import separable_pairs


def reversed_pairs(path, n=24):
    """A second file whose chosen answers are the SHORTER ones: the length baseline gets them wrong."""
    rows = [
        {
            "prompt": [{"role": "user", "content": f"say hi number {i}"}],
            "chosen": [{"role": "assistant", "content": "hi"}],
            "rejected": [{"role": "assistant", "content": f"whatever, {i} is dumb and so are you"}],
        }
        for i in range(n)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def write_config(tmp, name, cache):
    path = tmp / f"{name}.yaml"
    cut = "heldout: {heldout_fraction: 0.25}"
    more = f"more: [{{path: {reversed_pairs(tmp / 'rev' / 'pairs.jsonl')}, {cut}}}]"
    probe = "{l2_grid: [0.01, 1.0], folds: 3, batch_size: 4" + (
        f", cache_dir: {tmp / 'cache'}, pools: [last, mean], layers: [1], bucket: 16}}" if cache else "}"
    )
    path.write_text(f"""
output_dir: {tmp / name}
fit: probe
model: {{spec: "preset:tiny", seed: 1}}
data: {{path: {separable_pairs(tmp / "pairs.jsonl")}, max_length: 48, {cut}, {more}}}
probe: {probe}
train: {{progress: false}}
mesh: {{devices: 1}}
""")
    return load_config(RMConfig, path)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("probe_cache")
    (tmp / "rev").mkdir()
    plain = run_rm_training(write_config(tmp, "plain", cache=False))
    cached = run_rm_training(write_config(tmp, "cached", cache=True))
    files = sorted((tmp / "cache").glob("*.npy"))
    again = run_rm_training(write_config(tmp, "again", cache=True))
    return tmp, plain, cached, again, files


def test_cached_probe_fits_and_evaluates_as_the_uncached_one(runs):
    _, plain, cached, _, _ = runs
    assert cached["probe"]["l2"] == plain["probe"]["l2"]
    assert cached["probe"]["cv_accuracy"] == plain["probe"]["cv_accuracy"]
    a, b = plain["eval_after"], cached["eval_after"]
    assert a["n"] == b["n"] == 16  # 10 + 6 held-out pairs
    for key in ("accuracy", "ties"):
        assert a[key] == b[key], key
    for key in ("margin_mean", "chosen_mean", "rejected_mean", "margin_std"):
        assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-5), key


def test_rerun_reads_every_feature_from_the_cache(runs):
    tmp, _, cached, again, files = runs
    # one file per distinct pair, train and held-out (the first file repeats its 10 prompts' pairs),
    # none added by the rerun
    from align.hub import load

    data = load_pairs(write_config(tmp, "cached", cache=True).data, load("preset:tiny").tokenizer)
    distinct = {p.tokens.tobytes() for p in data.train + data.heldout}
    assert len(files) == len(distinct) == 10 + 24
    assert sorted((tmp / "cache").glob("*.npy")) == files
    assert again["probe"] == cached["probe"]
    assert again["eval_after"]["margin_mean"] == cached["eval_after"]["margin_mean"]


def test_export_scores_the_heldout_pairs_as_the_cached_evaluation(runs):
    tmp, _, cached, _, _ = runs
    rm, tokenizer = load_reward_model(cached["export"])
    config = write_config(tmp, "cached", cache=True)
    held = load_pairs(config.data, tokenizer).heldout
    rewards = score_pairs(rm, held, batch_size=4, length=48, pad_id=tokenizer.pad_id)
    margins = rewards[:, 0] - rewards[:, 1]
    assert np.mean(margins > 0) == cached["eval_after"]["accuracy"]
    assert margins.mean() == pytest.approx(cached["eval_after"]["margin_mean"], rel=1e-4, abs=1e-5)


def test_heldout_report_per_file(runs):
    tmp, _, cached, _, _ = runs
    by_file = cached["eval_after"]["by_file"]
    first = source_name(str(tmp / "pairs.jsonl"))
    assert list(by_file) == [first, "rev/pairs.jsonl"]
    assert [by_file[f]["n"] for f in by_file] == [10, 6]
    # chosen is one character longer in the first file, much shorter in the second
    assert by_file[first]["length"]["accuracy"] == 1.0
    assert by_file["rev/pairs.jsonl"]["length"]["accuracy"] == 0.0
    assert cached["eval_after"]["length"]["accuracy"] == 10 / 16


def test_reward_report_by_hand():
    rewards = np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 1.0], [0.0, 3.0]])
    lengths = np.array([[10, 5], [10, 5], [3, 9], [3, 9]])
    files = ["a/x", "a/x", "b/y", "b/y"]
    report = reward_report(rewards, lengths, files)
    assert report["accuracy"] == 0.5 and report["length"]["accuracy"] == 0.5
    assert (
        report["by_file"]["a/x"]["accuracy"] == 0.5 and report["by_file"]["a/x"]["length"]["accuracy"] == 1.0
    )
    assert (
        report["by_file"]["b/y"]["accuracy"] == 0.5 and report["by_file"]["b/y"]["length"]["accuracy"] == 0.0
    )
    assert report["by_file"]["b/y"]["rm_minus_length"]["mean"] == 0.5
    assert report["rm_minus_length"] == length_report(rewards, lengths)["rm_minus_length"]
    assert "by_file" not in reward_report(rewards, lengths, ["a/x"] * 4)
    assert set(reward_report(rewards)) == set(reward_report(rewards[:0]))  # no lengths: no baseline


def test_source_names_and_pool_options():
    assert source_name("/data/hh_rlhf/helpful-base/test.jsonl.gz") == "helpful-base/test.jsonl.gz"
    assert source_name("pairs.jsonl") == "pairs.jsonl"
    with pytest.raises(ValueError, match="probe.pools"):
        ProbeOptions(pools=("mean",))
