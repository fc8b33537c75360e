"""k-fold architecture leaderboard: the same splits, training and metrics for every model."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from malvision.checkpoint import load_checkpoint
from malvision.data.loader import make_loader
from malvision.data.splits import group_kfold, stratified_kfold
from malvision.errors import MalvisionError
from malvision.evaluate.metrics import classification_metrics
from malvision.evaluate.plots import plot_confusion, plot_leaderboard
from malvision.io import atomic_writer
from malvision.models import learned_numbers
from malvision.train import TrainConfig, fit, predict, train_val_rows
from malvision.train.loop import check_same_settings

__all__ = ["run_leaderboard", "leaderboard_markdown"]


def _timed_predict(
    ck: Any, ds: Any, idx: np.ndarray, cfg: TrainConfig
) -> tuple[np.ndarray, np.ndarray, float]:
    loader = make_loader(ds, idx, 64, shuffle=False, max_len=cfg.max_len)
    ds.read_as(ck.spec)  # opcodes: the model's own vocabulary, from its training rows
    t = time.perf_counter()
    probs, labels = predict(ck.model, loader)
    return probs, labels, (time.perf_counter() - t) * 1000 / max(len(idx), 1)


def run_fold(
    ds: Any, cfg: TrainConfig, train_idx: np.ndarray, test_idx: np.ndarray, out: Path, **fit_kwargs: Any
) -> dict[str, Any]:
    """Train on ``train_idx`` (with its own validation split, except for a model fitted in one call,
    which has no epoch to pick), test on ``test_idx``; cached in ``out``."""
    done = out / "result.json"
    check_same_settings(out, cfg, ds=ds)  # a fold of other settings or data is never reused nor continued
    if done.exists():
        result = json.loads(done.read_text())
        _check_same_rows(out, test_idx)
        return result
    tr, va = train_val_rows(cfg, train_idx, ds.labels)
    res = fit(ds, tr, va, cfg, out, resume=True, **fit_kwargs)
    ck = load_checkpoint(res.checkpoint)
    probs, labels, ms = _timed_predict(ck, ds, test_idx, cfg)
    m = classification_metrics(labels, probs, list(ds.classes))
    with atomic_writer(out / "scores.npz") as f:  # what an ensemble row averages
        np.savez(f, probs=probs.astype(np.float32), labels=labels, test_idx=np.asarray(test_idx))
    result = {
        "metrics": m,
        "train_seconds": res.train_seconds,
        "infer_ms_per_sample": ms,
        "params": learned_numbers(ck.model),
        "best_epoch": res.best_epoch,
        "epochs_run": len(res.history),
        "n_train": len(tr),
        "n_val": len(va),
        "n_test": len(test_idx),
    }
    with atomic_writer(done) as f:
        f.write(json.dumps(result, indent=2).encode())
    (out / "last.pt").unlink(missing_ok=True)  # resumable state is no longer needed
    return result


def _check_same_rows(out: Path, test_idx: np.ndarray) -> None:
    """Refuse a finished fold of other test rows (another --folds); its settings and cache are the
    fold's config.json and data.json, checked before."""
    try:
        with np.load(out / "scores.npz") as z:
            same_rows = np.array_equal(z["test_idx"], np.asarray(test_idx))
    except (OSError, KeyError, ValueError):
        same_rows = False
    if not same_rows:
        raise MalvisionError(f"{out} holds a fold of other test rows; pick another --out or delete it")


def run_leaderboard(
    ds: Any,
    configs: Sequence[TrainConfig],
    out_dir: Path | str,
    *,
    folds: int = 5,
    seed: int = 0,
    grouped: bool = False,
    ensembles: Sequence[tuple[str, ...]] = (),
    on_fold: Callable[[str, int, dict[str, Any]], None] | None = None,
    **fit_kwargs: Any,
) -> list[dict[str, Any]]:
    """Cross-validate every config on the same seeded folds; write table, PNG and confusion matrices.

    A row is named by its config's ``label``; each of ``ensembles`` (row names) adds a row scoring the
    mean of its members' probabilities on every fold, at the sum of their costs.
    """
    out = Path(out_dir)
    splits = (
        group_kfold(ds.labels, ds.groups, folds, random_state=seed, names=list(ds.classes))
        if grouped
        else stratified_kfold(ds.labels, folds, random_state=seed, names=list(ds.classes))
    )
    labels = [c.label for c in configs]
    if len(set(labels)) != len(labels):
        raise MalvisionError(f"two leaderboard rows share a name ({', '.join(labels)}); name them apart")
    for members in ensembles:
        if missing := [m for m in members if m not in labels]:
            raise MalvisionError(f"ensemble {'+'.join(members)}: no row named {', '.join(missing)}")
    rows = []
    for cfg in configs:
        cfg = replace(cfg, seed=seed)
        fold_results = []
        for k, (tr, te) in enumerate(splits):
            r = run_fold(ds, cfg, np.asarray(tr), np.asarray(te), out / cfg.label / f"fold{k}", **fit_kwargs)
            fold_results.append(r)
            if on_fold is not None:
                on_fold(cfg.label, k, r)
        rows.append(_summarise(cfg.label, cfg, fold_results, list(ds.classes), out / cfg.label))
    by_label = {r["model"]: r for r in rows}
    for members in ensembles:
        rows.append(
            _ensemble_row(members, [by_label[m] for m in members], len(splits), list(ds.classes), out)
        )
    kind = "group-disjoint" if grouped else "stratified"
    table = leaderboard_markdown(rows, f"{folds}-fold {kind} cross-validation, n={len(ds)}")
    table += "\n" + per_class_markdown(rows)
    with atomic_writer(out / "leaderboard.md") as f:
        f.write(table.encode())
    with atomic_writer(out / "leaderboard.json") as f:
        f.write(json.dumps(rows, indent=2).encode())
    plot_leaderboard(rows, out / "leaderboard.png", f"{folds}-fold {kind} CV (mean ± std)")
    return rows


