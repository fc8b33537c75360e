"""The fold models of several runs as one model, measured by nested source-disjoint folds, as Markdown.

    .venv/bin/python scripts/nested_folds.py RUN RUN... --work DIR --out MD [--outer K ...]

``scripts/fold_ensemble.py`` sets the fold models' threshold from the runs' mean out-of-fold scores, where a
malware file's mean comes from models that each left out its own collection only. Shipped, the fold models
would score a new collection with models that each left out one more collection (their fold's) and saw some
benign projects the others did not: that mean describes another model. Here the recipe is cross-validated
again inside each outer fold of the first run (a malware collection and its benign projects): on the other
folds' files, with each run's own folds and settings (inner), and the outer fold's files are scored by the
mean log-odds of all the inner fold models, none of which saw them. Beside it: the first run's own
out-of-fold scores (one model a fold, as its card) and the runs' mean out-of-fold scores, on the same files,
as a scan counts them. Inner models and scores are kept under ``--work``, so a rerun resumes; ``--outer``
computes only those outer folds (two processes can share the work), and the report is written once every
outer fold is done.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

import numpy as np
from rich.console import Console

from malvision.calibration import log_odds, sigmoid
from malvision.checkpoint import load_checkpoint
from malvision.data.cache import CachedDataset
from malvision.data.loader import make_loader
from malvision.errors import MalvisionError
from malvision.evaluate.board import Run, read_run
from malvision.evaluate.crossval import cross_validate
from malvision.evaluate.detection import as_scanned, scanned_metrics
from malvision.io import atomic_writer
from malvision.train import TrainConfig, predict_logits

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from _machine import command_line, cpu_model, write_report  # noqa: E402
from seed_mean import aligned  # noqa: E402


def cache_folds(ds: CachedDataset, runs: list[Run]) -> np.ndarray:
    """(runs, files): each run's source fold of every file of the cache, in the cache's order."""
    out = []
    for r in runs:
        at = {s: i for i, s in enumerate(r.sha256)}
        try:
            out.append(np.array([r.fold[at[rec.sha256]] for rec in ds.records]))
        except KeyError:
            raise MalvisionError(f"{r.name}: its scores do not cover the cache's files") from None
    return np.asarray(out)


def inner_splits(folds: np.ndarray, k: int) -> list[list[tuple[np.ndarray, np.ndarray]]]:
    """Per run, its folds on the files outside outer fold ``k`` of the first run: (train, test) rows."""
    rows = np.flatnonzero(folds[0] != k)
    return [[(rows[f[rows] != j], rows[f[rows] == j]) for j in np.unique(f[rows])] for f in folds]


def outer_scores(
    ds: CachedDataset, cfgs: list[TrainConfig], folds: np.ndarray, k: int, work: Path, say: Console
) -> np.ndarray:
    """The mean log-odds of every inner fold model of outer fold ``k`` on that fold's files (kept in ``work``)."""
    done = work / f"outer{k}" / "scores.npy"
    if done.exists():
        return np.load(done)
    test = np.flatnonzero(folds[0] == k)
    mal, z = ds.classes.index("malware"), []
    with say.status(f"outer fold {k}") as status:
        for r, (cfg, splits) in enumerate(zip(cfgs, inner_splits(folds, k), strict=True)):
            folder = work / f"outer{k}" / f"run{r}"
            what = f"outer {k}, run {r}"
            cross_validate(ds, cfg, folder, splits, lambda s, w=what: status.update(f"{w}: {s}"), "inner")
            for j in range(len(splits)):
                model = load_checkpoint(folder / f"fold{j}" / "best.pt").model
                loader = make_loader(ds, test, 256, shuffle=False, max_len=cfg.max_len)
                z.append(log_odds(predict_logits(model, loader)[0], mal))
    say.log(f"outer fold {k}: {len(z)} inner models")
    mean = np.mean(z, axis=0)
    with atomic_writer(done) as f:
        np.save(f, mean)
    return mean


def report(runs: list[Run], ds: CachedDataset, nested: np.ndarray, n_models: int) -> list[str]:
    """The three rows, on the files of the cache, as a scan counts them."""
    y, _, scores, mean = aligned(runs)
    order = np.argsort([rec.sha256 for rec in ds.records])
    pick = np.argsort(runs[0].sha256)
    if not np.array_equal(np.asarray([rec.sha256 for rec in ds.records])[order], runs[0].sha256[pick]):
        raise MalvisionError("the runs do not hold the cache's files")
    nest = as_scanned(sigmoid(nested[order]), list(runs[0].unknown[pick]))
    rows = [
        (f"{runs[0].name}: one model a fold (its card)", scores[0]),
        (f"the mean of the {len(runs)} runs' out-of-fold scores (fold_ensemble.py's threshold)", mean),
        (f"**the fold models as one, nested ({n_models} inner models an outer fold)**", nest),
    ]
    lines = [
        f"# The fold models of {len(runs)} runs as one model, by nested source-disjoint folds",
        "",
        f"Made on {dt.date.today()} on {cpu_model()}, by `{command_line()}`. {len(y):,} files "
        f"({int(y.sum()):,} malware), each scored by models that saw neither its collection nor its project, as "
        "a scan counts them (files it calls unknown never flagged). The nested row is what shipping the fold "
        "models would detect on a collection none of them saw.",
        "",
        "| scores | ROC-AUC | TPR at 1% FPR | TPR at 0.1% FPR |",
        "|---|---|---|---|",
    ]
    for name, s in rows:
        m = scanned_metrics(y, s)
        lines.append(
            f"| {name} | {m['roc_auc']:.4f} | {m['tpr_at_1pct_fpr']:.1%} | {m['tpr_at_0.1pct_fpr']:.1%} |"
        )
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", type=Path, nargs="+", help="`train-detector` runs of one recipe, other seeds")
    ap.add_argument("--work", type=Path, required=True, help="folder for the inner models (resumable)")
    ap.add_argument("--outer", type=int, nargs="*", help="only these outer folds (default: all)")
    ap.add_argument("--out", type=Path, required=True, help="Markdown report")
    a = ap.parse_args()
    say = Console(stderr=True)
    try:
        runs = [read_run(r) for r in a.runs]
        ds = CachedDataset(runs[0].card["data"]["cache"])
        cfgs = [TrainConfig(**r.card["train_config"]) for r in runs]
        folds = cache_folds(ds, runs)
        outer = sorted(set(folds[0].tolist()))
        for k in a.outer if a.outer is not None else outer:
            if k not in outer:
                raise MalvisionError(f"no outer fold {k}: the first run has folds {outer[0]} to {outer[-1]}")
            outer_scores(ds, cfgs, folds, k, a.work, say)
        missing = [k for k in outer if not (a.work / f"outer{k}" / "scores.npy").exists()]
        if missing:
            say.print(
                f"{len(outer) - len(missing)} of {len(outer)} outer folds done; the report waits for the rest"
            )
            return
        nested = np.full(len(ds), np.nan)
        for k in outer:
            nested[folds[0] == k] = np.load(a.work / f"outer{k}" / "scores.npy")
        n_models = sum(len(s) for s in inner_splits(folds, outer[0]))
        write_report("\n".join(report(runs, ds, nested, n_models)) + "\n", a.out)
    except (OSError, ValueError, KeyError, TypeError, MalvisionError) as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
