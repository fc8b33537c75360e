"""A run's settings and result, seeding, the learning-rate schedule and class weights."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from malvision.errors import MalvisionError
from malvision.pe import type_kind

__all__ = ["TrainConfig", "TrainResult", "seed_everything", "get_lr", "class_weights", "sample_weights"]


@dataclass
class TrainConfig:
    """Everything a run needs besides the data; saved as ``config.json`` with the run."""

    model: str = "cnn"
    name: str | None = None  # a leaderboard row's label (default: the model's name), for ablations
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
    keep: str = "best"  # which epoch a fit keeps: "best" by validation macro-F1 (early stopping), or "last"
    # A model fitted in one call (trees): a file of a group (project, family) of n training files weighs
    # n ** -group_power within its class, each class keeping its total weight (0: files weigh alike).
    group_power: float = 0.0
    group_classes: str = "benign"  # the classes group_power applies to, comma-separated, or "all"
    # A model fitted in one call: a benign file of a PE type (GUI, console, DLL, other) weighs
    # (malware share of the type / benign share of the type) ** type_power, the class keeping its total
    # weight (0: files weigh alike; 1: the benign types weigh as the malware's do).
    type_power: float = 0.0

    def __post_init__(self) -> None:
        at_least_1 = dict(epochs=self.epochs, batch_size=self.batch_size, patience=self.patience)
        at_least_1 |= {k: v for k, v in (("max_len", self.max_len), ("vocab_size", self.vocab_size),
                                          ("threads", self.threads)) if v is not None}  # fmt: skip
        for name, value in at_least_1.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise MalvisionError(f"{name} must be a whole number of at least 1, got {value!r}")
        if not self.lr > 0:  # also refuses NaN
            raise MalvisionError(f"lr must be positive, got {self.lr}")
        if not 0 <= self.label_smoothing < 1:
            raise MalvisionError(f"label_smoothing must be from 0 to below 1, got {self.label_smoothing}")
        if not 0 <= self.val_fraction < 1:
            raise MalvisionError(f"val_fraction must be from 0 to below 1, got {self.val_fraction}")
        if not 0 <= self.warmup_frac <= 1:
            raise MalvisionError(f"warmup_frac must be from 0 to 1, got {self.warmup_frac}")
        if not (self.weight_decay >= 0 and self.clip_norm > 0):
            raise MalvisionError(
                f"weight_decay must be at least 0 and clip_norm positive, got {self.weight_decay}, {self.clip_norm}"
            )
        if self.keep not in ("best", "last"):
            raise MalvisionError(f"keep must be best or last, got {self.keep!r}")
        if not 0 <= self.group_power <= 1:
            raise MalvisionError(f"group_power must be from 0 to 1, got {self.group_power}")
        if not 0 <= self.type_power <= 1:
            raise MalvisionError(f"type_power must be from 0 to 1, got {self.type_power}")

    @property
    def label(self) -> str:
        """The row this run fills in a leaderboard: ``name``, or the model's name."""
        return self.name or self.model


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


def class_weights(labels: np.ndarray, n_classes: int) -> torch.Tensor:
    """Inverse-frequency weights normalised to mean 1 (classes absent from training get weight 1)."""
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    w = np.where(counts > 0, counts.sum() / np.maximum(counts, 1) / n_classes, 1.0)
    return torch.tensor(w / w.mean(), dtype=torch.float32)


def sample_weights(
    labels: np.ndarray,
    groups: Any,
    classes: list[str],
    *,
    class_weighting: bool = True,
    group_power: float = 0.0,
    group_classes: str = "benign",
    types: list[str | None] | None = None,
    type_power: float = 0.0,
) -> np.ndarray | None:
    """Per-row training weights: the class weights (``class_weights``, or 1 without class weighting),
    and with ``group_power`` p > 0, within each class named in ``group_classes`` ("all": every class) a
    row of a group of n rows weighs n ** -p, scaled so the class keeps its total weight (p = 1: every
    group of the class weighs the same). None groups are groups of one. None when every row weighs 1.

    With ``type_power`` q > 0 (``types``: each row's PE type, ``32-bit GUI`` and the like), a benign row
    of a type then weighs (malware share / benign share of its type) ** q more, the benign class keeping
    its total weight. With p = q = 0 the result is exactly the class weights, so a default config trains
    as before.
    """
    labels = np.asarray(labels)
    if not class_weighting and group_power == 0 and type_power == 0:
        return None
    if class_weighting:
        base = class_weights(labels, len(classes)).numpy()[labels]
    else:
        base = np.ones(len(labels), dtype=np.float32)
    if type_power:
        base = _type_balanced(base.astype(np.float64), labels, classes, types, type_power)
    if group_power == 0:
        return base.astype(np.float32)
    from malvision.data.splits import group_keys

    names = [c.strip() for c in group_classes.split(",") if c.strip()]
    unknown = [c for c in names if c != "all" and c not in classes]
    if unknown or not names:
        raise MalvisionError(f"group_classes {group_classes!r}: use class names out of {classes}, or all")
    keys = group_keys(groups, len(labels))
    w = base.astype(np.float64)
    for k, c in enumerate(classes):
        rows = labels == k
        if not rows.any() or ("all" not in names and c not in names):
            continue
        _, inverse, counts = np.unique(keys[rows], return_inverse=True, return_counts=True)
        g = counts[inverse].astype(np.float64) ** -group_power
        w[rows] = g * (w[rows].sum() / g.sum())
    return w.astype(np.float32)


def _type_balanced(
    w: np.ndarray, labels: np.ndarray, classes: list[str], types: list[str | None] | None, power: float
) -> np.ndarray:
    """``w`` with each benign row scaled by (malware share / benign share of its PE type) ** power, the
    benign total kept (``sample_weights``' type_power). A type is its kind (``pe.type_kind``), bitness aside."""
    if types is None or "benign" not in classes or "malware" not in classes:
        raise MalvisionError("type_power weighs benign files by PE type: it needs a benign/malware cache")
    kind = np.array([type_kind(t) for t in types])
    ben, mal = labels == classes.index("benign"), labels == classes.index("malware")
    out = w.copy()
    for k in np.unique(kind[ben]):
        rows = ben & (kind == k)
        # a type no malware has counts as one file's share
        share_mal = max((mal & (kind == k)).sum(), 1) / max(mal.sum(), 1)
        out[rows] *= (share_mal / (rows.sum() / ben.sum())) ** power
    out[ben] *= w[ben].sum() / out[ben].sum()
    return out
