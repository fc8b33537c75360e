"""Model cards: what a shipped model is, what it was trained on, how it was measured."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path
from typing import Any

from malvision.errors import CheckpointError
from malvision.io import atomic_writer

__all__ = [
    "band_points",
    "group_rows",
    "card_from_run",
    "save_with_card",
    "bundle_run",
    "training_ids",
    "model_summary",
]


def _cv_figures(path: Path, row: str) -> tuple[str, dict[str, Any]]:
    """How a benchmark measured ``row`` (its caption) and its pooled figures, as a card's metrics."""
    try:
        rows = json.loads(path.read_text())
        r = next(x for x in rows if x["model"] == row)
        cm = r["confusion_matrix"]
    except (OSError, ValueError, TypeError, KeyError) as e:  # ValueError: not JSON, or not UTF-8
        raise CheckpointError(f"{path}: not a benchmark's leaderboard.json ({e})") from None
    except StopIteration:
        names = ", ".join(str(x.get("model")) for x in rows)
        raise CheckpointError(f"{path}: no row {row!r} (rows: {names}); pick one with --cv-row") from None
    per_class = {}
    for c, v in r["per_class"].items():
        p, rec = v["precision"], v["recall"]
        per_class[c] = {**v, "f1": 2 * p * rec / (p + rec) if p + rec else 0.0}
    metrics = {
        "n": int(sum(map(sum, cm))),
        "accuracy": r["accuracy_mean"],
        "accuracy_std": r["accuracy_std"],
        "macro_f1": r["macro_f1_mean"],
        "macro_f1_std": r["macro_f1_std"],
        "per_class": per_class,
        "confusion_matrix": cm,
    }
    return f"{r['folds']}-fold cross-validation of the same recipe ({path})", metrics


def card_from_run(run: Path | str, cv: Path | None = None, cv_row: str | None = None) -> dict[str, Any]:
    """A card from a ``malvision train`` run folder: its metrics.json, split.json and config. A run
    trained on every sample (``--test-size 0``) takes its figures from a benchmark's ``cv`` row."""
    r = Path(run)
    try:
        metrics = json.loads((r / "metrics.json").read_text())
        split = json.loads((r / "split.json").read_text())
    except (OSError, ValueError) as e:  # ValueError: not JSON, or not UTF-8
        raise CheckpointError(f"{r}: not a finished `malvision train` run ({e})") from None
    test = metrics["test"]
    seed = metrics["config"]["seed"]
    if test is None:
        if cv is None:
            raise CheckpointError(
                f"{r}: trained on every sample, so it has no test figures; pass --cv LEADERBOARD.json"
            )
        how, figures = _cv_figures(cv, cv_row or metrics["config"].get("name") or metrics["config"]["model"])
        protocol = f"trained on all {metrics['n_train']} samples (seed {seed}); measured by {how}"
    elif cv is not None:
        raise CheckpointError(f"{r}: has its own test figures; --cv is for a run trained on every sample")
    else:
        figures = {k: test[k] for k in ("n", "accuracy", "macro_f1", "per_class") if k in test}
        protocol = (
            f"{metrics['split']} (seed {seed}): trained on {metrics['n_train']} samples, "
            f"early-stopped on {metrics['n_val']}, tested on {metrics['n_test']} never seen in training"
        )
    return {
        "task": "classification",
        "architecture": metrics["config"]["model"],
        "split": protocol,
        "metrics": figures,
        "training_ids": sorted(split["train_ids"] + split["val_ids"]),
        "test_ids": sorted(split["test_ids"]),
        "data": {
            "cache": metrics.get("data"),
            "manifest_hash": metrics.get("manifest_hash"),
            "data_hash": metrics.get("data_hash"),
        },
        "train_config": metrics["config"],
        "train_seconds": metrics.get("train_seconds"),
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d"),
        "command": metrics.get("command", ""),
    } | _bundled_recipe(metrics.get("recipe"), cv)


def _bundled_recipe(recipe: dict[str, Any] | None, cv: Path | None) -> dict[str, Any]:
    """A ``train`` run's recipe with the bundle step that makes the card; one whose figures come from a
    benchmark (``cv``) cannot be rerun from the card alone and says so."""
    if not recipe:
        return {}
    if cv is not None:
        return {
            "recipe": recipe
            | {"incomplete": f"its figures come from a benchmark ({cv}) the card does not record"}
        }
    step = ["bundle", "{run}", "--out", "{work}/model.pt"]
    return {"recipe": recipe | {"steps": [*recipe["steps"], step], "model": "{work}/model.pt"}}


