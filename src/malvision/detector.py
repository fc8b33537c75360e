"""The shipped detector: honest cross-validation, calibration, a threshold for a target FPR, a card.

``build_detector`` runs group-disjoint k-fold cross-validation (no malware family and no benign source
package on both sides), so every file gets an out-of-fold score from a model that never saw its family
or its source. Those scores give the card's metrics and the threshold for the target false-positive
rate. The final model trains on everything, with temperature scaling fitted on a group-disjoint
validation split (trees, fitted in one call, use every row and no temperature), and carries the card
inside its checkpoint.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from malvision.calibration import fit_platt, fit_temperature, log_odds, platt_scale
from malvision.card import save_with_card
from malvision.checkpoint import load_checkpoint
from malvision.data.loader import make_loader
from malvision.data.splits import group_keys, group_kfold
from malvision.errors import MalvisionError
from malvision.evaluate.metrics import bootstrap_tpr, detection_metrics, threshold_for_fpr, tpr_interval
from malvision.io import atomic_writer
from malvision.train import TrainConfig, fit, fitted_in_one_call, predict_logits, train_val_rows

__all__ = ["build_detector", "data_sources"]


def data_sources(records: Any) -> dict[str, dict[str, Any]]:
    """Where the training files came from: per corpus folder or sample zip, files per label and, for
    benign files, per package registry (the part of the group before ':')."""
    out: dict[str, dict[str, Any]] = {}
    for r in records:
        folder = Path(r.source).parent
        folder = folder.parent if folder.name == "pe" else folder  # a benign corpus keeps files in pe/
        origin = r.source.split("!", 1)[0] if "!" in r.source else str(folder)
        entry = out.setdefault(origin, {"files": {}, "registries": {}})
        entry["files"][r.label] = entry["files"].get(r.label, 0) + 1
        registry = r.group.split(":", 1)[0] if r.group and ":" in r.group else None
        if r.label == "benign" and registry:
            entry["registries"][registry] = entry["registries"].get(registry, 0) + 1
    return out


def _train_calibrated(
    ds: Any, idx: np.ndarray, cfg: TrainConfig, out: Path, on_step: Callable[[int, int], None] | None = None
) -> tuple[Any, float]:
    """Train on ``idx``; return the checkpoint and a temperature fitted on a group-disjoint validation
    split. A model fitted in one call (trees) has no epoch to pick, so every row trains it and its
    temperature stays 1: Platt scaling on the out-of-fold scores calibrates it."""
    tr, va = train_val_rows(cfg, idx, ds.labels, list(ds.groups))
    res = fit(ds, tr, va, cfg, out, resume=True, on_step=on_step)
    ck = load_checkpoint(res.checkpoint)
    if not len(va):
        return ck, 1.0
    logits, labels = predict_logits(ck.model, make_loader(ds, va, 64, shuffle=False, max_len=cfg.max_len))
    return ck, fit_temperature(logits, labels)


def _steps(say: Callable[[str], None], what: str) -> Callable[[int, int], None]:
    """A fit's progress as ``what: N%``, said only when the percentage changes."""
    last = -1

    def on_step(done: int, total: int) -> None:
        nonlocal last
        pct = 100 * done // max(total, 1)
        if pct != last:
            last = pct
            say(f"{what}: {pct}%")

    return on_step


def _claim_run(out: Path, stamp: dict[str, Any]) -> None:
    """Reuse the fold results in ``out`` only if the same data and settings made them; else refuse."""
    stamp = json.loads(json.dumps(stamp))
    path = out / "run.json"
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise MalvisionError(f"{path}: unreadable ({e}); pick another --out or delete that folder") from e
        changed = [k for k in stamp if k != "train_config" and old.get(k) != stamp[k]]
        changed += [
            f"train_config.{k}"
            for k, v in stamp["train_config"].items()
            if old.get("train_config", {}).get(k) != v
        ]
        if changed:
            what = ", ".join("the data" if c == "manifest_hash" else c for c in changed)
            raise MalvisionError(
                f"{out} holds a detector run on other data or settings ({what}); "
                "pick another --out or delete that folder"
            )
        return
    if (out / "cv").exists():
        raise MalvisionError(
            f"{out} holds fold results of an unknown run; pick another --out or delete that folder"
        )
    out.mkdir(parents=True, exist_ok=True)
    with atomic_writer(path) as f:
        f.write(json.dumps(stamp, indent=2).encode())


