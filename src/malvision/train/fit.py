"""``fit``: one model trained on rows of a cache, by the gradient loop (``loop``) or in one call (a
fitted model). Runs as one process or data-parallel under ``torchrun`` (DistributedDataParallel; gloo on
CPU, nccl on GPUs): every rank trains on its shard of each batch order, rank 0 validates and writes the
checkpoint.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from malvision.checkpoint import load_checkpoint, save_checkpoint
from malvision.convert.spec import ConvertSpec
from malvision.data.loader import make_loader
from malvision.errors import MalvisionError
from malvision.evaluate.metrics import classification_metrics
from malvision.io import make_dirs
from malvision.models import create_model, input_kwargs, model_info
from malvision.models.ensemble import Ensemble
from malvision.train.config import TrainConfig, TrainResult, class_weights, sample_weights, seed_everything
from malvision.train.loop import (
    RESUME_FREE,
    GradientRun,
    check_same_settings,
    resumable,
    write_config,
    write_data_stamp,
    write_history,
)
from malvision.train.predict import predict

__all__ = ["check_trainable", "fit", "fitted_in_one_call", "train_val_rows"]


def _world_size() -> int:
    """How many processes torchrun started (1 without it)."""
    return int(os.environ.get("WORLD_SIZE") or 1)


def _dist_info() -> tuple[bool, int, int]:
    if _world_size() > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
    if dist.is_initialized():
        return True, dist.get_rank(), dist.get_world_size()
    return False, 0, 1


def fit(
    ds: Any,
    train_idx: np.ndarray,
    val_idx: np.ndarray,
    cfg: TrainConfig,
    out_dir: Path | str,
    *,
    resume: bool = False,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
    on_step: Callable[[int, int], None] | None = None,
) -> TrainResult:
    """Train ``cfg.model`` on ``train_idx`` of a cached dataset; keep the best epoch by val macro-F1.

    Writes ``best.pt`` (model), ``last.pt`` (model + optimizer, for ``resume``), ``history.csv`` and
    ``config.json`` into ``out_dir``. Stops early after ``cfg.patience`` epochs without a better
    validation macro-F1; with ``cfg.keep == "last"`` it runs every epoch and keeps the last (fold models
    trained alike score on one scale). A fitted model (trees, linear) learns from every training row in
    one call.
    """
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)
    model, meta = _build(ds, train_idx, cfg)  # an unknown model, kind or argument stops here
    _check_row_weights(cfg)
    if fitted_in_one_call(cfg.model) and _world_size() > 1:
        raise MalvisionError(f"{cfg.model} is fitted in one call, not data-parallel; run it without torchrun")
    out = make_dirs(out_dir)  # only once the model is built: a refused run leaves no folder
    if resume:  # what it continues must be the same run, on the same cache
        check_same_settings(out, cfg, RESUME_FREE, ds)
    # Processes join only now: a refusal above is every process's alike, and rank 0 alone says it
    distributed, rank, _ = _dist_info()
    if rank == 0:  # first, so an interrupted run's folder says what it was
        write_config(out, cfg)
        write_data_stamp(out, ds)
    if fitted_in_one_call(cfg.model):
        return _fit_direct(model, ds, train_idx, val_idx, cfg, out, meta, resume, on_step)
    if isinstance(model, Ensemble):
        return _fit_members(model, ds, train_idx, val_idx, cfg, out, meta, resume, on_epoch, on_step)
    run = GradientRun(model, ds, cfg, out, meta, distributed, rank)
    run.train_loader = make_loader(
        ds,
        train_idx,
        cfg.batch_size,
        shuffle=True,
        seed=cfg.seed,
        max_len=cfg.max_len,
        distributed=distributed,
    )
    run.val_loader = make_loader(ds, val_idx, cfg.batch_size * 2, shuffle=False, max_len=cfg.max_len)
    run.loss_fn = nn.CrossEntropyLoss(
        weight=class_weights(ds.labels[train_idx], len(ds.classes)) if cfg.class_weighting else None,
        label_smoothing=cfg.label_smoothing,
    )
    if resume and run.last_path.exists():
        run.restore()
    done = run.state.history[-1].get("seconds", 0.0) if run.state.history else 0.0  # before a resume
    t0 = time.perf_counter() - done
    for epoch in range(run.state.next_epoch, cfg.epochs):
        if run.state.stale >= cfg.patience:
            break
        loss = run.train_epoch(epoch, on_step)
        if rank == 0:
            row = run.validate_and_save(epoch, loss, time.perf_counter() - t0)
            if on_epoch is not None:
                on_epoch(row)
        run.share_stale()
    seconds = time.perf_counter() - t0
    if distributed:
        dist.barrier()
    st = run.state
    return TrainResult(run.best_path, st.best_epoch, st.best_metrics, st.history, seconds)


def _fit_members(
    model: Ensemble,
    ds: Any,
    train_idx: np.ndarray,
    val_idx: np.ndarray,
    cfg: TrainConfig,
    out: Path,
    meta: dict[str, Any],
    resume: bool,
    on_epoch: Callable[[dict[str, float]], None] | None,
    on_step: Callable[[int, int], None] | None,
) -> TrainResult:
    """Train each member of ``model`` as a run of its own (``out/member<i>``, seed ``cfg.seed + i``: its own
    weights, batch order and dropout; the same rows), then save the ensemble of the weights each kept as
    ``best.pt``. ``history.csv`` holds every member's epochs; the result's history is the first member's."""
    t0 = time.perf_counter()
    alone = {k: v for k, v in cfg.model_kwargs.items() if k != "members"}
    runs = [
        fit(ds, train_idx, val_idx, replace(cfg, model_kwargs=alone, seed=cfg.seed + i), out / f"member{i}",
            resume=resume, on_epoch=on_epoch, on_step=on_step)
        for i in range(len(model.members))
    ]  # fmt: skip
    distributed, rank, _ = _dist_info()
    best_path, m = out / "best.pt", {}
    if rank == 0:
        for member, run in zip(model.members, runs, strict=True):
            member.load_state_dict(load_checkpoint(run.checkpoint).model.state_dict())
        if len(val_idx):
            probs, labels = predict(model, make_loader(ds, val_idx, cfg.batch_size * 2, shuffle=False))
            m = classification_metrics(labels, probs, list(ds.classes))
        save_checkpoint(best_path, model, metrics=m, **meta)
        write_history(
            out / "history.csv", [{"member": i} | row for i, r in enumerate(runs) for row in r.history]
        )
    if distributed:
        dist.barrier()
    return TrainResult(best_path, runs[0].best_epoch, m, runs[0].history, time.perf_counter() - t0)