def save_with_card(ck: Any, dest: Path | str, card: dict[str, Any]) -> Path:
    """Write checkpoint ``ck``'s model and metadata again to ``dest``, with ``card`` (metrics from it)."""
    from malvision.checkpoint import save_checkpoint

    return save_checkpoint(
        dest,
        ck.model,
        model_name=ck.model_name,
        model_kwargs=ck.model_kwargs,
        in_kind=ck.in_kind,
        n_classes=ck.n_classes,
        vocab_size=ck.vocab_size,
        spec=ck.spec,
        classes=ck.classes,
        seed=ck.seed,
        manifest_hash=ck.manifest_hash,
        metrics=card.get("metrics"),
        extra={"card": card},
    )


def bundle_run(run: Path | str, dest: Path | str, cv: Path | None = None, cv_row: str | None = None) -> Path:
    """Copy a run's model with its card to ``dest`` (a detector's model.pt already carries one); ``cv``
    and ``cv_row``: see ``card_from_run``."""
    from malvision.checkpoint import load_checkpoint

    r = Path(run)
    src = r / "model.pt" if (r / "model.pt").is_file() else r / "best.pt"
    ck = load_checkpoint(src)
    if (ck.extra or {}).get("card"):
        if cv is not None:
            raise CheckpointError(f"{src}: carries its own card; --cv is for a run trained on every sample")
        with open(src, "rb") as f, atomic_writer(dest) as g:
            shutil.copyfileobj(f, g)
        return Path(dest)
    save_with_card(ck, dest, card_from_run(r, cv, cv_row))
    return Path(dest)


def band_points(card: dict[str, Any]) -> tuple[float, float] | None:
    """The scores where a detector's card puts 1% and 0.1% out-of-fold false positives: the lower
    edges of the ``suspicious`` and ``malicious`` bands (None when the card has no such points)."""
    points = (card.get("metrics") or {}).get("operating_points") or {}
    try:
        low, high = float(points["0.01"]["threshold"]), float(points["0.001"]["threshold"])
    except (KeyError, TypeError, ValueError):
        return None
    return (low, max(low, high))


def _threshold_cis(card: dict[str, Any]) -> dict[str, str]:
    """Per band point, ``; 95% interval a to b`` (benign-project bootstrap) where the card has one."""
    points = (card.get("metrics") or {}).get("operating_points") or {}
    out = {}
    for f in ("0.01", "0.001"):
        ci = (points.get(f) or {}).get("threshold_ci95")
        if ci:
            out[f] = f"; 95% interval {ci[0]:.4f} to {ci[1]:.4f}"
    return out


def training_ids(card: dict[str, Any]) -> set[str]:
    """Ids (opcode sample ids or sha256) of every file the model was trained or validated on."""
    return set(card.get("training_ids", [])) | set(card.get("training_sha256", []))


ID_LISTS = ("training_sha256", "training_ids", "test_ids")