def build_detector(
    ds: Any,
    cfg: TrainConfig,
    out_dir: Path | str,
    *,
    folds: int = 5,
    target_fpr: float = 0.001,
    command: str = "",
    sources: dict[str, str] | None = None,
    on_progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Cross-validate, pick the threshold, train the final model; writes ``model.pt`` + ``card.json``."""
    out = Path(out_dir)
    say = on_progress or (lambda s: None)
    if sorted(ds.classes) != ["benign", "malware"]:
        raise ValueError(f"a detector needs classes benign and malware, got {ds.classes}")
    mal = ds.classes.index("malware")
    y = (ds.labels == mal).astype(int)
    oof = np.full(len(ds), np.nan)
    splits = group_kfold(ds.labels, ds.groups, folds, random_state=cfg.seed)
    stamp = {
        "manifest_hash": ds.manifest_hash,
        "folds": folds,
        "fold_scores": "log-odds",
        "train_config": asdict(cfg),
    }
    _claim_run(out, stamp)
    for k, (tr, te) in enumerate(splits):
        fold = f"fold {k + 1}/{len(splits)}"
        say(fold)
        done = out / "cv" / f"fold{k}" / "scores.npy"
        if done.exists():
            oof[te] = np.load(done)
            continue
        ck, t = _train_calibrated(ds, np.asarray(tr), cfg, out / "cv" / f"fold{k}", _steps(say, fold))
        logits, _ = predict_logits(ck.model, make_loader(ds, te, 64, shuffle=False, max_len=cfg.max_len))
        oof[te] = log_odds(logits, mal, t)
        with atomic_writer(done) as f:
            np.save(f, oof[te])
    groups = group_keys(ds.groups, len(ds))
    platt = fit_platt(oof, y)
    oof = platt_scale(oof, platt)
    threshold = threshold_for_fpr(oof[y == 0], target_fpr)
    flagged = oof >= threshold
    cv = detection_metrics(y, oof)
    cv.update(
        {
            "threshold": threshold,
            "target_fpr": target_fpr,
            "fpr_at_threshold": float(flagged[y == 0].mean()),
            "false_positives": int(flagged[y == 0].sum()),
            "tpr_at_threshold": float(flagged[y == 1].mean()),
            "detected": int(flagged[y == 1].sum()),
            "accuracy_at_threshold": float((flagged == (y == 1)).mean()),
        }
    )
    cv["operating_points"] = {}
    for fpr in sorted({0.001, 0.01, target_fpr}):
        t = threshold_for_fpr(oof[y == 0], fpr)
        hit = oof >= t
        cv["operating_points"][f"{fpr:g}"] = {
            "threshold": t,
            "fpr": float(hit[y == 0].mean()),
            "tpr": float(hit[y == 1].mean()),
            "tpr_ci95": tpr_interval(y, oof, groups, fpr, seed=cfg.seed),
        }
    cv["tpr_ci95"] = cv["operating_points"][f"{target_fpr:g}"]["tpr_ci95"]
    cv["tpr_ci95_method"] = (
        "95% percentile interval over 2,000 group-bootstrap replicates: whole malware families and benign "
        "projects redrawn with replacement, the threshold set again on each replicate's benign files"
    )
    per_group: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for i in range(len(ds)):
        g = f"{ds.classes[ds.labels[i]]}:{ds.groups[i]}"
        per_group[g][0] += int(flagged[i])
        per_group[g][1] += 1
    say("final model on all data")
    ck, temperature = _train_calibrated(
        ds, np.arange(len(ds)), cfg, out / "final", _steps(say, "final model")
    )
    card = {
        "task": "malware vs benign detection (Windows PE)",
        "architecture": cfg.model,
        "temperature": temperature,
        "platt": platt,
        "score": (
            "P(malware) for a file of an unseen family or source: sigmoid(a * z + b), z = (malware logit - "
            "benign logit) / temperature "
            + (
                "(temperature 1: a model fitted in one call trains on every row, with no validation split)"
                if fitted_in_one_call(cfg.model)
                else "(temperature fitted on a group-disjoint validation split)"
            )
            + "; Platt's a and b fitted on the out-of-fold z of the cross-validation"
        ),
        "threshold": threshold,
        "target_fpr": target_fpr,
        "threshold_source": f"out-of-fold calibrated scores of the {len(splits)}-fold group-disjoint CV, benign files",
        "split": (
            f"{len(splits)}-fold group-disjoint cross-validation (sklearn StratifiedGroupKFold, seed {cfg.seed}): "
            "groups are malware families and benign source packages, so every score comes from a model "
            "that never saw the file's family or source package"
        ),
        "metrics": cv,
        "per_group_flagged": {g: {"flagged": a, "n": n} for g, (a, n) in sorted(per_group.items())},
        "data": {
            "cache": str(getattr(ds, "path", "")),
            "manifest_hash": ds.manifest_hash,
            "counts": {c: int((ds.labels == i).sum()) for i, c in enumerate(ds.classes)},
            "groups": {
                c: len({ds.groups[i] for i in np.flatnonzero(ds.labels == k)})
                for k, c in enumerate(ds.classes)
            },
            "sources": sources or data_sources(ds.records),
        },
        "training_sha256": sorted(r.sha256 or r.id for r in ds.records),
        "train_config": asdict(cfg),
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d"),
        "command": command,
    }
    save_with_card(ck, out / "model.pt", card)
    with atomic_writer(out / "card.json") as f:
        f.write(json.dumps({k: v for k, v in card.items() if k != "training_sha256"}, indent=2).encode())
    with atomic_writer(out / "oof_scores.json") as f:
        f.write(json.dumps({"ids": list(ds.ids), "y": y.tolist(), "score": oof.tolist()}).encode())
    _plot_roc(y, oof, groups, threshold, out / "roc.png", cfg.model, cfg.seed)
    return card


def _plot_roc(
    y: np.ndarray, score: np.ndarray, groups: np.ndarray, threshold: float, path: Path, name: str, seed: int
) -> None:
    """The out-of-fold ROC on a log FPR axis, with the 95% group-bootstrap band of the detection rate."""
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve

    from malvision.evaluate.plots import save_figure

    floor = max(1 / max(int((y == 0).sum()), 1), 1e-4)
    fpr, tpr, _ = roc_curve(y, score)
    grid = np.geomspace(floor, 1.0, 40)
    rates, _ = bootstrap_tpr(y, score, groups, grid, seed=seed)
    lo, hi = np.percentile(rates, [2.5, 97.5], axis=0)
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.fill_between(grid, lo, hi, step="post", alpha=0.25, label="95% group bootstrap")
    ax.plot(np.maximum(fpr, floor), tpr, label=name)
    at = score >= threshold
    ax.scatter(
        [max(at[y == 0].mean(), floor)],
        [at[y == 1].mean()],
        color="red",
        zorder=3,
        label=f"threshold {threshold:.3g}",
    )
    ax.set_xscale("log")
    ax.set_xlim(floor, 1.0)
    ax.set_xlabel("false-positive rate (benign, unseen sources)")
    ax.set_ylabel("true-positive rate (malware, unseen families)")
    ax.set_title("out-of-fold ROC, group-disjoint CV")
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3, which="both")
    save_figure(fig, path)
