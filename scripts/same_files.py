"""Two detector runs' out-of-fold figures on the files both scored, as Markdown.

    .venv/bin/python scripts/same_files.py ~/.cache/malvision/runs/v12-lgbm ~/.cache/malvision/runs/v13-lgbm [OUT.md] [--fuse]

A run trained with more benign files has a harder benign side, so its card's ROC-AUC and TPR at 1% FPR
are not comparable with the run before it. This scores both on the files both have out-of-fold scores
for (matched by sha256): ROC-AUC, and the TPR at 1% and 0.1% FPR with thresholds set on those benign
files alone, so a difference is a difference in ranking, not in the benign population. ``--fuse`` adds a row for the
mean of the runs' log-odds (no weights fitted: each score is already out of fold, so the mean is too).
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from malvision.evaluate.metrics import threshold_for_fpr

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from _machine import command_line, write_report  # noqa: E402


def oof(run: Path) -> dict[str, tuple[int, float, str | None]]:
    """sha256 -> (label, out-of-fold score, why a scan calls the file unknown) of a run's card protocol."""
    try:
        d = json.loads((run / "oof_scores.json").read_text())
        unknown = d.get("unknown") or [None] * len(d["y"])  # runs before cache format 3 do not record it
        rows = zip(d["sha256"], d["y"], d["score"], unknown, strict=True)
        return {h: (int(y), float(s), u) for h, y, s, u in rows}
    except (OSError, ValueError, KeyError, TypeError) as e:
        sys.exit(f"error: {run}: not a detector run with out-of-fold scores ({e})")


def main(runs: list[Path], out: Path | None, fuse: bool = False) -> None:
    scores = [oof(r) for r in runs]
    shared = sorted(set.intersection(*(set(s) for s in scores)))
    if not shared:
        sys.exit("error: the runs share no scored file")
    y = np.array([scores[0][h][0] for h in shared])
    if any(s[h][0] != y[i] for s in scores[1:] for i, h in enumerate(shared)):
        sys.exit("error: the runs label a shared file differently")
    # a file any run records as one a scan calls unknown counts so in every row (as_scanned), fused too
    unknown = [next((s[h][2] for s in scores if s[h][2] is not None), None) for h in shared]
    lines = [
        f"# {' and '.join(r.name for r in runs)} on the files both scored\n",
        f"{int((y == 0).sum()):,} benign and {int((y == 1).sum()):,} malware files scored out of fold by every "
        f"run (of {', '.join(f'{len(s):,}' for s in scores)}). Made on {dt.date.today():%Y-%m-%d} by "
        f"`{command_line()}`.\n",
        f"{sum(u is not None for u in unknown):,} of them are files a scan calls unknown: never flagged, and "
        "left out of ROC-AUC (a ranking of the files a scan ranks).\n",
        "| run | ROC-AUC | TPR at 1% FPR | TPR at 0.1% FPR | its 0.1% threshold here |",
        "|---|---|---|---|---|",
    ]
    rows = [(run.name, np.array([s[h][1] for h in shared])) for run, s in zip(runs, scores, strict=True)]
    if fuse:
        p = np.clip(np.stack([r[1] for r in rows]), 1e-12, 1 - 1e-12)
        z = np.log(p / (1 - p)).mean(axis=0)
        rows.append(("mean of their log-odds (threshold in log-odds)", z))
    judged = np.array([u is None for u in unknown])
    for name, score in rows:
        score = np.where(judged, score, score[judged].min() - 1.0)  # below every score: never flagged
        t1, t01 = threshold_for_fpr(score[y == 0], [0.01, 0.001])
        tpr1, tpr01 = (float((score[y == 1] >= t).mean()) for t in (t1, t01))
        auc = roc_auc_score(y[judged], score[judged])  # a ranking of the files a scan ranks
        lines.append(f"| {name} | {auc:.4f} | {tpr1:.1%} | {tpr01:.1%} | {t01:.4f} |")
    text = "\n".join(lines) + "\n"
    if out:
        write_report(text, out)
    else:
        print(text)


if __name__ == "__main__":
    fuse = "--fuse" in sys.argv
    args = [Path(a).expanduser() for a in sys.argv[1:] if a != "--fuse"]
    if len(args) < 2 or (len(args) == 2 and args[-1].suffix == ".md"):
        sys.exit("error: give two or more detector runs (and an OUT.md), e.g. runs/v12-lgbm runs/v13-lgbm")
    md = args[-1] if args[-1].suffix == ".md" else None
    main(args[:-1] if md else args, md, fuse)
