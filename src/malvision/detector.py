"""The shipped detector: honest cross-validation, calibration, a threshold for a target FPR, a card.

``build_detector`` cross-validates under two protocols: source-disjoint (one fold per malware
collection: every malware score comes from a model that saw no file of its collection) and
group-disjoint (no malware family and no benign project on both sides). The first protocol's
out-of-fold scores calibrate the model and set the threshold for the target false-positive rate; the
card carries both, with intervals, per collection and per file type. The final model trains on
everything (a network early-stops on a group-disjoint validation split) and carries the card inside its
checkpoint.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from malvision.card import save_with_card
from malvision.convert.spec import input_name
from malvision.data.splits import Split, group_keys, group_kfold, source_kfold
from malvision.errors import DatasetError, MalvisionError
from malvision.evaluate.crossval import claim_run, cross_validate, steps, train_model
from malvision.evaluate.detection import calibrate_as_scanned, detection_report, unscored
from malvision.evaluate.metrics import bootstrap_tpr
from malvision.io import atomic_writer
from malvision.train import TrainConfig, check_trainable

__all__ = ["build_detector", "data_sources", "write_oof"]


def data_sources(records: Any) -> dict[str, dict[str, Any]]:
    """Where the training files came from: per corpus folder, sample zip or malware collection, files per
    label and, for benign files, per package registry (the part of the group before ':')."""
    out: dict[str, dict[str, Any]] = {}
    for r in records:
        folder = Path(r.source).parent
        folder = folder.parent if folder.name == "pe" else folder  # a benign corpus keeps files in pe/
        if "!" in r.source:
            origin = r.source.split("!", 1)[0]
        else:
            origin = f"collection {r.collection}" if r.collection else str(folder)
        entry = out.setdefault(origin, {"files": {}, "registries": {}})
        entry["files"][r.label] = entry["files"].get(r.label, 0) + 1
        registry = r.group.split(":", 1)[0] if r.group and ":" in r.group else None
        if r.label == "benign" and registry:
            entry["registries"][registry] = entry["registries"].get(registry, 0) + 1
    return out


def build_detector(
    ds: Any,
    cfg: TrainConfig,
    out_dir: Path | str,
    *,
    folds: int = 5,
    target_fpr: float = 0.001,
    protocols: tuple[str, ...] | None = None,
    command: str = "",
    sources: dict[str, str] | None = None,
    on_progress: Callable[[str], None] | None = None,
    recipe: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Cross-validate, pick the threshold, train the final model; writes ``model.pt`` + ``card.json``.

    ``protocols``: ``source`` (one fold per malware collection) and/or ``group`` (``folds``
    group-disjoint folds); default both when the cache records collections, else ``group``. The first
    is the card's own: its out-of-fold scores calibrate the model and set the threshold. ``recipe``:
    how to build the data and train again (``malvision.recipe``), kept in the card.
    """
    out = Path(out_dir)
    say = on_progress or (lambda s: None)
    if sorted(ds.classes) != ["benign", "malware"]:
        raise DatasetError(f"a detector needs classes benign and malware, got {ds.classes}")
    y = (ds.labels == ds.classes.index("malware")).astype(int)
    if protocols is None:
        has_collections = any(c is not None for c in ds.collections)
        protocols = ("source", "group") if has_collections else ("group",)
    # Fold results depend on the data and settings only: each protocol keeps its own folds (cv/,
    # cv-source/), so a run given another protocol later adds its folds and reuses the rest.
    stamp = {
        "manifest_hash": ds.manifest_hash,
        "conversion": ds.conversion,  # caches of one set of files share the manifest
        "folds": folds,
        "fold_scores": "raw log-odds",
        "train_config": asdict(cfg),
    }
    # Bad settings, folds or protocols are refused before anything is written: a run.json left by a
    # refused run would refuse the corrected one in the same folder.
    if not 0 < target_fpr < 1:
        raise MalvisionError(f"target_fpr must be between 0 and 1, got {target_fpr}")
    check_trainable(ds, cfg)
    # Files a scan calls unknown (not a PE, truncated, ...) get no score from it: calibration leaves them
    # out, and every figure counts them as never flagged, as the scan does
    unknown = [r.unknown for r in ds.records]
    judged = np.asarray([u is None for u in unknown])
    for k, name in enumerate(("benign", "malware")):
        if not judged[y == k].any():
            raise DatasetError(
                f"a scan scores none of the {name} files (it calls them unknown: "
                f"{next(u for u, c in zip(unknown, y, strict=True) if c == k)}); a detector needs PE files"
            )
    split_of = {proto: _protocol_splits(ds, y, proto, folds, cfg.seed, out) for proto in protocols}
    claim_run(out, stamp)
    groups = group_keys(ds.groups, len(ds))
    reports: dict[str, dict[str, Any]] = {}
    platt: dict[str, float] = {}
    folds_of: dict[str, list[Split]] = {}
    for proto in protocols:
        splits, folder, split_text = split_of[proto]
        folds_of[proto] = splits
        oof = cross_validate(ds, cfg, folder, splits, say, name=f"{proto} fold")
        fitted, score = calibrate_as_scanned(oof, y, unknown)
        reports[proto] = detection_report(
            y, score, groups, target_fpr=target_fpr, seed=cfg.seed, collections=ds.collections,
            pe_types=[r.pe_type for r in ds.records],
        ) | {"split": split_text}  # fmt: skip
        if proto == protocols[0]:
            platt, cv, primary = fitted, reports[proto], score
    threshold = cv["threshold"]
    flagged = primary >= threshold
    per_group: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for i in range(len(ds)):
        g = f"{ds.classes[ds.labels[i]]}:{ds.groups[i]}"
        per_group[g][0] += int(flagged[i])
        per_group[g][1] += 1
    say("final model on all data")
    ck = train_model(ds, np.arange(len(ds)), cfg, out / "final", steps(say, "final model"))
    card = {
        "task": "malware vs benign detection (Windows PE)",
        "architecture": cfg.model,
        "input_kind": ds.spec.kind,
        "input": input_name(ds.spec.to_dict()),
        "temperature": 1.0,
        "platt": platt,
        "score": (
            "P(malware) for a file of an unseen collection or project: sigmoid(a * z + b), z = malware logit - "
            f"benign logit; Platt's a and b fitted on the out-of-fold z of the {protocols[0]}-disjoint "
            "cross-validation (no temperature: fitted per fold, it put the folds on different scales)"
        ),
        "threshold": threshold,
        "threshold_ci95": cv["operating_points"][f"{target_fpr:g}"]["threshold_ci95"],
        "target_fpr": target_fpr,
        "threshold_source": f"out-of-fold calibrated scores of the {protocols[0]}-disjoint CV, benign files",
        "unscored": unscored(y, unknown) | ({} if getattr(ds, "triaged", True) else {"recorded": False}),
        **_too_few_benign(int((y == 0).sum()), target_fpr),
        "split": cv["split"],
        "metrics": cv,
        "protocols": reports,
        "per_group_flagged": {g: {"flagged": a, "n": n} for g, (a, n) in sorted(per_group.items())},
        "data": {
            "cache": str(getattr(ds, "path", "")),
            "manifest_hash": ds.manifest_hash,
            "data_hash": getattr(ds, "data_hash", None),
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
    } | ({"recipe": recipe} if recipe else {})
    save_with_card(ck, out / "model.pt", card)
    with atomic_writer(out / "card.json") as f:
        f.write(json.dumps({k: v for k, v in card.items() if k != "training_sha256"}, indent=2).encode())
    write_oof(out / "oof_scores.json", ds, y, primary, protocols[0], folds_of[protocols[0]])
    _plot_roc(y, primary, groups, threshold, out / "roc.png", cfg.model, cfg.seed, protocols[0])
    return card


def _too_few_benign(n_benign: int, target_fpr: float) -> dict[str, str]:
    """A card's warning where the benign files are too few to measure the target FPR: below 1/FPR files
    the threshold is just the highest benign score, and the rate it claims is not measured."""
    if n_benign * target_fpr >= 1:
        return {}
    return {
        "warning": (
            f"{n_benign} benign files cannot measure a {target_fpr:.2%} false-positive rate (one file is "
            f"{1 / max(n_benign, 1):.2%} of them; it takes {math.ceil(1 / target_fpr):,}): the threshold is "
            "the highest benign score, and the detection at it is not what it would be at that rate"
        )
    }


def write_oof(
    path: Path, ds: Any, y: np.ndarray, score: np.ndarray, protocol: str, splits: list[Split]
) -> None:
    """The out-of-fold scores of every file (as a scan reports them: ``as_scanned``), with what a
    leaderboard joins and groups them by: sha256, fold, family or project, collection, PE type, and why a
    scan calls the file unknown."""
    fold = np.empty(len(y), dtype=np.int64)
    for k, (_, te) in enumerate(splits):
        fold[te] = k
    record = {
        "protocol": protocol,
        "ids": list(ds.ids),
        "sha256": [r.sha256 for r in ds.records],
        "y": y.tolist(),
        "score": score.tolist(),
        "fold": fold.tolist(),
        "group": list(ds.groups),
        "collection": list(ds.collections),
        "pe_type": [r.pe_type for r in ds.records],
        "unknown": [r.unknown for r in ds.records],
    }
    with atomic_writer(path) as f:
        f.write(json.dumps(record).encode())


def _protocol_splits(
    ds: Any, y: np.ndarray, protocol: str, folds: int, seed: int, out: Path
) -> tuple[list[Split], Path, str]:
    """The folds of one protocol, the folder its fold results live in, and the card's words for it."""
    if protocol == "group":
        splits = group_kfold(ds.labels, ds.groups, folds, random_state=seed, names=list(ds.classes))
        text = (
            f"{len(splits)}-fold group-disjoint cross-validation (sklearn StratifiedGroupKFold, seed {seed}): "
            "groups are malware families and benign source packages, so every score comes from a model "
            "that never saw the file's family or source package"
        )
        return splits, out / "cv", text
    if protocol == "source":
        splits, names = source_kfold(y == 1, ds.groups, ds.collections, random_state=seed)
        text = (
            f"{len(splits)}-fold source-disjoint cross-validation, one fold per malware collection "
            f"({', '.join(names)}), benign projects spread over the folds by a seeded hash: every malware "
            "score comes from a model that saw no file of its collection, every benign score from one that "
            "saw no file of its project"
        )
        return splits, out / "cv-source", text
    raise MalvisionError(f"unknown protocol {protocol!r}; use source or group")


def _plot_roc(
    y: np.ndarray,
    score: np.ndarray,
    groups: np.ndarray,
    threshold: float,
    path: Path,
    name: str,
    seed: int,
    protocol: str = "group",
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
    ax.set_xlabel("false-positive rate (benign, unseen projects)")
    ax.set_ylabel(
        f"true-positive rate (malware, unseen {'collections' if protocol == 'source' else 'families'})"
    )
    ax.set_title(f"out-of-fold ROC, {protocol}-disjoint CV")
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3, which="both")
    save_figure(fig, path)
