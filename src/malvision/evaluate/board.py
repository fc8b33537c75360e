"""The detector leaderboard: runs of different models and inputs compared file by file on the same folds.

A run is a ``malvision train-detector`` folder (or a baseline's, written by ``scripts/baselines.py``):
its ``oof_scores.json`` holds every file's out-of-fold score with its sha256 and fold. The board keeps
the files every run scored, refuses runs whose folds differ, and gives each run the same figures:
ROC-AUC and the detection rates at 1% and 0.1% FPR with group-bootstrap intervals, the weakest
collection, false positives on benign projects no model was trained on, files/s and model size.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from malvision.data.splits import group_keys
from malvision.errors import MalvisionError
from malvision.evaluate.detection import as_scanned, detection_report

__all__ = ["Run", "read_run", "compare", "measure", "board_markdown", "plot_board"]


@dataclass
class Run:
    """One run's out-of-fold scores and what its card says of the model behind them."""

    name: str
    model: str
    kind: str
    sha256: np.ndarray
    y: np.ndarray
    score: np.ndarray
    fold: np.ndarray
    group: np.ndarray
    collection: np.ndarray
    pe_type: np.ndarray
    unknown: np.ndarray  # why a scan calls the file unknown (None: it scores it); all None if not recorded
    model_path: Path | None
    card: dict[str, Any] = field(default_factory=dict)


def read_run(path: Path | str) -> Run:
    """A run folder's scores and card; a one-line error for a folder that is not a run."""
    p = Path(path)
    try:
        oof = json.loads((p / "oof_scores.json").read_text())
        card = json.loads((p / "card.json").read_text())
        if oof.get("protocol") != "source":
            raise ValueError(
                "its scores are not source-disjoint: the board compares runs on the folds of one malware "
                "collection each (train-detector --protocols source, on malware of 2 or more collections)"
            )
        cols = {k: np.asarray(oof[k], dtype=object) for k in ("sha256", "group", "collection", "pe_type")}
        y, score, fold = (np.asarray(oof[k]) for k in ("y", "score", "fold"))
        unknown = np.asarray(oof.get("unknown") or [None] * len(y), dtype=object)
    except (OSError, ValueError, KeyError) as e:
        raise MalvisionError(f"{p}: not a detector run folder ({e})") from None
    model = p / "model.pt"
    kind = card.get("input") or card.get("input_kind", "?")  # "input" names the side and tiles too
    return Run(
        p.name, str(card.get("architecture", "?")), str(kind), cols["sha256"], y.astype(int),
        score.astype(np.float64), fold.astype(int), cols["group"], cols["collection"], cols["pe_type"],
        unknown, model if model.is_file() else None, card,
    )  # fmt: skip


def _common(runs: list[Run]) -> tuple[list[np.ndarray], list[str]]:
    """Per run, the positions of the files every run scored (in one order); refuses runs whose folds,
    labels or collections differ for a file."""
    shared = set(runs[0].sha256)
    for r in runs[1:]:
        shared &= set(r.sha256)
    order = sorted(shared)
    picks = []
    for r in runs:
        at = {s: i for i, s in enumerate(r.sha256)}
        picks.append(np.asarray([at[s] for s in order]))
    base, b = runs[0], picks[0]
    for r, p in zip(runs[1:], picks[1:], strict=True):
        for what in ("fold", "y", "collection"):
            if not np.array_equal(getattr(r, what)[p], getattr(base, what)[b]):
                raise MalvisionError(
                    f"{r.name} and {base.name} differ in {what} for the same files: not the same folds"
                )
    return picks, order


def _scanned(runs: list[Run], picks: list[np.ndarray]) -> list[np.ndarray]:
    """Each run's scores of the common files as a scan reports them: a file any run records as one a scan
    calls unknown counts so in every run (``as_scanned``; a baseline's scores do not record it)."""
    unknown: list[str | None] = [None] * len(picks[0])
    for r, p in zip(runs, picks, strict=True):
        unknown = [u if u is not None else v for u, v in zip(unknown, r.unknown[p], strict=True)]
    return [as_scanned(r.score[p], unknown) for r, p in zip(runs, picks, strict=True)]