def _build(ds: Any, train_idx: np.ndarray, cfg: TrainConfig) -> tuple[nn.Module, dict[str, Any]]:
    """The model for the dataset's input kind, and the metadata its checkpoints carry. An opcode
    cache gets its vocabulary from the training rows here."""
    spec: ConvertSpec = ds.spec
    vocab_size = None
    if spec.kind == "opcodes":
        vocab = ds.fit_vocab(train_idx, max_size=cfg.vocab_size)
        spec = ConvertSpec(kind="opcodes", max_len=cfg.max_len or spec.max_len, vocab=tuple(vocab.tokens))
        vocab_size = len(vocab)
    elif spec.kind == "bytes":
        vocab_size = 257
        if cfg.max_len:
            spec = ConvertSpec(kind="bytes", max_len=min(cfg.max_len, spec.max_len))
    n_classes = len(ds.classes)
    kwargs = input_kwargs(cfg.model, spec, cfg.model_kwargs)
    model = create_model(cfg.model, in_kind=spec.kind, n_classes=n_classes, vocab_size=vocab_size, **kwargs)
    meta = dict(
        model_name=cfg.model,
        model_kwargs=kwargs,
        in_kind=spec.kind,
        n_classes=n_classes,
        vocab_size=vocab_size,
        spec=spec.to_dict(),
        classes=list(ds.classes),
        seed=cfg.seed,
        manifest_hash=ds.manifest_hash,
    )
    return model, meta


def check_trainable(ds: Any, cfg: TrainConfig) -> None:
    """Refuse what ``fit`` would refuse (an unknown model, an input kind it does not take, an argument it
    lacks, row weights for a model trained by gradient steps), for a caller that writes before it fits
    (``build_detector``'s run.json)."""
    kind = ds.spec.kind
    vocab_size = {"opcodes": len(getattr(ds, "codebook", ())) + 2, "bytes": 257}.get(kind)
    kwargs = input_kwargs(cfg.model, ds.spec, cfg.model_kwargs)
    create_model(cfg.model, in_kind=kind, n_classes=len(ds.classes), vocab_size=vocab_size, **kwargs)
    _check_row_weights(cfg)


