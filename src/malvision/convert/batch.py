"""Model inputs of one kind stacked into the batch a model reads (numpy; training wraps it in torch)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from malvision.convert.sequence import pad_batch
from malvision.errors import ConversionError

__all__ = ["batch"]


def batch(xs: Sequence[np.ndarray]) -> np.ndarray:
    """Images -> (B, 1, S, S) float32 in [0, 1], views (C, S, S) -> (B, C, S, S) likewise; feature
    vectors -> (B, F) float32; id sequences -> (B, L) int64 padded with 0 to the longest."""
    if not len(xs):
        raise ConversionError("cannot batch no inputs")
    if xs[0].dtype == np.float32:
        return np.stack(xs)
    if xs[0].ndim in (2, 3):
        stacked = np.stack(xs).astype(np.float32) / np.float32(255.0)
        return stacked[:, None] if xs[0].ndim == 2 else stacked
    return pad_batch(list(xs))
