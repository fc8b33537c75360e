"""Detection figures from out-of-fold scores: thresholds set on the benign scores, rates with group-bootstrap
intervals, and the same per malware collection and per file type."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

from malvision.calibration import fit_platt, platt_scale
from malvision.evaluate.metrics import bootstrap_tpr, detection_metrics, threshold_for_fpr
from malvision.evaluate.threshold import threshold_interval

__all__ = [
    "INTERVAL_METHOD",
    "THRESHOLD_INTERVAL_METHOD",
    "UNSCORED",
    "as_scanned",
    "calibrate_as_scanned",
    "detection_report",
    "scanned_metrics",
    "unscored",
]

INTERVAL_METHOD = (
    "95% percentile interval over 2,000 group-bootstrap replicates: whole malware families and benign "
    "projects redrawn with replacement, the threshold set again on each replicate's benign files"
)
THRESHOLD_INTERVAL_METHOD = (
    "threshold_ci95: 95% percentile interval of the threshold over 2,000 replicates that redraw whole benign "
    "projects with replacement (malware fixed); tpr_at_threshold_ci95: the detection rate at its lower and "
    "upper ends (the lower end detects more)"
)
POINTS = (0.001, 0.01)
# The score a file scan calls unknown counts with: below every calibrated score (those lie in [0, 1]), so it
# is flagged at no threshold: a miss for malware, no false positive for a benign file. ROC-AUC, a ranking,
# is taken over the files a scan scores (an unscored share caps the area, whatever the model)
UNSCORED = -1.0


def as_scanned(score: np.ndarray, unknown: Sequence[str | None]) -> np.ndarray:
    """``score`` as a scan reports it: a file whose ``unknown`` reason is set (``Prepared.triage``: not a
    PE, truncated, near-constant) gets no score from a scan, only the verdict ``unknown``, so its figures
    count it at ``UNSCORED``."""
    out = np.asarray(score, dtype=np.float64).copy()
    out[np.asarray([u is not None for u in unknown], dtype=bool)] = UNSCORED
    return out


def calibrate_as_scanned(
    raw: np.ndarray, y: np.ndarray, unknown: Sequence[str | None]
) -> tuple[dict[str, float], np.ndarray]:
    """Platt scaling fitted on the out-of-fold log-odds ``raw`` of the files a scan scores, and every file's
    calibrated score ``as_scanned`` (the rest at ``UNSCORED``)."""
    raw, y = np.asarray(raw, dtype=np.float64), np.asarray(y)
    judged = np.asarray([u is None for u in unknown], dtype=bool)
    platt = fit_platt(raw[judged], y[judged])
    return platt, as_scanned(platt_scale(raw, platt), unknown)


def scanned_metrics(y: np.ndarray, score: np.ndarray) -> dict[str, Any]:
    """``detection_metrics`` of scores ``as_scanned``: the TPRs at 1% and 0.1% FPR count the files at
    ``UNSCORED`` as never flagged, and ROC-AUC, a ranking, is taken over the files a scan ranks
    (``roc_auc_of`` says so when some are not)."""
    y, score = np.asarray(y), np.asarray(score, dtype=np.float64)
    m = detection_metrics(y, score)
    scored = score != UNSCORED
    if not scored.all():
        m["roc_auc"] = detection_metrics(y[scored], score[scored])["roc_auc"]
        m["roc_auc_of"] = (
            f"the {int(scored.sum()):,} files a scan scores; the rates count the {int((~scored).sum()):,} "
            "it calls unknown as never flagged"
        )
    return m


def unscored(y: np.ndarray | Sequence[int], unknown: Sequence[str | None]) -> dict[str, Any]:
    """What a card says of the files a scan calls unknown: how many of each class, and why (the reasons
    without their numbers: "truncated PE", "near-constant content", ...)."""
    y = np.asarray(y)
    out: dict[str, Any] = {"malware": 0, "benign": 0, "reasons": {}}
    reasons: Counter[str] = Counter()
    for label, why in zip(y, unknown, strict=True):
        if why is not None:
            out["malware" if label == 1 else "benign"] += 1
            reasons[re.split(r"[:(]", why, maxsplit=1)[0].strip()] += 1
    out["reasons"] = dict(reasons.most_common())
    out["rule"] = (
        "a scan calls these files unknown instead of scoring them, so every figure counts them as it does: "
        "never flagged (malware missed, benign files no false positive)"
    )
    return out


def _interval(rates: np.ndarray) -> list[float]:
    return [float(np.percentile(rates, 2.5)), float(np.percentile(rates, 97.5))]


def detection_report(
    y: np.ndarray,
    score: np.ndarray,
    groups: np.ndarray,
    *,
    target_fpr: float,
    seed: int = 0,
    collections: Sequence[str | None] | None = None,
    pe_types: Sequence[str | None] | None = None,
) -> dict[str, Any]:
    """ROC-AUC (of the files a scan scores: ``score`` above ``UNSCORED``); the threshold for ``target_fpr``
    on the benign scores and what it flags (files at ``UNSCORED`` never are); the operating
    points at 0.1% and 1% FPR (and the target) with 95% group-bootstrap intervals; and, given
    ``collections`` and ``pe_types``, the detection rate per malware collection (at the report's own
    thresholds) and what the threshold does per file type. ``y`` is 1 for malware; ``groups`` are the
    malware families and benign projects."""
    y, score, groups = np.asarray(y), np.asarray(score, dtype=np.float64), np.asarray(groups)
    threshold = threshold_for_fpr(score[y == 0], target_fpr)
    flagged = score >= threshold
    m = scanned_metrics(y, score)
    m |= {
        "threshold": threshold,
        "target_fpr": target_fpr,
        "fpr_at_threshold": float(flagged[y == 0].mean()),
        "false_positives": int(flagged[y == 0].sum()),
        "tpr_at_threshold": float(flagged[y == 1].mean()),
        "detected": int(flagged[y == 1].sum()),
        "accuracy_at_threshold": float((flagged == (y == 1)).mean()),
    }
    fprs = sorted({*POINTS, target_fpr})
    rates, _ = bootstrap_tpr(y, score, groups, fprs, seed=seed)
    cuts = threshold_interval(y, score, groups, fprs, seed=seed)  # empirical: the thresholds above
    m["operating_points"] = {
        f"{f:g}": {
            "threshold": c["threshold"],
            "fpr": c["benign_fpr"],
            "tpr": c["tpr"],
            "tpr_ci95": _interval(rates[:, k]),
            "threshold_ci95": c["threshold_ci95"],
            "tpr_at_threshold_ci95": c["tpr_at_threshold_ci95"],
        }
        for k, (f, c) in enumerate(zip(fprs, cuts, strict=True))
    }
    m["tpr_ci95"] = m["operating_points"][f"{target_fpr:g}"]["tpr_ci95"]
    m["tpr_ci95_method"] = INTERVAL_METHOD
    m["threshold_ci95_method"] = THRESHOLD_INTERVAL_METHOD
    cols = np.asarray(collections if collections is not None else [None] * len(y), dtype=object)
    if any(c is not None for c in cols[y == 1]):
        m["per_collection"] = _per_collection(y, score, groups, cols, seed)
    if pe_types is not None:
        m["per_type"] = _per_type(y, flagged, np.asarray(pe_types, dtype=object))
    return m


def _per_collection(
    y: np.ndarray, score: np.ndarray, groups: np.ndarray, cols: np.ndarray, seed: int
) -> dict[str, Any]:
    """Each malware collection's detection at the thresholds set on all benign scores, with the interval
    of a bootstrap over its own families (and all benign projects)."""
    out: dict[str, Any] = {}
    fprs = sorted({*POINTS})
    for c in sorted({str(c) for c in cols[y == 1] if c is not None}):
        keep = (y == 0) | (cols == c)
        rates, _ = bootstrap_tpr(y[keep], score[keep], groups[keep], fprs, seed=seed, n_boot=500)
        mal = score[(y == 1) & (cols == c)]
        out[c] = {"n": int(len(mal))}
        for k, f in enumerate(fprs):
            t = threshold_for_fpr(score[y == 0], f)
            out[c][f"tpr_at_{f:g}"] = float((mal >= t).mean())
            out[c][f"tpr_at_{f:g}_ci95"] = _interval(rates[:, k])
    return out


def _per_type(y: np.ndarray, flagged: np.ndarray, types: np.ndarray) -> dict[str, dict[str, int]]:
    """Per file type (``32-bit GUI``, ...): malware files and how many the threshold detects, benign
    files and how many it flags."""
    rows: dict[str, dict[str, int]] = defaultdict(
        lambda: {"malware": 0, "detected": 0, "benign": 0, "flagged": 0}
    )
    for t, yi, fi in zip(types, y, flagged, strict=True):
        r = rows[str(t) if t is not None else "not a PE"]
        if yi:
            r["malware"] += 1
            r["detected"] += int(fi)
        else:
            r["benign"] += 1
            r["flagged"] += int(fi)
    return dict(sorted(rows.items()))
