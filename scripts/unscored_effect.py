"""What counting the files a scan calls unknown as the scan does changes in a detector run's figures.

    .venv/bin/python scripts/unscored_effect.py ~/.cache/malvision/runs/v11-lgbm [OUT.md]

A scan gives no score to a file triage rejects (truncated PE, near-constant content, not a PE): its verdict
is ``unknown``. Cards before cache format 3 scored every file of their data, so they counted as detected
malware a scan says nothing about. From the run's own source-disjoint out-of-fold log-odds
(``cv-source/fold<k>/scores.npy``) this sets the card's figures both ways: every file scored, Platt fitted
on all (the cards before), and ``as_scanned`` (Platt on the files a scan scores, the rest never flagged:
the card now), and lists the unscored files the old way flagged. The run must be made on a format-3 cache.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path

import numpy as np

from malvision.calibration import fit_platt, platt_scale
from malvision.data.splits import group_keys
from malvision.evaluate.detection import calibrate_as_scanned, detection_report

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from _machine import command_line, cpu_model, write_report  # noqa: E402


def main(run: Path, out: Path | None) -> None:
    try:
        oof = json.loads((run / "oof_scores.json").read_text())
        if "unknown" not in oof:
            raise ValueError("its scores do not record what a scan calls unknown (a cache before format 3)")
        y, fold = np.asarray(oof["y"]), np.asarray(oof["fold"])
        raw = np.full(len(y), np.nan)
        for k in np.unique(fold):
            raw[fold == k] = np.load(run / "cv-source" / f"fold{k}" / "scores.npy")
    except (OSError, ValueError, KeyError) as e:
        sys.exit(f"error: {run}: not a source-disjoint train-detector run ({e})")
    unknown = oof["unknown"]
    judged = np.asarray([u is None for u in unknown])
    groups = group_keys(oof["group"], len(y))
    ways = {
        "every file scored (cards before)": platt_scale(raw, fit_platt(raw, y)),
        "as a scan counts them (the card now)": calibrate_as_scanned(raw, y, unknown)[1],
    }
    if not np.allclose(ways["as a scan counts them (the card now)"], oof["score"]):
        sys.exit(f"error: {run}: its oof_scores.json is not what this recomputes; rerun train-detector")
    lines = [
        f"# Files a scan calls unknown: {run.name}\n",
        f"`{command_line()}`; {dt.date.today()}, {cpu_model()}. {int((~judged & (y == 1)).sum())} of {int((y == 1).sum())} malware "
        f"and {int((~judged & (y == 0)).sum())} of {int((y == 0).sum())} benign files are ones a scan calls unknown.\n",
        "| counted | threshold (0.1% FPR) | benign flagged | detected at it | 95% interval | TPR at 1% FPR | ROC-AUC (of the files scored) |",
        "|---|---|---|---|---|---|---|",
    ]
    reports = {
        name: detection_report(y, score, groups, target_fpr=0.001, seed=0) for name, score in ways.items()
    }
    for name, r in reports.items():
        p1 = r["operating_points"]["0.01"]
        lo, hi = r["tpr_ci95"]
        lines.append(
            f"| {name} | {r['threshold']:.4f} | {r['false_positives']} | {r['detected']} = "
            f"{r['tpr_at_threshold']:.1%} | {lo:.1%} to {hi:.1%} | {p1['tpr']:.1%} | {r['roc_auc']:.4f} |"
        )
    before = next(iter(ways))
    flagged = np.flatnonzero(~judged & (ways[before] >= reports[before]["threshold"]))
    lines += [
        f"\nUnscored files the cards before counted as flagged at their threshold: {len(flagged)}\n",
        *(f"- {'malware' if y[i] else 'benign'} {oof['sha256'][i][:16]} ({oof['collection'][i] or oof['group'][i]}): "
          f"{unknown[i]}" for i in flagged),
    ]  # fmt: skip
    text = "\n".join(lines) + "\n"
    write_report(text, out) if out is not None else print(text)


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit(f"usage: {sys.argv[0]} RUN [OUT.md]")
    main(Path(sys.argv[1]), Path(sys.argv[2]) if len(sys.argv) == 3 else None)
