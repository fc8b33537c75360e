"""Runs of one recipe under different seeds, and the mean of their out-of-fold log-odds, as Markdown.

    .venv/bin/python scripts/seed_mean.py RUN RUN... --out docs/seed-mean-cnn64.md

Each run's out-of-fold scores as a scan counts them (files it calls unknown never flagged): ROC-AUC and
the detection at 1% and 0.1% FPR. Then the mean of the runs' log-odds, file by file. Every score of every
run comes from a model that saw neither the file's collection nor its project, so the mean is out-of-fold
too, but it is not what any model of the runs scores: a seed also redraws the benign projects' folds, so a
benign file's mean averages models that each left out another malware collection, where a malware file's
models all left out its own. What the fold models detect as one model is measured by nested folds
(``scripts/nested_folds.py``). The runs must hold the same files with the same labels.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

import numpy as np

from malvision.calibration import sigmoid
from malvision.errors import MalvisionError
from malvision.evaluate.board import Run, read_run
from malvision.evaluate.detection import UNSCORED, as_scanned, scanned_metrics

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from _machine import command_line, cpu_model, write_report  # noqa: E402


def _row(name: str, m: dict[str, float]) -> str:
    return f"| {name} | {m['roc_auc']:.4f} | {m['tpr_at_1pct_fpr']:.1%} | {m['tpr_at_0.1pct_fpr']:.1%} |"


def aligned(runs: list[Run]) -> tuple[np.ndarray, np.ndarray, list[np.ndarray], np.ndarray]:
    """In one file order (sha256): the labels, the groups, each run's out-of-fold scores as a scan counts
    them, and the score of their mean log-odds. The runs must hold the same files with the same labels."""
    order = sorted(set(runs[0].sha256))
    if any(set(r.sha256) != set(order) for r in runs[1:]):
        raise MalvisionError("the runs do not hold the same files")
    scores, y = [], None
    for r in runs:
        at = np.argsort(r.sha256)
        if y is not None and not np.array_equal(r.y[at], y):
            raise MalvisionError(f"{r.name}: other labels for the same files")
        y = r.y[at]
        scores.append(as_scanned(r.score[at], list(r.unknown[at])))
    assert y is not None
    p = np.clip(np.asarray(scores), 1e-12, 1 - 1e-12)
    z = (np.log(p) - np.log1p(-p)).mean(0)
    mean = sigmoid(z)
    mean[np.asarray(scores[0]) == UNSCORED] = UNSCORED  # unknown to a scan in every run (the same triage)
    return y, runs[0].group[np.argsort(runs[0].sha256)], scores, mean


def report(paths: list[Path]) -> list[str]:
    """The report's lines: one row a run, the mean of their rows, and the row of their mean log-odds."""
    runs = [read_run(p) for p in paths]
    y, _, scores, mean = aligned(runs)
    rows = [scanned_metrics(y, s) for s in scores]
    keys = ("roc_auc", "tpr_at_1pct_fpr", "tpr_at_0.1pct_fpr")

    def mean_of(figures: list[dict[str, float]]) -> dict[str, float]:
        return {k: float(np.mean([m[k] for m in figures])) for k in keys}

    # which side's averaging the gain comes from: one class's files take the mean, the other's each run's own
    halves = {
        side: mean_of([scanned_metrics(y, np.where(y == label, mean, s)) for s in scores])
        for side, label in (("benign", 0), ("malware", 1))
    }
    lines = [
        f"# {len(runs)} seeds of one recipe, and the mean of their scores",
        "",
        f"Made on {dt.date.today()} on {cpu_model()}, by `{command_line()}`. {len(y):,} files "
        f"({int(y.sum()):,} malware); out-of-fold scores as a scan counts them (files it calls unknown never "
        "flagged; ROC-AUC over the files it scores). The last row averages each file's log-odds over the runs "
        "(every score out-of-fold, so the mean is too). It is not what a model of the runs would score: a benign "
        "file's mean averages models that each left out another malware collection, a malware file's models all "
        "left out its own (the fold models as one model: `scripts/nested_folds.py`). The two rows before it give one "
        "class's files the mean and the other's each run's own scores (means of the runs' figures): which side's "
        "averaging the gain comes from.",
        "",
        "| run | ROC-AUC | TPR at 1% FPR | TPR at 0.1% FPR |",
        "|---|---|---|---|",
        *(_row(r.name, m) for r, m in zip(runs, rows, strict=True)),
        _row("mean of the runs' figures", mean_of(rows)),
        _row("benign files' mean, malware files' own", halves["benign"]),
        _row("malware files' mean, benign files' own", halves["malware"]),
        _row(f"**mean of the {len(runs)} runs' log-odds**", scanned_metrics(y, mean)),
    ]
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "runs", type=Path, nargs="+", help="run folders of `malvision train-detector` (source-disjoint)"
    )
    ap.add_argument("--out", type=Path, required=True, help="Markdown report")
    a = ap.parse_args()
    if len(a.runs) < 2:
        sys.exit("error: give two or more runs")
    try:
        write_report("\n".join(report(a.runs)) + "\n", a.out)
    except MalvisionError as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
