"""Score calibration, numpy only so scanning never imports torch or scikit-learn for it.

Temperature scaling softens or sharpens the softmax; Platt scaling then maps a detector's malware
log-odds through a fitted sigmoid. Log-odds, not probabilities, go between the two: a probability
rounds to exactly 1.0 once the log-odds pass ~37, and ties there would blur the top of the ranking.
Both maps are monotonic: rankings (ROC, TPR at FPR) are unchanged.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "softmax",
    "fit_temperature",
    "fit_class_offsets",
    "log_odds",
    "fit_platt",
    "platt_scale",
    "sigmoid",
]


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of ``logits / temperature`` in float64."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """Temperature T for softmax(logits / T) on a validation split (grid search, 0.05..20): the most
    probable T under a standard normal prior on log T. Log-probabilities serve as well as logits.
    Where the split is not perfectly separated, its NLL decides; where it is, the NLL alone keeps
    falling as T -> 0 and has no minimum (one fold of a detector would then be sharpened far past the
    others), and the prior keeps T near 1."""
    logits = np.asarray(logits, dtype=np.float64)
    best_t, best = 1.0, np.inf
    for t in np.exp(np.linspace(np.log(0.05), np.log(20.0), 300)):
        z = logits / t
        z -= z.max(axis=1, keepdims=True)
        lse = np.log(np.exp(z).sum(axis=1))
        objective = float(np.sum(lse - z[np.arange(len(labels)), labels])) + 0.5 * np.log(t) ** 2
        if objective < best:
            best_t, best = float(t), objective
    return best_t


def fit_class_offsets(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """One offset a class (summing to 0) that minimises the log-loss of ``logits + offsets`` on
    ``labels``: logits from out-of-fold scores, for a head whose confidence is tilted between classes."""
    from scipy.optimize import minimize
    from scipy.special import log_softmax

    logits, labels = np.asarray(logits, dtype=np.float64), np.asarray(labels)

    def loss(b: np.ndarray) -> float:
        return -float(log_softmax(logits + b, axis=1)[np.arange(len(labels)), labels].mean())

    b = minimize(loss, np.zeros(logits.shape[1]), method="L-BFGS-B").x
    return b - b.mean()


def log_odds(logits: np.ndarray, index: int, temperature: float = 1.0) -> np.ndarray:
    """log P(index) - log P(other) under softmax(logits / temperature), for two-class rows. Log-probabilities
    serve as well as logits. Exact where the probability itself would round to 0 or 1."""
    z = np.asarray(logits, dtype=np.float64)
    return (z[:, index] - z[:, 1 - index]) / temperature


def detector_score(
    logits: np.ndarray, malware: int, temperature: float = 1.0, platt: dict[str, float] | None = None
) -> np.ndarray:
    """A detector's P(malware) for two-class logits (N, 2), the score its verdicts compare with the card's
    threshold: the log-odds at ``temperature``, then the card's Platt map where it has one."""
    z = log_odds(logits, malware, temperature)
    return platt_scale(z, platt) if platt is not None else sigmoid(z)


def fit_platt(z: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Platt scaling sigmoid(a * z + b) fitted on out-of-fold log-odds ``z`` (files of unseen groups)."""
    from sklearn.linear_model import LogisticRegression

    lr = LogisticRegression(C=1e6, max_iter=1000).fit(np.asarray(z, dtype=np.float64)[:, None], y)
    return {"a": float(lr.coef_[0, 0]), "b": float(lr.intercept_[0])}


def platt_scale(z: np.ndarray, platt: dict[str, float]) -> np.ndarray:
    """Apply ``fit_platt``'s map to log-odds ``z``: a probability."""
    return sigmoid(platt["a"] * np.asarray(z, dtype=np.float64) + platt["b"])


def sigmoid(x: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-x)) without overflow."""
    return np.exp(-np.logaddexp(0.0, -np.asarray(x, dtype=np.float64)))
