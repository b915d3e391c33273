"""Bradley-Terry linear probe: Newton's solution is the regularised optimum, the head it writes scores
pairs as the fitted direction does, and `fit: probe` learns a separable preference on a frozen tiny
model and exports like a fine-tuned reward model."""

import jax
import numpy as np
import pytest

from align.config_io import load_config
from align.reward import load_reward_model
from reward_models.evaluate import score_pairs
from reward_models.probe import cross_validate_l2, fit_logistic
from reward_models.train import RMConfig, load_pairs, run_rm_training
from tests.reward_models.test_rm import separable_pairs


def probe_loss(x, u, l2):
    return np.mean(np.logaddexp(0.0, -x @ u)) + 0.5 * l2 * u @ u


def test_newton_solution_is_the_regularised_optimum():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 5)) + np.array([0.8, 0, 0, 0, -0.3])
    for l2 in (1e-2, 1.0):
        u = fit_logistic(x, l2)
        p = 1 / (1 + np.exp(x @ u))
        grad = -(x.T @ p) / len(x) + l2 * u
        assert np.abs(grad).max() < 1e-9  # stationary point of a strictly convex loss = the minimum
        for _ in range(5):
            assert probe_loss(x, u + 1e-3 * rng.normal(size=5), l2) > probe_loss(x, u, l2)
    # more regularisation -> a shorter weight vector
    assert np.linalg.norm(fit_logistic(x, 10.0)) < np.linalg.norm(fit_logistic(x, 1e-2))


def test_cross_validation_scores_every_l2_and_prefers_signal():
    rng = np.random.default_rng(1)
    rejected = rng.normal(size=(80, 1, 4))
    signal = np.concatenate([rejected + rng.normal(size=(80, 1, 4)) + np.array([1.5, 0, 0, 0]), rejected], 1)
    noise = np.concatenate([rejected + rng.normal(size=(80, 1, 4)), rejected], 1)
    assert set(cross_validate_l2(signal, (0.1, 1.0), folds=4)) == {0.1, 1.0}
    assert min(cross_validate_l2(signal, (0.1, 1.0), folds=4).values()) > 0.8
    assert max(cross_validate_l2(noise, (0.1, 1.0), folds=4).values()) < 0.7


def test_cross_validation_scales_each_fold_on_its_training_rows_only():
    # Feature 1 is 1000x larger in the first 10 pairs only, so each fold's training sd differs from
    # the sd of all rows; scaling every fold with the latter (held-out rows leaking into the fit)
    # scores 31/40 on this data, the per-fold reference below 30/40.
    rng = np.random.default_rng(2)
    h = rng.normal(size=(40, 2, 3))
    h[:, 0, 0] += 1.0
    h[:10, :, 1] *= 1000.0
    folds, l2 = 4, 1.0
    fold_of = np.random.default_rng(0).permutation(40) % folds
    correct = 0
    for f in range(folds):
        train = h[fold_of != f]
        sd = train.reshape(-1, 3).std(0) + 1e-6
        u = fit_logistic((train[:, 0] - train[:, 1]) / sd, l2)
        correct += int(np.sum((h[fold_of == f, 0] - h[fold_of == f, 1]) / sd @ u > 0))
    assert correct == 30 and cross_validate_l2(h, (l2,), folds=folds) == {l2: correct / 40}


@pytest.fixture(scope="module")
def probed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("probe")
    path = tmp / "rm.yaml"
    path.write_text(f"""
output_dir: {tmp / "run"}
fit: probe
model: {{spec: "preset:tiny", seed: 1}}
data: {{path: {separable_pairs(tmp / "pairs.jsonl")}, max_length: 48, heldout: {{heldout_fraction: 0.25}}}}
probe: {{l2_grid: [0.01, 1.0], folds: 3, batch_size: 4}}
train: {{progress: false}}
mesh: {{devices: 1}}
""")
    return tmp, run_rm_training(load_config(RMConfig, path))


def test_probe_learns_a_separable_preference_on_a_frozen_model(probed):
    tmp, summary = probed
    after = summary["eval_after"]
    # the 40 pairs reuse 10 prompts: the training pairs that share a prompt with one of the 10 held-out
    # pairs are dropped, so no held-out prompt is trained on
    data = summary["data"]
    assert data["train"]["pairs"] == 30 and data["dropped_heldout_prompt"] == 14
    assert summary["fit"] == "probe" and summary["probe"]["pairs"] == data["train_pairs"] == 16
    assert after["n"] == 10
    # every chosen answer ("yes, happy to help with <w>") is one character longer than the rejected one
    # ("no. <w> is boring, go away"): the length baseline is right on every pair too, so the paired
    # difference is 0 in every resample, and one character is within 10%: every pair is length-matched
    assert after["length"]["accuracy"] == 1.0
    assert (after["rm_minus_length"]["mean"], after["rm_minus_length"]["ci_high"]) == (0.0, 0.0)
    assert after["length_matched"]["n"] == 10 and after["length_matched"]["accuracy"] == 1.0
    assert after["accuracy"] == 1.0 and after["margin_mean"] > 0
    assert summary["probe"]["l2"] in (0.01, 1.0) and set(summary["probe"]["cv_accuracy"]) == {"0.01", "1.0"}
    # the export is a reward model: reloaded, it scores the held-out pairs exactly as evaluated
    rm, tokenizer = load_reward_model(summary["export"])
    assert float(np.abs(np.asarray(rm.head.b[...]))) == 0.0
    assert np.linalg.norm(np.asarray(rm.head.w[...])) > 0
    config = load_config(RMConfig, tmp / "rm.yaml")
    held = load_pairs(config.data, tokenizer).heldout  # the same deterministic held-out cut
    assert len(held) == after["n"]
    rewards = score_pairs(
        rm, held, batch_size=config.probe.batch_size, length=config.data.max_length, pad_id=tokenizer.pad_id
    )  # [n, 2]: chosen, rejected
    margins = rewards[:, 0] - rewards[:, 1]
    assert np.mean(margins > 0) == after["accuracy"]
    for key, value in (
        ("margin_mean", margins.mean()),
        ("chosen_mean", rewards[:, 0].mean()),
        ("rejected_mean", rewards[:, 1].mean()),
        ("margin_std", margins.std()),
    ):
        assert value == pytest.approx(after[key], rel=1e-5, abs=1e-6), key


def test_probe_leaves_the_backbone_untouched(probed):
    from align.hub import ModelOptions, load_model

    _, summary = probed
    rm, _ = load_reward_model(summary["export"])
    fresh, _ = load_model(ModelOptions(spec="preset:tiny", seed=1))
    from flax import nnx

    ours, theirs = nnx.state(rm.backbone, nnx.Param), nnx.state(fresh, nnx.Param)
    assert jax.tree.structure(ours) == jax.tree.structure(theirs)
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs)))


def test_fit_must_be_known():
    with pytest.raises(ValueError, match="fit='probes'"):
        RMConfig(output_dir="x", fit="probes")