def compare(runs: list[Run], seed: int = 0) -> list[dict[str, Any]]:
    """One row of figures per run, on the files all of them scored, as a scan reports them (``_scanned``)."""
    if not runs:
        raise MalvisionError("no runs to compare")
    picks, order = _common(runs)
    rows = []
    for r, p, score in zip(runs, picks, _scanned(runs, picks), strict=True):
        groups = group_keys(list(r.group[p]), len(p))
        rep = detection_report(
            r.y[p], score, groups, target_fpr=0.001, seed=seed, collections=list(r.collection[p])
        )
        per = rep.get("per_collection", {})
        worst = min(per.items(), key=lambda kv: kv[1]["tpr_at_0.001"]) if per else None
        size = r.model_path.stat().st_size if r.model_path is not None else r.card.get("model_bytes")
        rows.append(
            {
                "name": r.name, "model": r.model, "input": r.kind, "n_files": len(order), "report": rep,
                "worst_collection": worst[0] if worst else None,
                "worst_tpr_at_0.001": worst[1]["tpr_at_0.001"] if worst else None,
                "model_bytes": size, "files_per_second": r.card.get("files_per_second"),
                "files_per_second_model_only": r.card.get("files_per_second_model_only"),
                "heldout": r.card.get("heldout"),
            }
        )  # fmt: skip
    return rows


def _pct(p: dict[str, Any]) -> str:
    lo, hi = p["tpr_ci95"]
    return f"{p['tpr']:.1%} ({lo:.1%} to {hi:.1%})"


def board_markdown(rows: list[dict[str, Any]]) -> str:
    """The leaderboard as a Markdown table, best TPR at 0.1% FPR first."""
    head = (
        "| run | model | input | ROC-AUC | TPR at 1% FPR (95% CI) | TPR at 0.1% FPR (95% CI) | weakest collection "
        "at 0.1% | held-out benign flagged | files/s | size |\n|" + "---|" * 10
    )
    lines = [head]
    for row in sorted(rows, key=lambda r: -r["report"]["operating_points"]["0.001"]["tpr"]):
        rep, pts = row["report"], row["report"]["operating_points"]
        held = row.get("heldout") or {}
        held_text = f"{held['flagged']} of {held['n']}" if held else "n/a"
        fps = f"{row['files_per_second']:,.0f}" if row.get("files_per_second") else "n/a"
        if not row.get("files_per_second") and row.get("files_per_second_model_only"):
            fps = f"{row['files_per_second_model_only']:,.1f} (model only)"  # a baseline's own figure
        size = f"{row['model_bytes'] / 1e6:.1f} MB" if row.get("model_bytes") else "n/a"
        worst = (
            f"{row['worst_collection']} {row['worst_tpr_at_0.001']:.0%}" if row["worst_collection"] else ""
        )
        lines.append(
            f"| {row['name']} | {row['model']} | {row['input']} | {rep['roc_auc']:.4f} | {_pct(pts['0.01'])} | "
            f"{_pct(pts['0.001'])} | {worst} | {held_text} | {fps} | {size} |"
        )
    return "\n".join(lines) + "\n"


def measure(run: Run, heldout: list[Path], speed: list[Path]) -> None:
    """For a run with a model: how many ``heldout`` benign files its card's threshold flags, and how many
    files a second a fresh scanner gets through ``speed`` (reading, conversion and model, one thread);
    the figures go into the run's card, as a baseline's script writes them."""
    import time

    from malvision.scan import Scanner, Verdict

    if run.model_path is None:
        return
    with Scanner(run.model_path, backend="torch", workers=2, threads=1) as scanner:
        if heldout:
            verdicts = [v for v in scanner.scan(heldout) if isinstance(v, Verdict)]
            flagged = sum(v.verdict == "malware" for v in verdicts)
            run.card["heldout"] = {"n": len(verdicts), "flagged": flagged}
        if speed:
            list(scanner.scan(speed[:8]))  # warm
            t = time.perf_counter()
            n = sum(1 for _ in scanner.scan(speed))
            run.card["files_per_second"] = n / (time.perf_counter() - t)


def plot_board(runs: list[Run], path: Path) -> None:
    """Every run's out-of-fold ROC on a log FPR axis, on the files all of them scored."""
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve

    from malvision.evaluate.plots import save_figure

    picks, _ = _common(runs)
    fig, ax = plt.subplots(figsize=(9.5, 4.5))
    floor = 1e-4
    for r, p, score in zip(runs, picks, _scanned(runs, picks), strict=True):
        fpr, tpr, _ = roc_curve(r.y[p], score)
        floor = max(floor, 1 / max(int((r.y[p] == 0).sum()), 1))
        ax.plot(np.maximum(fpr, 1e-4), tpr, label=f"{r.name} ({r.model[:40]}, {r.kind})")
    for f in (0.001, 0.01):
        ax.axvline(f, color="grey", lw=0.6, ls=":")
    ax.set_xscale("log")
    ax.set_xlim(floor, 1.0)
    ax.set_xlabel("false-positive rate (benign, unseen projects)")
    ax.set_ylabel("true-positive rate (malware, unseen collections)")
    ax.set_title("source-disjoint out-of-fold ROC")
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=7)  # beside the curves, not on them
    ax.grid(alpha=0.3, which="both")
    save_figure(fig, path)
