"""One held-out run: a seeded test split, training, test metrics, plots and the split's ids."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch.distributed as dist

from malvision.checkpoint import load_checkpoint
from malvision.data.loader import make_loader
from malvision.data.splits import group_holdout, stratified_holdout
from malvision.evaluate.metrics import classification_metrics
from malvision.evaluate.plots import plot_confusion, plot_history
from malvision.io import atomic_writer
from malvision.models import learned_numbers
from malvision.train import TrainConfig, fit, predict, train_val_rows

__all__ = ["train_run", "split_ids"]


def train_run(
    ds: Any,
    cfg: TrainConfig,
    out_dir: Path | str,
    *,
    test_size: float = 0.2,
    grouped: bool = False,
    resume: bool = False,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
    on_step: Callable[[int, int], None] | None = None,
    command: str = "",
    recipe: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Hold out a seeded test split (group-disjoint if ``grouped``), train, test, write plots and metrics.
    ``test_size`` 0 trains on every sample and tests on none (a model to ship, measured by ``benchmark``).

    Writes into ``out_dir``: ``best.pt``, ``metrics.json`` (test metrics + run facts), ``history.csv``,
    ``curves.png``, ``confusion.png`` and ``split.json`` (the test ids, so no one tests on training data).
    ``recipe``: how to build the data and train again (``malvision.recipe``), for the card.
    """
    out = Path(out_dir)
    if test_size == 0:  # a model to ship: every sample trains it, cross-validation measures the recipe
        train_idx, test_idx = np.arange(len(ds)), np.arange(0)
    elif grouped:
        train_idx, test_idx = group_holdout(
            ds.labels, ds.groups, test_size, random_state=cfg.seed, names=list(ds.classes)
        )
    else:
        train_idx, test_idx = stratified_holdout(
            ds.labels, test_size, random_state=cfg.seed, names=list(ds.classes)
        )
    tr, va = train_val_rows(cfg, train_idx, ds.labels, ds.groups if grouped else None)
    res = fit(ds, tr, va, cfg, out, resume=resume, on_epoch=on_epoch, on_step=on_step)
    if dist.is_initialized() and dist.get_rank() != 0:
        return {}
    ck = load_checkpoint(res.checkpoint)
    ds.read_as(ck.spec)
    m, ms = None, None
    if len(test_idx):
        t = time.perf_counter()
        loader = make_loader(ds, test_idx, 64, shuffle=False, max_len=cfg.max_len)
        probs, labels = predict(ck.model, loader)
        ms = (time.perf_counter() - t) * 1000 / len(test_idx)
        m = classification_metrics(labels, probs, list(ds.classes))
    summary = {
        "test": m,
        "split": "no holdout" if m is None else "group-disjoint holdout" if grouped else "stratified holdout",
        "test_size": test_size,
        "n_train": len(tr),
        "n_val": len(va),
        "n_test": len(test_idx),
        "best_epoch": res.best_epoch,
        "train_seconds": res.train_seconds,
        "infer_ms_per_sample": ms,
        "params": learned_numbers(ck.model),
        "config": asdict(cfg),
        # data-parallel processes, each taking batch_size rows a step (the learning rate is not scaled)
        "processes": dist.get_world_size() if dist.is_initialized() else 1,
        "data": str(getattr(ds, "path", "")),
        "manifest_hash": ds.manifest_hash,
        "data_hash": getattr(ds, "data_hash", None),
        "command": command,
        "recipe": recipe,
    }
    with atomic_writer(out / "metrics.json") as f:
        f.write(json.dumps(summary, indent=2).encode())
    with atomic_writer(out / "split.json") as f:
        ids = list(ds.ids)
        split = {
            k: [ids[i] for i in v] for k, v in (("train_ids", tr), ("val_ids", va), ("test_ids", test_idx))
        }
        f.write(json.dumps(split).encode())
    if len(va):  # a model fitted in one call has no validation rows and no training curves
        plot_history(
            res.history, out / "curves.png", f"{cfg.model} on {Path(str(getattr(ds, 'path', ''))).name}"
        )
    if m is not None:
        plot_confusion(
            m["confusion_matrix"], list(ds.classes), out / "confusion.png", f"{cfg.model}: held-out test"
        )
    return summary


def split_ids(checkpoint: Path) -> set[str]:
    """The ids a ``train`` run trained and validated on, from the ``split.json`` beside its checkpoint
    (empty where there is none): a run's checkpoint has no card to list them."""
    try:
        split = json.loads((Path(checkpoint).parent / "split.json").read_text())
    except (OSError, ValueError):
        return set()
    if not isinstance(split, dict):
        return set()
    return {str(i) for key in ("train_ids", "val_ids") for i in split.get(key) or []}
