"""Thresholds for a target false-positive rate, three ways, each with an interval from benign projects.

- ``empirical``: the smallest threshold that flags at most ``fpr`` of the benign scores (the card's).
- ``tail``: a generalized Pareto model of the benign log-odds above a high quantile (peaks over
  threshold), read at ``fpr``: the top few files inform the fitted tail instead of being the answer.
- ``conformal``: the k-th largest benign score, k the largest with P(true FPR <= fpr) >= 1 - delta
  when the scores are exchangeable (the k-th largest of n has a Beta(k, n + 1 - k) exceedance).

``bootstrap_thresholds`` redraws whole benign projects with replacement and sets the threshold again
on each replicate: files of one project are not independent, so this is the spread that matters.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy import stats

from malvision.evaluate.metrics import group_members, threshold_for_fpr

__all__ = [
    "METHODS",
    "empirical_threshold",
    "tail_threshold",
    "conformal_threshold",
    "conformal_rank",
    "bootstrap_thresholds",
    "threshold_interval",
    "compare_methods",
]

METHODS = ("empirical", "tail", "conformal")
_EPS = 1e-15


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), _EPS, 1 - _EPS)
    return np.log(p) - np.log1p(-p)


def empirical_threshold(benign: np.ndarray, fpr: float) -> float:
    """Smallest ``t`` (``score >= t`` flags) with at most ``fpr`` of ``benign`` flagged."""
    return threshold_for_fpr(np.asarray(benign, dtype=np.float64), fpr)


def tail_threshold(benign: np.ndarray, fpr: float, *, tail: float = 0.05) -> float:
    """The ``1 - fpr`` quantile of a generalized Pareto fit to the benign log-odds above their
    ``1 - tail`` quantile, as a score in (0, 1). Scores must be probabilities."""
    if not 0 < fpr < tail < 1:
        raise ValueError(f"the tail model needs 0 < fpr ({fpr}) < tail ({tail}) < 1")
    z = _logit(benign)
    u = float(np.quantile(z, 1 - tail))
    exceed = z[z > u] - u
    if len(exceed) < 10:
        raise ValueError(f"{len(exceed)} benign scores above the tail's start; the fit needs at least 10")
    share = len(exceed) / len(z)  # the fraction the fit describes (close to ``tail``; ties move it)
    c, _, scale = stats.genpareto.fit(exceed, floc=0)
    zq = u + float(stats.genpareto.ppf(1 - fpr / share, c, loc=0, scale=scale))
    return float(1 / (1 + np.exp(-zq)))


def conformal_rank(n: int, fpr: float, delta: float = 0.05) -> int:
    """The largest k such that the k-th largest of ``n`` exchangeable benign scores, as a threshold,
    has a true FPR <= ``fpr`` with probability >= 1 - ``delta``; 0 when no k does (too few scores)."""
    k = np.arange(1, n + 1)
    ok = stats.beta.cdf(fpr, k, n + 1 - k) >= 1 - delta
    return int(k[ok].max()) if ok.any() else 0


def conformal_threshold(benign: np.ndarray, fpr: float, *, delta: float = 0.05) -> float:
    """Just above the ``conformal_rank``-th largest benign score (flags fewer files than that rank);
    just above the largest when too few scores allow any rank (no guarantee is possible then)."""
    s = np.sort(np.asarray(benign, dtype=np.float64))[::-1]
    k = max(conformal_rank(len(s), fpr, delta), 1)
    return float(np.nextafter(s[k - 1], np.inf))


def _method(name: str, *, tail: float = 0.05, delta: float = 0.05) -> Callable[[np.ndarray, float], float]:
    if name == "empirical":
        return empirical_threshold
    if name == "tail":
        return lambda b, f: tail_threshold(b, f, tail=tail)
    if name == "conformal":
        return lambda b, f: conformal_threshold(b, f, delta=delta)
    raise ValueError(f"unknown threshold method {name!r}; use one of {', '.join(METHODS)}")


def bootstrap_thresholds(
    benign: np.ndarray,
    groups: Sequence[object] | np.ndarray,
    fpr: float | Sequence[float],
    method: str = "empirical",
    *,
    n_boot: int = 2000,
    seed: int = 0,
    **options: float,
) -> np.ndarray:
    """The threshold(s) of ``method`` on ``n_boot`` replicates that redraw whole benign projects
    (``groups``) with replacement: shape ``(n_boot,)`` for one ``fpr``, ``(n_boot, len(fpr))`` for several."""
    benign = np.asarray(benign, dtype=np.float64)
    groups = np.asarray(groups)
    if len(groups) != len(benign):
        raise ValueError(f"{len(groups)} groups for {len(benign)} benign scores")
    names, members = group_members(groups)
    fprs = np.atleast_1d(np.asarray(fpr, dtype=np.float64))
    fn = _method(method, **options)
    rng = np.random.default_rng(seed)
    out = np.empty((n_boot, len(fprs)))
    for b in range(n_boot):
        drawn = benign[np.concatenate([members[i] for i in rng.integers(0, len(names), len(names))])]
        if method == "empirical":
            out[b] = threshold_for_fpr(drawn, fprs)
        else:
            out[b] = [fn(drawn, f) for f in fprs]
    return out[:, 0] if np.ndim(fpr) == 0 else out


def threshold_interval(
    y: np.ndarray,
    score: np.ndarray,
    groups: Sequence[object] | np.ndarray,
    fpr: float | Sequence[float],
    method: str = "empirical",
    *,
    n_boot: int = 2000,
    seed: int = 0,
    **options: float,
) -> list[dict[str, Any]]:
    """Per ``fpr``: the ``method``'s threshold on all benign scores, its 95% interval over the
    benign-project bootstrap, and the detection rate (malware scores >= threshold) at the point and at
    the interval's lower and upper ends (the lower end detects more)."""
    y, score, groups = np.asarray(y), np.asarray(score, dtype=np.float64), np.asarray(groups)
    benign, mal = score[y == 0], np.sort(score[y == 1])
    fprs = list(np.atleast_1d(np.asarray(fpr, dtype=np.float64)))
    fn = _method(method, **options)
    reps = bootstrap_thresholds(benign, groups[y == 0], fprs, method, n_boot=n_boot, seed=seed, **options)
    tpr = lambda t: float(1 - np.searchsorted(mal, t, side="left") / len(mal))  # noqa: E731
    rows = []
    for k, f in enumerate(fprs):
        t = fn(benign, float(f))
        lo, hi = (float(v) for v in np.percentile(reps[:, k], [2.5, 97.5]))
        rows.append({
            "fpr": float(f),
            "threshold": t,
            "threshold_ci95": [lo, hi],
            "benign_fpr": float((benign >= t).mean()),
            "tpr": tpr(t),
            "tpr_at_threshold_ci95": [tpr(lo), tpr(hi)],
        })  # fmt: skip
    return rows