def _check_row_weights(cfg: TrainConfig) -> None:
    """group_power and type_power weigh the rows of one fit; a gradient model has none."""
    if (cfg.group_power or cfg.type_power) and not fitted_in_one_call(cfg.model):
        raise MalvisionError(
            f"group_power and type_power weigh the rows of a model fitted in one call (trees, linear); "
            f"{cfg.model} trains by gradient steps with class weights only"
        )


def fitted_in_one_call(model: str) -> bool:
    """Whether registered ``model`` is fitted in one call (a ``FittedModel``: trees, linear), not by
    epochs; such a model has no epoch to pick, so it needs no validation rows."""
    return model_info(model).fitted


def train_val_rows(
    cfg: TrainConfig, idx: Sequence[int] | np.ndarray, labels: np.ndarray, groups: Any = None
) -> tuple[np.ndarray, np.ndarray]:
    """Training and validation rows out of ``idx``: a seeded stratified split (group-disjoint given
    ``groups``), or every row and none for a model fitted in one call, which has no epoch to pick."""
    from malvision.data.splits import train_val_split

    idx = np.asarray(idx, dtype=np.int64)
    if fitted_in_one_call(cfg.model):
        return idx, idx[:0]
    return train_val_split(idx, labels, groups, val_size=cfg.val_fraction, random_state=cfg.seed)


def _fit_direct(
    model: nn.Module,
    ds: Any,
    train_idx: np.ndarray,
    val_idx: np.ndarray,
    cfg: TrainConfig,
    out: Path,
    meta: dict[str, Any],
    resume: bool,
    on_step: Callable[[int, int], None] | None = None,
) -> TrainResult:
    """Fit a model that learns in one call (a ``FittedModel``), not by gradient steps.

    Writes ``best.pt`` and a one-row ``history.csv``; ``resume`` keeps a ``best.pt`` already there.
    ``val_idx`` may be empty (there is nothing to select): there are then no validation metrics.
    ``on_step(done, total)`` follows the fit (for trees, one step per tree).
    """
    best_path = out / "best.pt"
    t0 = time.perf_counter()
    if resume and best_path.exists():
        metrics = resumable(best_path, ds).metrics or {}
    else:
        rows = [ds[int(i)][0] for i in train_idx]
        if ds.spec.fixed_shape is None:  # sequences, whole or cut at max_len, for an n-gram model
            x: Any = [r[: cfg.max_len] for r in rows] if cfg.max_len else rows
        else:
            x = np.stack(rows).astype(np.float32)
        y = np.asarray(ds.labels)[train_idx]
        groups = [ds.groups[int(i)] for i in train_idx]
        weights = sample_weights(
            y,
            groups,
            list(ds.classes),
            class_weighting=cfg.class_weighting,
            group_power=cfg.group_power,
            group_classes=cfg.group_classes,
            types=[ds.records[int(i)].pe_type for i in train_idx] if cfg.type_power else None,
            type_power=cfg.type_power,
        )
        model.fit(x, y, weights, cfg.seed, on_step, groups=groups)  # type: ignore[operator]
        m: dict[str, Any] = {}  # no validation rows, no metrics
        if len(val_idx):
            probs, labels = predict(model, make_loader(ds, val_idx, cfg.batch_size * 2, shuffle=False))
            m = classification_metrics(labels, probs, list(ds.classes))
        save_checkpoint(best_path, model, metrics=m, **meta)
        row = {
            "epoch": 0,
            "val_accuracy": m.get("accuracy", float("nan")),
            "val_macro_f1": m.get("macro_f1", float("nan")),
            "seconds": time.perf_counter() - t0,
        }
        write_history(out / "history.csv", [row])
        metrics = load_checkpoint(best_path).metrics or {}
    history = [{"epoch": 0.0, "val_macro_f1": float(metrics.get("macro_f1", 0.0))}]
    return TrainResult(best_path, 0, dict(metrics), history, time.perf_counter() - t0)
