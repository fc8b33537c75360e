"""Training: data, model, optimizer, loop, validation, save on best macro-F1. No argument parsing.

Runs as one process or data-parallel under ``torchrun`` (DistributedDataParallel; gloo on CPU, nccl on
GPUs): every rank trains on its shard of each batch order, rank 0 validates and writes the checkpoint.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader

from malvision.calibration import softmax
from malvision.checkpoint import load_checkpoint, save_checkpoint
from malvision.convert.spec import ConvertSpec
from malvision.data.loader import SizeBucketSampler, make_loader
from malvision.errors import MalvisionError
from malvision.evaluate.metrics import classification_metrics
from malvision.io import atomic_writer
from malvision.models import create_model, model_info

__all__ = [
    "TrainConfig", "TrainResult", "seed_everything", "get_lr", "fit", "fitted_in_one_call", "train_val_rows",
    "predict", "predict_logits",
]  # fmt: skip


@dataclass
class TrainConfig:
    """Everything a run needs besides the data; saved as ``config.json`` with the run."""

    model: str = "cnn"
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    epochs: int = 20
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-2
    warmup_frac: float = 0.05
    patience: int = 5
    val_fraction: float = 0.15
    seed: int = 0
    class_weighting: bool = True
    max_len: int | None = None  # crop sequences to their first max_len ids (None: the cache's length)
    vocab_size: int | None = None  # opcodes: cap on the vocabulary built from the training rows
    threads: int | None = None
    clip_norm: float = 1.0
    label_smoothing: float = 0.0


@dataclass
class TrainResult:
    checkpoint: Path
    best_epoch: int
    val_metrics: dict[str, Any]
    history: list[dict[str, float]]
    train_seconds: float


def seed_everything(seed: int) -> torch.Generator:
    """Seed random, numpy and torch; return a torch generator for data loaders."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def get_lr(step: int, total: int, base: float, warmup_frac: float) -> float:
    """Linear warm-up then cosine decay to 5% of ``base``."""
    warmup = max(1, int(total * warmup_frac))
    if step < warmup:
        return base * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return base * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))


@torch.no_grad()
def predict_logits(model: nn.Module, loader: DataLoader) -> tuple[np.ndarray, np.ndarray]:
    """(logits (N, C) in float64, labels (N,)) for a loader, in the loader's index order. Log-odds and
    temperatures come from these directly: a probability near 1 has lost them to rounding."""
    model.eval()
    logits, labels = [], []
    for x, y in loader:
        logits.append(model(x).double().numpy())
        labels.append(y.numpy())
    z, y = np.concatenate(logits), np.concatenate(labels)
    restore = getattr(loader, "restore_order", None)
    if restore is not None:
        z, y = z[restore], y[restore]
    return z, y


def predict(model: nn.Module, loader: DataLoader) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities (N, C), labels (N,)) for a loader, in the loader's index order. The softmax runs
    in float64, as the scanner's does: in float32 every logit gap over ~17 rounds to 1.0, and such
    ties at the top would set a detector's threshold on a coarser scale than the scores it judges."""
    logits, y = predict_logits(model, loader)
    return softmax(logits), y


def class_weights(labels: np.ndarray, n_classes: int) -> torch.Tensor:
    """Inverse-frequency weights normalised to mean 1 (classes absent from training get weight 1)."""
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    w = np.where(counts > 0, counts.sum() / np.maximum(counts, 1) / n_classes, 1.0)
    return torch.tensor(w / w.mean(), dtype=torch.float32)