def compare_methods(
    y: np.ndarray,
    score: np.ndarray,
    groups: Sequence[object] | np.ndarray,
    fpr: float,
    *,
    n_boot: int = 1000,
    n_splits: int = 200,
    seed: int = 0,
    tail: float = 0.05,
    delta: float = 0.05,
) -> dict[str, dict[str, Any]]:
    """Each method at ``fpr`` (``threshold_interval``) and, over ``n_splits`` random halvings of the
    benign projects, how the threshold set on one half does on the other: its FPR there (mean, and how
    often it exceeds ``fpr``) and the detection rate."""
    y, score, groups = np.asarray(y), np.asarray(score, dtype=np.float64), np.asarray(groups)
    benign, bgroups, mal = score[y == 0], groups[y == 0], score[y == 1]
    names = np.unique(bgroups)
    rng = np.random.default_rng(seed)
    halves = [np.isin(bgroups, names[rng.random(len(names)) < 0.5]) for _ in range(n_splits)]
    out: dict[str, dict[str, Any]] = {}
    for m in METHODS:
        opts = {"tail": tail} if m == "tail" else {"delta": delta} if m == "conformal" else {}
        row = threshold_interval(y, score, groups, fpr, m, n_boot=n_boot, seed=seed, **opts)[0]
        fn = _method(m, **opts)
        fprs, tprs = [], []
        for cal in halves:
            t = fn(benign[cal], fpr)
            fprs.append(float((benign[~cal] >= t).mean()))
            tprs.append(float((mal >= t).mean()))
        row["split_check"] = {
            "n_splits": n_splits,
            "fpr_on_other_half_mean": float(np.mean(fprs)),
            "share_over_target": float(np.mean(np.asarray(fprs) > fpr)),
            "tpr_mean": float(np.mean(tprs)),
        }
        out[m] = row
    return out