def group_rows(summary: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """A detector card's per-group results as table rows: malware families (most detected first),
    then the benign projects with a false positive. A model without them is an error."""
    from malvision.errors import MalvisionError

    per = summary.get("per_group_flagged")
    if not isinstance(per, dict):
        raise MalvisionError(
            f"{summary.get('file')}: no per-group results in this model's card (not a detector)"
        )
    rows = []
    for key, v in per.items():
        label, _, name = str(key).partition(":")
        flagged, n = int(v.get("flagged", 0)), int(v.get("n", 0))
        if label == "malware" or flagged:
            share = f"{flagged / n:.0%}" if n else ""
            rows.append([label, name, str(n), str(flagged), share])
    rows.sort(key=lambda r: (r[0] != "malware", -int(r[3]) / max(int(r[2]), 1), r[1]))
    return ["class", "group", "files", "flagged", "share"], rows


def operating_rows(summary: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """A detector card's out-of-fold operating points as table rows (the card's own threshold marked),
    with the 95% group-bootstrap interval of the detection rate where the card has one."""
    m = summary.get("metrics") or {}
    points = m.get("operating_points") or {}
    n_b, n_m = int(m.get("n_benign") or 0), int(m.get("n_malware") or 0)
    with_ci = any(p.get("tpr_ci95") for p in points.values())
    with_t_ci = any(p.get("threshold_ci95") for p in points.values())
    rows = []
    for target, p in sorted(points.items(), key=lambda kv: float(kv[0])):
        mark = " (card)" if float(target) == summary.get("target_fpr") else ""
        row = [
            f"{float(target) * 100:g}%{mark}",
            f"{p['threshold']:.4g}",
            f"{round(p['fpr'] * n_b)} = {p['fpr']:.3%}",
            f"{round(p['tpr'] * n_m)} = {p['tpr']:.1%}",
        ]
        if with_ci:
            ci = p.get("tpr_ci95")
            row.append(f"{ci[0]:.1%} to {ci[1]:.1%}" if ci else "")
        if with_t_ci:
            t, d = p.get("threshold_ci95"), p.get("tpr_at_threshold_ci95")
            row.append(f"{t[0]:.4f} to {t[1]:.4f}" if t else "")
            row.append(f"{d[0]:.1%} to {d[1]:.1%}" if d else "")
        rows.append(row)
    header = ["target FPR", "threshold", f"benign flagged (of {n_b})", f"detected (of {n_m})"]
    extra = ["threshold 95% interval", "detected at its ends"] * with_t_ci
    return header + ["95% interval"] * with_ci + extra, rows


def _rate(p: dict[str, Any], key: str) -> str:
    ci = p.get(f"{key}_ci95")
    return f"{p[key]:.1%}" + (f" ({ci[0]:.1%} to {ci[1]:.1%})" if ci else "")


def protocol_rows(summary: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """A detector card's protocols (source-, group-disjoint) side by side: ROC-AUC and the detection
    rates at 1% and 0.1% FPR with their intervals, and what the card's threshold does."""
    rows = []
    for name, m in (summary.get("protocols") or {}).items():
        pts = m.get("operating_points") or {}
        cells = [name, f"{m.get('roc_auc') or 0:.4f}"]
        for f in ("0.01", "0.001"):
            p = pts.get(f, {})
            cells.append(_rate({"t": p["tpr"], "t_ci95": p.get("tpr_ci95")}, "t") if p else "")
        cells.append(
            f"{m.get('detected')} of {m.get('n_malware')}, {m.get('false_positives')} benign flagged"
        )
        rows.append(cells)
    return ["protocol", "ROC-AUC", "TPR at 1% FPR", "TPR at 0.1% FPR", "at its own threshold"], rows


def collection_rows(summary: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The card protocol's detection rate per malware collection, with intervals."""
    per = (summary.get("metrics") or {}).get("per_collection") or {}
    rows = [[c, str(v["n"]), _rate(v, "tpr_at_0.01"), _rate(v, "tpr_at_0.001")] for c, v in per.items()]
    return ["collection", "malware files", "TPR at 1% FPR", "TPR at 0.1% FPR"], rows


def type_rows(summary: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The card's threshold per file type: malware detected, benign flagged."""
    per = (summary.get("metrics") or {}).get("per_type") or {}
    rows = [
        [t, f"{v['detected']} of {v['malware']}", f"{v['flagged']} of {v['benign']}"] for t, v in per.items()
    ]
    return ["file type", "malware detected", "benign flagged"], rows


def model_summary(ck: Any, path: Path, *, full_path: bool = True, with_ids: bool = False) -> dict[str, Any]:
    """What ``malvision info`` and ``GET /v1/model`` show: the model, its input and its card.

    The card's id lists (training files, test ids) are summarised as counts unless ``with_ids``.
    """
    from malvision.models import learned_numbers

    card = dict((ck.extra or {}).get("card", {}))
    spec = {k: v for k, v in ck.spec.items() if k != "vocab"}
    if spec.get("kind") in ("features", "histograms"):  # image_size and max_len mean nothing to them
        spec = {
            "kind": spec["kind"],
            "n_features": getattr(ck.model, "n_features", None),
            "version": spec.get("version"),
        }
    if ck.spec.get("vocab"):
        spec["vocab_size"] = len(ck.spec["vocab"]) + 2
    summary: dict[str, Any] = {
        "file": str(path) if full_path else Path(path).name,
        "model": ck.model_name,
        "model_kwargs": ck.model_kwargs,
        "parameters": learned_numbers(ck.model),  # a fitted model's trees or weights count too
        "input": spec,
        "classes": ck.classes,
        "seed": ck.seed,
        "manifest_hash": ck.manifest_hash,
    } | {k: v for k, v in card.items() if k not in ID_LISTS}
    if points := band_points(card):
        ci = _threshold_cis(card)
        summary["bands"] = {
            "clean": f"score below {points[0]:.4f} (1% out-of-fold FPR{ci.get('0.01', '')})",
            "suspicious": f"score from {points[0]:.4f} to below {points[1]:.4f}",
            "malicious": f"score from {points[1]:.4f} (0.1% out-of-fold FPR{ci.get('0.001', '')})",
            "points": {"0.01": points[0], "0.001": points[1]},
        }
    for key in ID_LISTS:
        if key in card:
            summary[key] = (
                card[key] if with_ids else f"{len(card[key])} ids (listed by `malvision info --json`)"
            )
    return summary
