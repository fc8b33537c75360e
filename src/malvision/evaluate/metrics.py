"""Classification and detection metrics, computed with scikit-learn."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
    roc_auc_score,
    roc_curve,
)

__all__ = ["classification_metrics", "detection_metrics", "tpr_at_fpr", "threshold_for_fpr"]


def classification_metrics(y_true: np.ndarray, probs: np.ndarray, classes: list[str]) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class precision/recall/F1/support and the confusion matrix."""
    y_true = np.asarray(y_true)
    y_pred = probs.argmax(axis=1)
    labels = list(range(len(classes)))
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    present = [i for i in labels if s[i] > 0]  # macro over classes present in y_true
    out: dict[str, Any] = {
        "n": int(len(y_true)),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0)),
        "per_class": {
            classes[i]: {
                "precision": float(p[i]),
                "recall": float(r[i]),
                "f1": float(f[i]),
                "support": int(s[i]),
            }
            for i in labels
        },
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        "classes": list(classes),
    }
    if "malware" in classes and len(classes) == 2:
        pos = classes.index("malware")
        out.update(detection_metrics((y_true == pos).astype(int), probs[:, pos]))
    return out


def tpr_at_fpr(y: np.ndarray, score: np.ndarray, fpr_target: float) -> float:
    """Highest true-positive rate whose false-positive rate is at most ``fpr_target``."""
    fpr, tpr, _ = roc_curve(y, score)
    ok = fpr <= fpr_target
    return float(tpr[ok].max()) if ok.any() else 0.0


def threshold_for_fpr(benign_scores: np.ndarray, fpr_target: float) -> float:
    """Smallest score threshold (``score >= t`` flags) whose FPR on ``benign_scores`` is <= target."""
    s = np.sort(np.asarray(benign_scores, dtype=np.float64))[::-1]
    allowed = int(np.floor(fpr_target * len(s)))  # benign files allowed above the threshold
    if allowed >= len(s):
        return 0.0
    return float(np.nextafter(s[allowed], np.inf))


def detection_metrics(y: np.ndarray, score: np.ndarray) -> dict[str, Any]:
    """ROC-AUC and TPR at 1% and 0.1% FPR for malware (1) vs benign (0) scores."""
    y = np.asarray(y)
    if len(np.unique(y)) < 2:
        return {"roc_auc": None, "tpr_at_1pct_fpr": None, "tpr_at_0.1pct_fpr": None}
    return {
        "roc_auc": float(roc_auc_score(y, score)),
        "tpr_at_1pct_fpr": tpr_at_fpr(y, score, 0.01),
        "tpr_at_0.1pct_fpr": tpr_at_fpr(y, score, 0.001),
        "n_malware": int(y.sum()),
        "n_benign": int((1 - y).sum()),
    }
