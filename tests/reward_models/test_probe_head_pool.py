"""probe.head_pool: response_mean: the cached and uncached probes fit the same head on the response-mean
features, the export carries the pool and scores the held-out pairs as summary.json's eval_after says,
and the config loader names the file and field of a bad value."""

import json

import numpy as np
import pytest

from align.config_io import load_config
from align.errors import InvalidInput
from align.reward import load_reward_model
from align.reward.model import POOL_KEY
from reward_models.evaluate import score_pairs
from reward_models.train import RMConfig, load_pairs, run_rm_training
from tests.reward_models.test_probe_cache import reversed_pairs
from tests.reward_models.test_rm import separable_pairs


def write_config(tmp, name, probe: str):
    path = tmp / f"{name}.yaml"
    cut = "heldout: {heldout_fraction: 0.25}"
    more = f"more: [{{path: {reversed_pairs(tmp / 'rev' / 'pairs.jsonl')}, {cut}}}]"
    path.write_text(f"""
output_dir: {tmp / name}
fit: probe
model: {{spec: "preset:tiny", seed: 1}}
data: {{path: {separable_pairs(tmp / "pairs.jsonl")}, max_length: 48, {cut}, {more}}}
probe: {{l2_grid: [0.01, 1.0], folds: 3, batch_size: 4, head_pool: response_mean{probe}}}
train: {{progress: false}}
mesh: {{devices: 1}}
""")
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("head_pool")
    (tmp / "rev").mkdir()
    plain = run_rm_training(load_config(RMConfig, write_config(tmp, "plain", "")))
    cache = f", cache_dir: {tmp / 'cache'}, pools: [last, mean], layers: [1], bucket: 16"
    cached = run_rm_training(load_config(RMConfig, write_config(tmp, "cached", cache)))
    return tmp, plain, cached


def test_cached_and_uncached_response_mean_probes_agree(runs):
    _, plain, cached = runs
    assert cached["probe"]["l2"] == plain["probe"]["l2"]
    assert cached["probe"]["cv_accuracy"] == plain["probe"]["cv_accuracy"]
    a, b = plain["eval_after"], cached["eval_after"]
    assert a["n"] == b["n"] == 16 and a["accuracy"] == b["accuracy"]
    assert b["margin_mean"] == pytest.approx(a["margin_mean"], rel=1e-4, abs=1e-5)


@pytest.mark.parametrize("name", ["plain", "cached"])
def test_the_export_is_the_evaluated_response_mean_model(runs, name):
    tmp, *_ = runs
    summary = dict(zip(("plain", "cached"), runs[1:]))[name]
    assert json.loads((tmp / name / "export" / "config.json").read_text())[POOL_KEY] == "response_mean"
    rm, tokenizer = load_reward_model(summary["export"])
    assert rm.pool == "response_mean"
    config = load_config(RMConfig, tmp / f"{name}.yaml")
    held = load_pairs(config.data, tokenizer).heldout
    rewards = score_pairs(rm, held, batch_size=4, length=48, pad_id=tokenizer.pad_id)
    margins = rewards[:, 0] - rewards[:, 1]
    assert np.mean(margins > 0) == summary["eval_after"]["accuracy"]
    assert margins.mean() == pytest.approx(summary["eval_after"]["margin_mean"], rel=1e-4, abs=1e-5)
    # the same head read at the last token scores otherwise: the pool, not only w, is what was evaluated
    rm.pool = "last"
    last = score_pairs(rm, held, batch_size=4, length=48, pad_id=tokenizer.pad_id)
    assert np.abs((last[:, 0] - last[:, 1]) - margins).max() > 1e-3


@pytest.mark.parametrize(
    "probe, message",
    [
        ("head_pool: max", "probe.head_pool: 'max' is not one of last, response_mean"),
        ("head_pool: response_mean, cache_dir: c, pools: [last]", "probe.head_pool: response_mean reads"),
    ],
)
def test_a_bad_head_pool_names_the_file_and_field(tmp_path, probe, message):
    path = tmp_path / "rm.yaml"
    path.write_text(f"output_dir: out\nfit: probe\nprobe: {{{probe}}}\n")
    with pytest.raises(InvalidInput, match=message) as e:
        load_config(RMConfig, path)
    assert str(path) in str(e.value)
