"""How three ways of setting a detector's FPR threshold hold up on its out-of-fold scores, as Markdown + PNG.

    .venv/bin/python scripts/threshold_report.py ~/.cache/malvision/runs/v3-lgbm --out docs/threshold.md

Reads a `malvision train-detector` run's out-of-fold scores (`oof_scores.json`: the card's protocol,
benign groups = projects) and compares `evaluate.threshold`'s methods at 0.1% and 1% FPR: the threshold,
its 95% interval over a bootstrap of benign projects, the detection rate at the interval's ends, and how
a threshold set on a random half of the projects does on the other half. Writes the report and a PNG
beside it (same name, `.png`).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from malvision.data.splits import group_keys
from malvision.evaluate.threshold import METHODS, compare_methods, tail_threshold
from malvision.io import atomic_writer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from _machine import command_line, cpu_model  # noqa: E402

FPRS = (0.001, 0.01)
WORDS = {
    "empirical": "empirical quantile (today's card)",
    "tail": "generalized Pareto tail of benign log-odds",
    "conformal": "order-statistic bound, P(FPR <= target) >= 95%",
}


def load(run: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, str]:
    """(y, score, group keys, each file's source, protocol) of a run's out-of-fold scores; exits with one
    line on bad input. A benign file's source is its project's registry or host (`github`, `pypi`, `npm`,
    `deb`: the project name's prefix)."""
    try:
        oof = json.loads((run / "oof_scores.json").read_text())
        y, score = np.asarray(oof["y"], dtype=np.int64), np.asarray(oof["score"], dtype=np.float64)
        groups = group_keys(oof["group"], len(y))
        source = np.array([str(g).split(":", 1)[0] if ":" in str(g) else "other" for g in oof["group"]])
    except (OSError, ValueError, KeyError, TypeError) as e:
        sys.exit(f"error: {run}: not a `malvision train-detector` run with out-of-fold scores ({e})")
    if not ((y == 0).sum() and (y == 1).sum()):
        sys.exit(f"error: {run}: out-of-fold scores need both benign and malware files")
    return y, score, groups, source, str(oof.get("protocol", "?"))


def _pct(x: float) -> str:
    return f"{x:.1%}"


def table(results: dict[float, dict[str, dict[str, Any]]], n_benign: int) -> list[str]:
    """The report's Markdown table: one row per method and FPR."""
    lines = [
        "| target FPR | method | threshold | 95% interval (width) | benign flagged | TPR | TPR at interval ends "
        "| other half: FPR mean, share over target | other half: TPR |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for f, rows in results.items():
        for m in METHODS:
            r = rows[m]
            lo, hi = r["threshold_ci95"]
            a, b = r["tpr_at_threshold_ci95"]
            s = r["split_check"]
            lines.append(
                f"| {f:.1%} | {m} | {r['threshold']:.4f} | {lo:.4f} to {hi:.4f} ({hi - lo:.4f}) "
                f"| {round(r['benign_fpr'] * n_benign)} | {_pct(r['tpr'])} | {_pct(a)} to {_pct(b)} "
                f"| {s['fpr_on_other_half_mean']:.2%}, {s['share_over_target']:.0%} | {_pct(s['tpr_mean'])} |"
            )
    return lines


def plot(
    y: np.ndarray, score: np.ndarray, results: dict[float, dict[str, dict[str, Any]]], path: Path
) -> None:
    """Left: the benign tail (share of benign files at or above a score) with the Pareto fit. Right: the
    detection rate against the threshold, each method's 95% interval as a band."""
    import matplotlib.pyplot as plt

    from malvision.evaluate.plots import save_figure

    benign, mal = np.sort(score[y == 0])[::-1], np.sort(score[y == 1])
    logit = lambda p: np.log(np.clip(p, 1e-15, 1 - 1e-15)) - np.log1p(-np.clip(p, 1e-15, 1 - 1e-15))  # noqa: E731
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    top = min(len(benign), 400)
    share = np.arange(1, top + 1) / len(benign)
    a.step(logit(benign[:top]), share, where="post", label="benign, out-of-fold")
    grid = np.geomspace(1e-4, 0.04, 60)
    a.plot([logit(tail_threshold(benign, g)) for g in grid], grid, label="generalized Pareto tail (top 5%)")
    colors = {"empirical": "C0", "tail": "C1", "conformal": "C2"}
    for f in FPRS:
        a.axhline(f, color="grey", lw=0.8, ls=":")
    a.set_yscale("log")
    a.set_ylim(1 / len(benign) / 2, 0.05)
    a.set_xlabel("benign score, as log-odds")
    a.set_ylabel("share of benign files at or above")
    a.set_title("the benign tail that sets the threshold")
    a.legend(loc="lower left")
    a.grid(alpha=0.3, which="both")
    ts = np.linspace(0.5, 1.0, 400)
    b.plot(
        ts, 1 - np.searchsorted(mal, ts, side="left") / len(mal), color="k", lw=1, label="malware detected"
    )
    for k, f in enumerate(FPRS):
        for j, m in enumerate(METHODS):
            r = results[f][m]
            lo, hi = r["threshold_ci95"]
            yv = 0.05 + 0.06 * (j + 3 * k)
            b.plot([lo, hi], [yv, yv], color=colors[m], lw=4, alpha=0.6)
            b.plot([r["threshold"]], [yv], "o", color=colors[m], label=f"{m}" if k == 0 else None)
            b.annotate(f"{f:.1%}", (hi, yv), xytext=(3, -3), textcoords="offset points", fontsize=7)
    b.set_xlim(0.5, 1.0)
    b.set_ylim(0, 1)
    b.set_xlabel("threshold (calibrated score)")
    b.set_ylabel("detection rate (malware, unseen collections)")
    b.set_title("each method's threshold (dot) and 95% interval (bar)")
    b.legend(loc="upper left", fontsize=8)
    b.grid(alpha=0.3)
    save_figure(fig, path)


def by_source(y: np.ndarray, score: np.ndarray, source: np.ndarray, results: dict) -> list[str]:
    """Benign files at or above each card (empirical) threshold, by source: which kind of benign file the
    0.1% is spent on."""
    ben = y == 0
    points = {f: rows["empirical"]["threshold"] for f, rows in results.items()}
    lines = [
        "| source | benign files | " + " | ".join(f"flagged at the {f:.1%} point" for f in points) + " |",
        "|---|---|" + "---|" * len(points),
    ]
    for src in sorted(set(source[ben]), key=lambda k: -int((source[ben] == k).sum())):
        m = ben & (source == src)
        cells = [f"{int((score[m] >= t).sum())} ({(score[m] >= t).mean():.2%})" for t in points.values()]
        lines.append(f"| {src} | {int(m.sum()):,} | " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("run", type=Path, help="a `malvision train-detector` run folder")
    p.add_argument("--out", type=Path, required=True, help="the Markdown report (the PNG goes beside it)")
    p.add_argument("--n-boot", type=int, default=1000)
    p.add_argument("--n-splits", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    y, score, groups, source, protocol = load(a.run)
    results = {
        f: compare_methods(y, score, groups, f, n_boot=a.n_boot, n_splits=a.n_splits, seed=a.seed)
        for f in FPRS
    }
    png = a.out.with_suffix(".png")
    plot(y, score, results, png)
    nb, nm = int((y == 0).sum()), int((y == 1).sum())
    n_proj = len(np.unique(groups[y == 0]))
    lines = [
        "# Setting the FPR threshold: three methods on the same out-of-fold scores",
        "",
        f"Run `{a.run.name}`: {nb:,} benign files of {n_proj} projects and {nm:,} malware files, "
        f"out-of-fold scores of the {protocol}-disjoint cross-validation (every benign score from a model "
        f"that saw no file of its project, every malware score from one that saw no file of its collection). "
        f"Made on {dt.date.today():%Y-%m-%d} on {cpu_model()}, {os.cpu_count()} cores shared with other jobs, "
        f"by `{command_line()}`.",
        "",
        "Methods (`malvision.evaluate.threshold`):",
        "",
        *(f"- **{m}**: {WORDS[m]}." for m in METHODS),
        "",
        f"Interval: 95% percentile interval over {a.n_boot} replicates that redraw whole benign projects with "
        "replacement and set the threshold again (malware fixed); the TPR columns count malware at or above "
        "the threshold, at its point and at the interval's lower and upper ends (the lower end detects more). "
        f"Other half: the benign projects split at random into halves {a.n_splits} times; the threshold set "
        "on one half, its false-positive rate on the other (mean, and the share of splits where it passes the "
        "target) and the malware it detects.",
        "",
        *table(results, nb),
        "",
        "Benign files at or above the empirical thresholds, by where they come from:",
        "",
        *by_source(y, score, source, results),
        "",
        f"![thresholds]({png.name})",
        "",
    ]
    with atomic_writer(a.out) as f:
        f.write("\n".join(lines).encode())
    with atomic_writer(a.out.with_suffix(".json")) as f:
        f.write(json.dumps({f"{k:g}": v for k, v in results.items()}, indent=1).encode())
    print(f"wrote {a.out}, {png} and {a.out.with_suffix('.json')}", file=sys.stderr)


if __name__ == "__main__":
    main()
