"""A reward model's head fitted on frozen backbone features: a Bradley-Terry linear probe.

    model, report = fit_probe(model, train_pairs, batch_size=8, pad_id=0)   # sets model.head.w

The CPU-cheap way to a reward model: one forward pass over the training pairs (reward_models.features,
through its cache when given one) gives the features h_c, h_r [n, D], the final hidden states pooled
as the ScoreModel pools its reward (model.pool: the last token, or the mean over the response tokens;
the head is linear, so either way reward = w . h);
with z = (h - mu) / sd standardised on the training features and x_i = z_c,i - z_r,i, the head
minimises the L2-regularised Bradley-Terry loss

    L(u) = mean_i softplus(-x_i . u) + (l2 / 2) |u|^2

which is logistic regression without intercept on the differences, convex, solved exactly by Newton
steps (D x D Hessian, D = 640 for Gemma 3 270M). l2 is chosen by k-fold cross-validated pairwise
accuracy on the training pairs only (held-out pairs stay unseen; each fold is standardised on
its own training rows). The head on raw features is w = u / sd; its bias stays 0 (the HF export
has none and Bradley-Terry ignores shifts).
Compared with fine-tuning (reward_models.train), it costs one forward per pair and no backward.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np

from align.data import TokenizedPair
from align.errors import InvalidInput
from align.model.heads import ScoreModel
from align.reward.model import backbone_of
from reward_models.features import FEATURE_POOL, FeatureCache, pair_feature_sets, pool_index

DEFAULT_L2_GRID = (1e-2, 1e-1, 1.0, 10.0, 100.0)


def head_features(
    model: ScoreModel,
    pairs: Sequence[TokenizedPair],
    *,
    batch_size: int,
    bucket: int = 64,
    pad_id: int = 0,
    cache: FeatureCache | None = None,
    pools: Sequence[str] = (),
    layers: Sequence[int] = (),
    progress=None,
    mesh=None,
) -> np.ndarray:
    """The head's input features [n, 2, D] float32 (chosen, rejected): the final layer pooled as
    model.pool, by reward_models.features.pair_feature_sets (length buckets, `batch_size` pairs per
    forward, the cache if given, each process reading only its pairs on a mesh).

    pools, layers: computed (and stored in the cache) besides the head's own, e.g. for heads fitted
    off-line; they name the cache entries, so a rerun must pass the same ones to read them."""
    backbone = backbone_of(model)  # LoRA adapters merged: layer_states is the plain decoder's
    n_layers, pool = len(backbone.layers), FEATURE_POOL[model.pool]
    pools = tuple(pools) if pool in pools else (*pools, pool)
    layers = tuple(sorted(set(layers) | {n_layers}))
    h = pair_feature_sets(
        backbone,
        pairs,
        pools=pools,
        layers=layers,
        batch_size=batch_size,
        bucket=bucket,
        pad_id=pad_id,
        cache=cache,
        progress=progress,
        mesh=mesh,
    )
    return h[:, :, pool_index(pools, layers, pool, n_layers)]


def fit_logistic(x: np.ndarray, l2: float, *, iterations: int = 50, tol: float = 1e-10) -> np.ndarray:
    """argmin_u mean softplus(-x @ u) + l2/2 |u|^2 by Newton's method (x [n, D]); returns u [D]."""
    n, d = x.shape
    u = np.zeros(d)
    for _ in range(iterations):
        p = 0.5 * (1.0 - np.tanh(0.5 * (x @ u)))  # sigma(-x.u), the gradient weight; no exp overflow
        grad = -(x.T @ p) / n + l2 * u
        hess = (x.T * (p * (1 - p))) @ x / n + l2 * np.eye(d)
        step = np.linalg.solve(hess, grad)
        u -= step
        if float(np.abs(step).max()) < tol:
            break
    return u


def feature_scale(h: np.ndarray) -> np.ndarray:
    """sd [D] of the chosen and rejected features h [n, 2, D] together (+1e-6 for dead units)."""
    return h.reshape(-1, h.shape[-1]).std(0) + 1e-6


def cross_validate_l2(h: np.ndarray, grid: Sequence[float], folds: int, seed: int = 0) -> dict[float, float]:
    """{l2: mean k-fold accuracy (x_i . u > 0)} on the training features h [n, 2, D].

    Each fold is standardised with the sd of its own training rows, as the final fit is with the
    sd of all training pairs: the held-out rows of a fold take no part in its fit, scale included."""
    n = len(h)
    folds = max(2, min(folds, n))
    fold_of = np.random.default_rng(seed).permutation(n) % folds
    diff = h[:, 0] - h[:, 1]
    scales = [feature_scale(h[fold_of != f]) for f in range(folds)]
    scores = {}
    for l2 in grid:
        correct = 0
        for f, sd in enumerate(scales):
            u = fit_logistic(diff[fold_of != f] / sd, l2)
            correct += int(np.sum(diff[fold_of == f] / sd @ u > 0))
        scores[float(l2)] = correct / n
    return scores


def fit_probe(
    model: ScoreModel,
    pairs: Sequence[TokenizedPair],
    *,
    batch_size: int,
    bucket: int = 64,
    pad_id: int = 0,
    cache: FeatureCache | None = None,
    pools: Sequence[str] = (),
    layers: Sequence[int] = (),
    l2_grid: Sequence[float] = DEFAULT_L2_GRID,
    folds: int = 5,
    seed: int = 0,
    progress=None,
    mesh=None,
) -> tuple[ScoreModel, dict]:
    """Set `model.head` to the cross-validated Bradley-Terry probe; returns (model, report).

    The feature pass is head_features' (its arguments); the fit itself is numpy on the host."""
    if len(pairs) < 2:
        raise InvalidInput(f"a probe needs at least 2 training pairs, got {len(pairs)}")
    h = head_features(
        model,
        pairs,
        batch_size=batch_size,
        bucket=bucket,
        pad_id=pad_id,
        cache=cache,
        pools=pools,
        layers=layers,
        progress=progress,
        mesh=mesh,
    )
    w, report = fit_head(h, l2_grid, folds, seed)
    set_head(model, w)
    return model, report


def set_head(model: ScoreModel, w: np.ndarray) -> None:
    """The head's weight := w [D] on raw features; its bias 0 (the HF export has none)."""
    model.head.w[...] = jnp.asarray(w, model.head.w[...].dtype)
    model.head.b[...] = jnp.zeros_like(model.head.b[...])


def fit_head(
    h: np.ndarray, l2_grid: Sequence[float] = DEFAULT_L2_GRID, folds: int = 5, seed: int = 0
) -> tuple[np.ndarray, dict]:
    """(w [D] on raw features, report) of the cross-validated probe on training features h [n, 2, D]."""
    h = np.asarray(h, np.float64)
    sd = feature_scale(h)
    x = (h[:, 0] - h[:, 1]) / sd  # standardised differences (the feature mean cancels)
    cv = cross_validate_l2(h, l2_grid, folds, seed)
    l2 = max(cv, key=lambda k: (cv[k], k))  # ties -> the stronger regularisation
    u = fit_logistic(x, l2)
    return u / sd, {
        "pairs": len(h),
        "l2": l2,
        "cv_accuracy": {str(k): v for k, v in cv.items()},
        "train_accuracy": float(np.mean(x @ u > 0)),
    }
