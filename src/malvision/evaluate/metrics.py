"""Classification and detection metrics, computed with scikit-learn."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, overload

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
    roc_auc_score,
    roc_curve,
)

__all__ = [
    "classification_metrics", "detection_metrics", "tpr_at_fpr", "threshold_for_fpr", "bootstrap_tpr",
    "tpr_interval", "group_members",
]  # fmt: skip


def classification_metrics(
    y_true: np.ndarray, probs: np.ndarray, classes: list[str], y_pred: np.ndarray | None = None
) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class precision/recall/F1/support and the confusion matrix, of ``y_pred``
    (default: the most probable class; a detector's verdicts at its threshold where given)."""
    y_true = np.asarray(y_true)
    y_pred = probs.argmax(axis=1) if y_pred is None else np.asarray(y_pred)
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


@overload
def threshold_for_fpr(benign_scores: np.ndarray, fpr_target: float) -> float: ...
@overload
def threshold_for_fpr(benign_scores: np.ndarray, fpr_target: Sequence[float] | np.ndarray) -> np.ndarray: ...
def threshold_for_fpr(benign_scores: np.ndarray, fpr_target: Any) -> Any:
    """Smallest score threshold (``score >= t`` flags) whose FPR on ``benign_scores`` is <= target; an
    array of targets gives an array of thresholds."""
    s = np.sort(np.asarray(benign_scores, dtype=np.float64))[::-1]
    allowed = np.floor(np.asarray(fpr_target, dtype=np.float64) * len(s)).astype(np.int64)
    inside = allowed < len(s)  # benign files allowed above the threshold; all of them: threshold 0
    top = np.nextafter(s[np.minimum(allowed, len(s) - 1)], np.inf) if len(s) else 0.0
    t = np.where(inside, top, 0.0)
    return float(t) if t.ndim == 0 else t


def group_members(groups: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """The distinct ``groups`` (sorted) and, for each, the indices of its rows (ascending): what a
    group bootstrap draws from."""
    names, inverse = np.unique(np.asarray(groups), return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    starts = np.searchsorted(inverse[order], np.arange(len(names) + 1))
    return names, [order[starts[i] : starts[i + 1]] for i in range(len(names))]


def bootstrap_tpr(
    y: np.ndarray,
    score: np.ndarray,
    groups: np.ndarray,
    fpr_targets: float | Sequence[float],
    *,
    n_boot: int = 2000,
    seed: int = 0,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Detection rates at the thresholds for ``fpr_targets`` over a group bootstrap (shape
    ``(n_boot,)`` for one target, ``(n_boot, len(fpr_targets))`` for several), and how often each
    benign group was drawn in each replicate (``{group: counts}``, counts of shape ``(n_boot,)``).

    Each replicate redraws whole groups (malware families, benign projects) with replacement within
    each class, sets the thresholds on its benign scores and counts its malware above them. Files of
    one group are not independent, so redrawing files would understate the spread. The scores stay
    fixed: this is the spread from which files were there to test, not from training again."""
    y, score, groups = np.asarray(y), np.asarray(score, dtype=np.float64), np.asarray(groups)
    targets = np.atleast_1d(np.asarray(fpr_targets, dtype=np.float64))
    names, members = {}, {}
    for c in (0, 1):
        rows = np.flatnonzero(y == c)
        names[c], within = group_members(groups[rows])
        members[c] = [rows[m] for m in within]
    if not len(names[0]) or not len(names[1]):
        raise ValueError("a bootstrap of detection rates needs both classes")
    rng = np.random.default_rng(seed)
    rates = np.empty((n_boot, len(targets)))
    counts = np.zeros((n_boot, len(names[0])), dtype=np.int64)
    for b in range(n_boot):
        picks = {c: rng.integers(0, len(names[c]), len(names[c])) for c in (0, 1)}
        drawn = {c: np.concatenate([members[c][i] for i in picks[c]]) for c in (0, 1)}
        cuts = threshold_for_fpr(score[drawn[0]], targets)
        rates[b] = 1 - np.searchsorted(np.sort(score[drawn[1]]), cuts, side="left") / len(drawn[1])
        counts[b] = np.bincount(picks[0], minlength=len(names[0]))
    return (rates[:, 0] if np.ndim(fpr_targets) == 0 else rates), {
        str(g): counts[:, k] for k, g in enumerate(names[0])
    }


def tpr_interval(
    y: np.ndarray,
    score: np.ndarray,
    groups: np.ndarray,
    fpr_target: float,
    *,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile interval (``level``) of the detection rate at the threshold for ``fpr_target``, over
    the group bootstrap of ``bootstrap_tpr``."""
    rates, _ = bootstrap_tpr(y, score, groups, fpr_target, n_boot=n_boot, seed=seed)
    tail = 100 * (1 - level) / 2
    return float(np.percentile(rates, tail)), float(np.percentile(rates, 100 - tail))


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
