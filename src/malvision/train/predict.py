"""Scores of a model over a loader, in the loader's index order."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from malvision.calibration import softmax

__all__ = ["predict", "predict_logits"]


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
