"""The fitted part of a judge: a multinomial logistic regression on standardised frozen features.

With z = (x - mu) / sd (mu, sd from the training rows) and K classes, the head is

    p(k | x) = softmax(z W + b)_k,   W [F, K], b [K]

fitted by minimising the L2-regularised mean cross-entropy

    L(W, b) = -mean_i log p(y_i | x_i) + (l2 / 2) |W|^2

(convex; solved by L-BFGS to its optimum, so a refit on the same features gives the same head).
l2 is chosen by grouped k-fold cross-validation on the training rows only: a fold holds out whole
groups (questions, models), the same way the held-out test set does.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
from scipy.optimize import minimize

from safety_evals.judges.data import stable_fraction

DEFAULT_L2_GRID = (1e-2, 1e-1, 1.0)


@dataclasses.dataclass(frozen=True)
class Head:
    mean: np.ndarray  # [F]
    scale: np.ndarray  # [F]
    weight: np.ndarray  # [F, K]
    bias: np.ndarray  # [K]

    def proba(self, x: np.ndarray) -> np.ndarray:
        """[n, F] features -> [n, K] probabilities (float64)."""
        z = (np.asarray(x, np.float64) - self.mean) / self.scale
        return _softmax(z @ self.weight + self.bias)

    def arrays(self) -> dict[str, np.ndarray]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)  # no overflow in exp
    e = np.exp(shifted)
    return e / e.sum(axis=-1, keepdims=True)


def fit_head(x: np.ndarray, y: np.ndarray, n_classes: int, l2: float) -> Head:
    """The minimiser of L(W, b) on features x [n, F] and integer labels y [n]."""
    x = np.asarray(x, np.float64)
    mean, scale = x.mean(0), x.std(0) + 1e-6  # +1e-6: dead units stay finite
    z = (x - mean) / scale
    n, f = z.shape
    onehot = np.eye(n_classes)[y]  # [n, K]

    def loss_grad(theta):
        w, b = theta[: f * n_classes].reshape(f, n_classes), theta[f * n_classes :]
        p = _softmax(z @ w + b)
        loss = -np.sum(onehot * np.log(p + 1e-300)) / n + 0.5 * l2 * np.sum(w * w)
        d = (p - onehot) / n  # [n, K]
        return loss, np.concatenate([(z.T @ d + l2 * w).ravel(), d.sum(0)])

    theta0 = np.zeros(f * n_classes + n_classes)
    res = minimize(loss_grad, theta0, jac=True, method="L-BFGS-B", options={"maxiter": 500, "gtol": 1e-6})
    w, b = res.x[: f * n_classes].reshape(f, n_classes), res.x[f * n_classes :]
    return Head(mean=mean, scale=scale, weight=w, bias=b)


def group_folds(groups: Sequence[str], k: int, salt: str = "cv") -> np.ndarray:
    """[n] fold index of each row; every group in one fold (by a hash of its name)."""
    names = sorted(set(groups))
    if len(names) <= k:  # few groups (XSTest's models): one fold per group
        fold_of = {g: i for i, g in enumerate(names)}
    else:
        fold_of = {g: int(stable_fraction(salt + g) * k) for g in names}
    return np.array([fold_of[g] for g in groups])


def choose_l2(
    x: np.ndarray, y: np.ndarray, groups: Sequence[str], n_classes: int, grid=DEFAULT_L2_GRID, k: int = 4
) -> tuple[float, dict[float, float]]:
    """(l2 with the best grouped-CV accuracy, {l2: accuracy}) on the training rows."""
    folds = group_folds(groups, k)
    scores = {}
    for l2 in grid:
        correct = 0
        for f in np.unique(folds):
            head = fit_head(x[folds != f], y[folds != f], n_classes, l2)
            correct += int(np.sum(head.proba(x[folds == f]).argmax(-1) == y[folds == f]))
        scores[float(l2)] = correct / len(y)
    return max(scores, key=scores.get), scores