def _ensemble_row(
    members: tuple[str, ...], rows: list[dict[str, Any]], folds: int, classes: list[str], out: Path
) -> dict[str, Any]:
    """The row of the mean of ``members``' probabilities, fold by fold (from their ``scores.npz``)."""
    name = "+".join(members)
    results = []
    for k in range(folds):
        parts = []
        for m in members:
            path = out / m / f"fold{k}" / "scores.npz"
            if not path.is_file():
                raise MalvisionError(f"{path}: missing (a fold of an older run); delete {out / m} and rerun")
            with np.load(path, allow_pickle=False) as z:
                parts.append((z["probs"], z["labels"], z["test_idx"]))
        if any(not np.array_equal(p[2], parts[0][2]) for p in parts):
            raise MalvisionError(f"ensemble {name}: its members were scored on different folds")
        probs = np.mean([p[0] for p in parts], axis=0)
        results.append({"metrics": classification_metrics(parts[0][1], probs, classes)})
    row = _summarise(name, None, results, classes, out / name)
    for key in ("params", "train_seconds", "infer_ms_per_sample"):  # an ensemble pays for every member
        row[key] = sum(r[key] for r in rows)
    return row | {"members": list(members)}


def _summarise(
    label: str, cfg: TrainConfig | None, results: list[dict[str, Any]], classes: list[str], out: Path
) -> dict[str, Any]:
    acc = np.array([r["metrics"]["accuracy"] for r in results])
    f1 = np.array([r["metrics"]["macro_f1"] for r in results])
    cm = np.sum([np.asarray(r["metrics"]["confusion_matrix"]) for r in results], axis=0)
    plot_confusion(cm.tolist(), classes, out / "confusion.png", f"{label}: all folds")
    row = {
        "model": label,
        "model_kwargs": cfg.model_kwargs if cfg is not None else {},
        "folds": len(results),
        "accuracy_mean": float(acc.mean()),
        "accuracy_std": float(acc.std()),
        "macro_f1_mean": float(f1.mean()),
        "macro_f1_std": float(f1.std()),
        "params": results[0].get("params", 0),
        "train_seconds": float(np.sum([r.get("train_seconds", 0.0) for r in results])),
        "infer_ms_per_sample": float(np.mean([r.get("infer_ms_per_sample", 0.0) for r in results])),
        "confusion_matrix": cm.tolist(),
        "per_class": _per_class(cm, classes),
    }
    aucs = [r["metrics"].get("roc_auc") for r in results]
    if all(a is not None for a in aucs) and "roc_auc" in results[0]["metrics"]:
        row["roc_auc_mean"] = float(np.mean(aucs))
        row["tpr_at_1pct_fpr_mean"] = float(np.mean([r["metrics"]["tpr_at_1pct_fpr"] for r in results]))
    return row


def _per_class(cm: np.ndarray, classes: list[str]) -> dict[str, dict[str, float]]:
    """Precision, recall and support per class from the confusion matrix of all folds."""
    hit = np.diag(cm).astype(np.float64)
    predicted, support = cm.sum(0), cm.sum(1)
    return {
        c: {
            "precision": float(hit[i] / predicted[i]) if predicted[i] else 0.0,
            "recall": float(hit[i] / support[i]) if support[i] else 0.0,
            "support": int(support[i]),
        }
        for i, c in enumerate(classes)
    }


def per_class_markdown(rows: list[dict[str, Any]]) -> str:
    """Precision / recall of every class for every row (all folds pooled), best macro-F1 first."""
    rows = sorted(rows, key=lambda r: -r["macro_f1_mean"])
    classes = list(rows[0]["per_class"])
    lines = [
        "Per class, all folds pooled: precision / recall (support)\n",
        "| model | " + " | ".join(f"{c} ({rows[0]['per_class'][c]['support']})" for c in classes) + " |",
        "|---|" + "---|" * len(classes),
    ]
    for r in rows:
        cells = [f"{r['per_class'][c]['precision']:.3f} / {r['per_class'][c]['recall']:.3f}" for c in classes]
        lines.append(f"| {r['model']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def leaderboard_markdown(rows: list[dict[str, Any]], caption: str) -> str:
    """The leaderboard as a Markdown table, best macro-F1 first."""
    rows = sorted(rows, key=lambda r: -r["macro_f1_mean"])
    det = any("roc_auc_mean" in r for r in rows)
    head = "| model | accuracy | macro-F1 | params | train time (all folds) | inference ms/sample |"
    sep = "|---|---|---|---|---|---|"
    if det:
        head += " ROC-AUC | TPR @ 1% FPR |"
        sep += "---|---|"
    lines = [f"{caption}\n", head, sep]
    for r in rows:
        line = (
            f"| {r['model']} | {r['accuracy_mean']:.4f} ± {r['accuracy_std']:.4f} "
            f"| {r['macro_f1_mean']:.4f} ± {r['macro_f1_std']:.4f} | {r['params']:,} "
            f"| {r['train_seconds']:.0f} s | {r['infer_ms_per_sample']:.2f} |"
        )
        if det:
            auc, tpr = r.get("roc_auc_mean"), r.get("tpr_at_1pct_fpr_mean")
            line += f" {auc:.4f} | {tpr:.4f} |" if auc is not None else " - | - |"
        lines.append(line)
    return "\n".join(lines) + "\n"