def _dist_info() -> tuple[bool, int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
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
    validation macro-F1. A fitted model (trees, linear) learns from every training row in one call.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    distributed, rank, _ = _dist_info()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)
    model, meta = _build(ds, train_idx, cfg)
    if fitted_in_one_call(cfg.model):
        if distributed:
            raise MalvisionError(
                f"{cfg.model} is fitted in one call, not data-parallel; run it without torchrun"
            )
        return _fit_direct(model, ds, train_idx, val_idx, cfg, out, meta, resume, on_step)
    run = _GradientRun(model, ds, cfg, out, meta, distributed, rank)
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
    t0 = time.perf_counter()
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
    _write_config(out, cfg)
    st = run.state
    return TrainResult(run.best_path, st.best_epoch, st.best_metrics, st.history, seconds)


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
    model = create_model(
        cfg.model, in_kind=spec.kind, n_classes=n_classes, vocab_size=vocab_size, **cfg.model_kwargs
    )
    meta = dict(
        model_name=cfg.model,
        model_kwargs=cfg.model_kwargs,
        in_kind=spec.kind,
        n_classes=n_classes,
        vocab_size=vocab_size,
        spec=spec.to_dict(),
        classes=list(ds.classes),
        seed=cfg.seed,
        manifest_hash=ds.manifest_hash,
    )
    return model, meta


@dataclass
class _State:
    """Where a gradient run stands; saved in ``last.pt`` so a run resumes where it stopped."""

    next_epoch: int = 0
    best_f1: float = -1.0
    best_epoch: int = -1
    stale: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    best_metrics: dict[str, Any] = field(default_factory=dict)


class _GradientRun:
    """One gradient-trained fit: optimiser, loaders, the epoch loop's steps and its checkpoints."""

    def __init__(
        self,
        model: nn.Module,
        ds: Any,
        cfg: TrainConfig,
        out: Path,
        meta: dict[str, Any],
        distributed: bool,
        rank: int,
    ) -> None:
        self.model, self.ds, self.cfg, self.meta = model, ds, cfg, meta
        self.distributed, self.rank = distributed, rank
        self.train_model: nn.Module = nn.parallel.DistributedDataParallel(model) if distributed else model
        self.opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.last_path, self.best_path, self.history_path = (
            out / "last.pt",
            out / "best.pt",
            out / "history.csv",
        )
        self.state = _State()
        self.train_loader: DataLoader
        self.val_loader: DataLoader
        self.loss_fn: nn.Module

    @property
    def steps_per_epoch(self) -> int:
        return len(self.train_loader)

    def restore(self) -> None:
        """Model, optimiser and loop state from ``last.pt`` (refused if it was trained on other data)."""
        ck = _resumable(self.last_path, self.ds)
        self.model.load_state_dict(ck.model.state_dict())
        saved = (ck.extra or {}).get("train_state", {})
        if ck.optimizer_state:
            self.opt.load_state_dict(ck.optimizer_state)
        self.state = _State(
            next_epoch=int(saved.get("epoch", -1)) + 1,
            best_f1=float(saved.get("best_f1", -1.0)),
            best_epoch=int(saved.get("best_epoch", -1)),
            stale=int(saved.get("stale", 0)),
            history=list(saved.get("history", [])),
            best_metrics=dict(saved.get("best_metrics", {})),
        )
        torch.manual_seed(self.cfg.seed + self.state.next_epoch)

    def train_epoch(self, epoch: int, on_step: Callable[[int, int], None] | None) -> float:
        """One pass over the training rows; the mean training loss."""
        cfg, loader = self.cfg, self.train_loader
        if self.distributed:
            loader.sampler.set_epoch(epoch)  # type: ignore[union-attr]
        elif isinstance(loader.batch_sampler, SizeBucketSampler):
            loader.batch_sampler.epoch = epoch
        total = self.steps_per_epoch * cfg.epochs
        step = epoch * self.steps_per_epoch
        self.train_model.train()
        total_loss, seen = 0.0, 0
        for x, y in loader:
            for group in self.opt.param_groups:
                group["lr"] = get_lr(step, total, cfg.lr, cfg.warmup_frac)
            self.opt.zero_grad(set_to_none=True)
            loss = self.loss_fn(self.train_model(x), y)
            if not torch.isfinite(loss):
                raise MalvisionError(f"training diverged at epoch {epoch} (loss {loss.item()}); lower --lr")
            loss.backward()
            nn.utils.clip_grad_norm_(self.model.parameters(), cfg.clip_norm)
            self.opt.step()
            total_loss += loss.item() * len(y)
            seen += len(y)
            step += 1
            if on_step is not None and self.rank == 0:
                on_step(step, total)
        return total_loss / max(seen, 1)

    def validate_and_save(self, epoch: int, train_loss: float, seconds: float) -> dict[str, float]:
        """Score the validation rows; save ``best.pt`` on a better macro-F1, always ``last.pt``."""
        st = self.state
        logits, labels = predict_logits(self.model, self.val_loader)
        m = classification_metrics(labels, softmax(logits), list(self.ds.classes))
        row = {
            "epoch": epoch,
            "train_loss": train_loss,
            "val_loss": float(
                nn.functional.cross_entropy(torch.from_numpy(logits), torch.from_numpy(labels))
            ),
            "val_accuracy": m["accuracy"],
            "val_macro_f1": m["macro_f1"],
            "lr": self.opt.param_groups[0]["lr"],
            "seconds": seconds,
        }
        st.history.append(row)
        if m["macro_f1"] > st.best_f1:
            st.best_f1, st.best_epoch, st.stale, st.best_metrics = m["macro_f1"], epoch, 0, m
            save_checkpoint(self.best_path, self.model, metrics=m, **self.meta)
        else:
            st.stale += 1
        st.next_epoch = epoch + 1
        train_state = dict(
            epoch=epoch,
            best_f1=st.best_f1,
            best_epoch=st.best_epoch,
            stale=st.stale,
            history=st.history,
            best_metrics=st.best_metrics,
        )
        save_checkpoint(
            self.last_path,
            self.model,
            optimizer=self.opt,
            epoch=epoch,
            extra={"train_state": train_state},
            **self.meta,
        )
        _write_history(self.history_path, st.history)
        return row

    def share_stale(self) -> None:
        """Under torchrun, every rank stops when rank 0 (which validates) says so."""
        if self.distributed:
            flag = torch.tensor([self.state.stale], dtype=torch.long)
            dist.broadcast(flag, 0)
            self.state.stale = int(flag.item())


