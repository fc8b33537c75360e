"""Score calibration, numpy only so scanning never imports torch or scikit-learn for it.

Temperature scaling softens or sharpens the softmax; Platt scaling then maps a malware probability
through a fitted sigmoid of its logit. Both are monotonic: rankings (ROC, TPR at FPR) are unchanged.
"""

from __future__ import annotations

import numpy as np

__all__ = ["softmax", "fit_temperature", "fit_platt", "platt_scale"]


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of ``logits / temperature`` in float64."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def fit_temperature(probs: np.ndarray, labels: np.ndarray) -> float:
    """Temperature T minimising validation NLL of softmax(log p / T) (grid search, 0.05..20)."""
    logp = np.log(np.clip(probs, 1e-12, 1.0))
    best_t, best_nll = 1.0, np.inf
    for t in np.exp(np.linspace(np.log(0.05), np.log(20.0), 300)):
        z = logp / t
        z -= z.max(axis=1, keepdims=True)
        lse = np.log(np.exp(z).sum(axis=1))
        nll = float(np.mean(lse - z[np.arange(len(labels)), labels]))
        if nll < best_nll:
            best_t, best_nll = float(t), nll
    return best_t


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-15, 1 - 1e-15)
    return np.log(p) - np.log1p(-p)


def fit_platt(scores: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Platt scaling sigmoid(a * logit(s) + b) fitted on out-of-fold scores (files of unseen groups)."""
    from sklearn.linear_model import LogisticRegression

    lr = LogisticRegression(C=1e6, max_iter=1000).fit(_logit(scores)[:, None], y)
    return {"a": float(lr.coef_[0, 0]), "b": float(lr.intercept_[0])}


def platt_scale(scores: np.ndarray, platt: dict[str, float]) -> np.ndarray:
    """Apply ``fit_platt``'s map."""
    return 1.0 / (1.0 + np.exp(-(platt["a"] * _logit(scores) + platt["b"])))
