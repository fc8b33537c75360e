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
from torch.utils.data import DataLoader, Dataset, Sampler
from torch.utils.data.distributed import DistributedSampler

from malvision.calibration import softmax
from malvision.checkpoint import load_checkpoint, save_checkpoint
from malvision.convert.sequence import pad_batch
from malvision.convert.spec import ConvertSpec
from malvision.errors import MalvisionError
from malvision.evaluate.metrics import classification_metrics
from malvision.io import atomic_writer
from malvision.models import create_model, model_info

__all__ = [
    "TrainConfig", "TrainResult", "seed_everything", "get_lr", "fit", "fitted_in_one_call", "train_val_rows",
    "predict", "predict_logits", "make_loader",
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


class _Subset(Dataset):
    def __init__(self, ds: Any, indices: Sequence[int], max_len: int | None) -> None:
        self.ds, self.indices, self.max_len = ds, np.asarray(indices), max_len

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        x, y = self.ds[int(self.indices[i])]
        if x.ndim == 1 and self.max_len is not None:
            x = x[: self.max_len]
        return x, y


def collate(batch: list[tuple[np.ndarray, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Images -> (B, 1, S, S) float in [0, 1]; feature vectors -> (B, F) float; sequences -> (B, L)
    int64 padded with 0 to the longest."""
    xs, ys = zip(*batch, strict=True)
    y = torch.as_tensor(ys, dtype=torch.long)
    if xs[0].dtype == np.float32:
        x = torch.from_numpy(np.stack(xs))
    elif xs[0].ndim == 2:
        x = torch.from_numpy(np.stack(xs)).float().div_(255.0).unsqueeze(1)
    else:
        x = torch.from_numpy(pad_batch(list(xs)))
    return x, y


class SizeBucketSampler(Sampler[list[int]]):
    """Batches of similar-length sequences (less padding), batch order shuffled each epoch."""

    def __init__(self, lengths: np.ndarray, batch_size: int, seed: int) -> None:
        self.lengths, self.batch_size, self.seed, self.epoch = lengths, batch_size, seed, 0

    def __iter__(self):
        rng = np.random.default_rng(self.seed + self.epoch)
        self.epoch += 1
        noisy = self.lengths * rng.uniform(0.9, 1.1, len(self.lengths))
        order = np.argsort(noisy, kind="stable")
        batches = [order[i : i + self.batch_size].tolist() for i in range(0, len(order), self.batch_size)]
        rng.shuffle(batches)
        yield from batches

    def __len__(self) -> int:
        return math.ceil(len(self.lengths) / self.batch_size)


def make_loader(
    ds: Any,
    indices: Sequence[int],
    batch_size: int,
    *,
    shuffle: bool,
    seed: int = 0,
    max_len: int | None = None,
    distributed: bool = False,
) -> DataLoader:
    """A loader over ``indices`` of a cached dataset; sequences are batched by length when shuffling."""
    sub = _Subset(ds, indices, max_len)
    g = torch.Generator()
    g.manual_seed(seed)
    if distributed:
        sampler = DistributedSampler(sub, shuffle=shuffle, seed=seed, drop_last=False)
        return DataLoader(sub, batch_size=batch_size, sampler=sampler, collate_fn=collate)
    lengths = getattr(ds, "lengths", None)
    if lengths is not None and ds.spec.kind not in ("image", "features"):
        lens = np.asarray(lengths)[np.asarray(indices)]
        if max_len is not None:
            lens = np.minimum(lens, max_len)
        if shuffle:
            return DataLoader(
                sub, batch_sampler=SizeBucketSampler(lens, batch_size, seed), collate_fn=collate
            )
        order = np.argsort(lens, kind="stable")  # evaluation: sorted, then restored by the caller
        sub.indices = sub.indices[order]
        loader = DataLoader(sub, batch_size=batch_size, shuffle=False, collate_fn=collate)
        loader.restore_order = np.argsort(order, kind="stable")  # type: ignore[attr-defined]
        return loader
    return DataLoader(sub, batch_size=batch_size, shuffle=shuffle, generator=g, collate_fn=collate)


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

    Writes ``best.pt`` (model), ``last.pt`` (model + optimizer, for ``resume``), ``history.csv`` into
    ``out_dir``. Stops early after ``cfg.patience`` epochs without a better validation macro-F1.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    distributed, rank, world = _dist_info()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)
    spec: ConvertSpec = ds.spec
    in_kind = spec.kind
    vocab_size = None
    if in_kind == "opcodes":
        vocab = ds.fit_vocab(train_idx, max_size=cfg.vocab_size)
        spec = ConvertSpec(kind="opcodes", max_len=cfg.max_len or spec.max_len, vocab=tuple(vocab.tokens))
        vocab_size = len(vocab)
    elif in_kind == "bytes":
        vocab_size = 257
        if cfg.max_len:
            spec = ConvertSpec(kind="bytes", max_len=min(cfg.max_len, spec.max_len))
    n_classes = len(ds.classes)
    model = create_model(
        cfg.model, in_kind=in_kind, n_classes=n_classes, vocab_size=vocab_size, **cfg.model_kwargs
    )
    meta = dict(
        model_name=cfg.model,
        model_kwargs=cfg.model_kwargs,
        in_kind=in_kind,
        n_classes=n_classes,
        vocab_size=vocab_size,
        spec=spec.to_dict(),
        classes=list(ds.classes),
        seed=cfg.seed,
        manifest_hash=ds.manifest_hash,
    )
    if fitted_in_one_call(cfg.model):
        if distributed:
            raise MalvisionError(
                f"{cfg.model} is fitted in one call, not data-parallel; run it without torchrun"
            )
        return _fit_direct(model, ds, train_idx, val_idx, cfg, out, meta, resume, on_step)
    train_model: nn.Module = model
    if distributed:
        train_model = nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    weights = class_weights(ds.labels[train_idx], n_classes) if cfg.class_weighting else None
    loss_fn = nn.CrossEntropyLoss(weight=weights, label_smoothing=cfg.label_smoothing)
    train_loader = make_loader(
        ds,
        train_idx,
        cfg.batch_size,
        shuffle=True,
        seed=cfg.seed,
        max_len=cfg.max_len,
        distributed=distributed,
    )
    val_loader = make_loader(ds, val_idx, cfg.batch_size * 2, shuffle=False, max_len=cfg.max_len)
    steps_per_epoch = len(train_loader)
    total = steps_per_epoch * cfg.epochs
    start_epoch, step, best_f1, best_epoch, stale = 0, 0, -1.0, -1, 0
    history: list[dict[str, float]] = []
    best_metrics: dict[str, Any] = {}
    last_path, best_path = out / "last.pt", out / "best.pt"
    if resume and last_path.exists():
        ck = _resumable(last_path, ds)
        model.load_state_dict(ck.model.state_dict())
        state = (ck.extra or {}).get("train_state", {})
        if ck.optimizer_state:
            opt.load_state_dict(ck.optimizer_state)
        start_epoch = int(state.get("epoch", -1)) + 1
        step = start_epoch * steps_per_epoch
        best_f1 = float(state.get("best_f1", -1.0))
        best_epoch = int(state.get("best_epoch", -1))
        stale = int(state.get("stale", 0))
        history = list(state.get("history", []))
        best_metrics = dict(state.get("best_metrics", {}))
        torch.manual_seed(cfg.seed + start_epoch)
    t0 = time.perf_counter()
    for epoch in range(start_epoch, cfg.epochs):
        if stale >= cfg.patience:
            break
        if distributed:
            train_loader.sampler.set_epoch(epoch)  # type: ignore[union-attr]
        elif isinstance(train_loader.batch_sampler, SizeBucketSampler):
            train_loader.batch_sampler.epoch = epoch
        train_model.train()
        total_loss, seen = 0.0, 0
        for x, y in train_loader:
            for group in opt.param_groups:
                group["lr"] = get_lr(step, total, cfg.lr, cfg.warmup_frac)
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(train_model(x), y)
            if not torch.isfinite(loss):
                raise MalvisionError(f"training diverged at epoch {epoch} (loss {loss.item()}); lower --lr")
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_norm)
            opt.step()
            total_loss += loss.item() * len(y)
            seen += len(y)
            step += 1
            if on_step is not None and rank == 0:
                on_step(step, total)
        if rank == 0:
            logits, labels = predict_logits(model, val_loader)
            m = classification_metrics(labels, softmax(logits), list(ds.classes))
            row = {
                "epoch": epoch,
                "train_loss": total_loss / max(seen, 1),
                "val_loss": float(
                    nn.functional.cross_entropy(torch.from_numpy(logits), torch.from_numpy(labels))
                ),
                "val_accuracy": m["accuracy"],
                "val_macro_f1": m["macro_f1"],
                "lr": opt.param_groups[0]["lr"],
                "seconds": time.perf_counter() - t0,
            }
            history.append(row)
            if m["macro_f1"] > best_f1:
                best_f1, best_epoch, stale, best_metrics = m["macro_f1"], epoch, 0, m
                save_checkpoint(best_path, model, metrics=m, **meta)
            else:
                stale += 1
            train_state = dict(
                epoch=epoch,
                best_f1=best_f1,
                best_epoch=best_epoch,
                stale=stale,
                history=history,
                best_metrics=best_metrics,
            )
            save_checkpoint(
                last_path, model, optimizer=opt, epoch=epoch, extra={"train_state": train_state}, **meta
            )
            _write_history(out / "history.csv", history)
            if on_epoch is not None:
                on_epoch(row)
        if distributed:
            flag = torch.tensor([stale], dtype=torch.long)
            dist.broadcast(flag, 0)
            stale = int(flag.item())
    seconds = time.perf_counter() - t0
    if distributed:
        dist.barrier()
    with open(out / "config.json", "w") as f:
        json.dump(asdict(cfg), f, indent=2)
    return TrainResult(best_path, best_epoch, best_metrics, history, seconds)


def fitted_in_one_call(model: str) -> bool:
    """Whether registered ``model`` is fitted in one call (trees: ``fit_arrays``), not by epochs; such
    a model has no epoch to pick, so it needs no validation rows."""
    return hasattr(model_info(model).builder, "fit_arrays")


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
    """Fit a model that learns in one call (``fit_arrays``: trees), not by gradient steps.

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
        model.fit_arrays(x, y, weights, cfg.seed, on_step)  # type: ignore[operator]
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
        with open(out / "config.json", "w") as f:
            json.dump(asdict(cfg), f, indent=2)
        metrics = load_checkpoint(best_path).metrics or {}
    history = [{"epoch": 0.0, "val_macro_f1": float(metrics.get("macro_f1", 0.0))}]
    return TrainResult(best_path, 0, dict(metrics), history, time.perf_counter() - t0)


def _write_history(path: Path, history: list[dict[str, float]]) -> None:
    keys = list(history[0])
    with atomic_writer(path) as f:
        f.write((",".join(keys) + "\n").encode())
        for row in history:
            f.write((",".join(f"{row[k]:.6g}" for k in keys) + "\n").encode())


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
) -> dict[str, Any]:
    """Hold out a seeded test split (group-disjoint if ``grouped``), train, test, write plots and metrics.

    Writes into ``out_dir``: ``best.pt``, ``metrics.json`` (test metrics + run facts), ``history.csv``,
    ``curves.png``, ``confusion.png`` and ``split.json`` (the test ids, so no one tests on training data).
    """
    from malvision.checkpoint import load_checkpoint
    from malvision.data.splits import group_holdout, stratified_holdout
    from malvision.evaluate.plots import plot_confusion, plot_history

    out = Path(out_dir)
    if grouped:
        train_idx, test_idx = group_holdout(ds.labels, ds.groups, test_size, random_state=cfg.seed)
    else:
        train_idx, test_idx = stratified_holdout(ds.labels, test_size, random_state=cfg.seed)
    tr, va = train_val_rows(cfg, train_idx, ds.labels, ds.groups if grouped else None)
    res = fit(ds, tr, va, cfg, out, resume=resume, on_epoch=on_epoch, on_step=on_step)
    if dist.is_initialized() and dist.get_rank() != 0:
        return {}
    ck = load_checkpoint(res.checkpoint)
    if ds.spec.kind == "opcodes":
        from malvision.convert.sequence import Vocabulary

        ds.set_vocab(Vocabulary(ck.spec["vocab"]))
    t = time.perf_counter()
    probs, labels = predict(ck.model, make_loader(ds, test_idx, 64, shuffle=False, max_len=cfg.max_len))
    ms = (time.perf_counter() - t) * 1000 / max(len(test_idx), 1)
    m = classification_metrics(labels, probs, list(ds.classes))
    summary = {
        "test": m,
        "split": "group-disjoint holdout" if grouped else "stratified holdout",
        "test_size": test_size,
        "n_train": len(tr),
        "n_val": len(va),
        "n_test": len(test_idx),
        "best_epoch": res.best_epoch,
        "train_seconds": res.train_seconds,
        "infer_ms_per_sample": ms,
        "params": sum(p.numel() for p in ck.model.parameters()),
        "config": asdict(cfg),
        "data": str(getattr(ds, "path", "")),
        "manifest_hash": ds.manifest_hash,
        "command": command,
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
    plot_confusion(
        m["confusion_matrix"], list(ds.classes), out / "confusion.png", f"{cfg.model}: held-out test"
    )
    return summary