def _write_config(out: Path, cfg: TrainConfig) -> None:
    with atomic_writer(out / "config.json") as f:
        f.write(json.dumps(asdict(cfg), indent=2).encode())


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


def _resumable(path: Path, ds: Any) -> Any:
    """The checkpoint a run resumes from, refused in one line if it was trained on other data."""
    ck = load_checkpoint(path)
    if ck.manifest_hash and ds.manifest_hash and ck.manifest_hash != ds.manifest_hash:
        raise MalvisionError(f"{path} was trained on other data; pick another run folder or delete it")
    return ck


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
        metrics = _resumable(best_path, ds).metrics or {}
    else:
        x = np.stack([ds[int(i)][0] for i in train_idx]).astype(np.float32)
        y = np.asarray(ds.labels)[train_idx]
        weights = class_weights(y, len(ds.classes)).numpy()[y] if cfg.class_weighting else None
        model.fit(x, y, weights, cfg.seed, on_step)  # type: ignore[operator]
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
        _write_history(out / "history.csv", [row])
        _write_config(out, cfg)
        metrics = load_checkpoint(best_path).metrics or {}
    history = [{"epoch": 0.0, "val_macro_f1": float(metrics.get("macro_f1", 0.0))}]
    return TrainResult(best_path, 0, dict(metrics), history, time.perf_counter() - t0)


def _write_history(path: Path, history: list[dict[str, float]]) -> None:
    keys = list(history[0])
    with atomic_writer(path) as f:
        f.write((",".join(keys) + "\n").encode())
        for row in history:
            f.write((",".join(f"{row[k]:.6g}" for k in keys) + "\n").encode())
