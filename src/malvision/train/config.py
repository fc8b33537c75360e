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

__all__ = ["TrainConfig", "TrainResult", "seed_everything", "get_lr", "class_weights"]


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

    def __post_init__(self) -> None:
        if self.keep not in ("best", "last"):
            raise MalvisionError(f"keep must be best or last, got {self.keep!r}")

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
