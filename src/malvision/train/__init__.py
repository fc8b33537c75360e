"""Training: data, model, optimizer, loop, validation, save on best macro-F1. No argument parsing.

``fit`` builds the model for a cache's input kind and either runs the gradient loop (``loop``) or, for
a fitted model, learns in one call; ``config`` holds the settings, seeding and schedule, ``predict``
the scores over a loader. Runs as one process or data-parallel under ``torchrun``.
"""

from __future__ import annotations

from malvision.train.config import (
    TrainConfig,
    TrainResult,
    class_weights,
    get_lr,
    sample_weights,
    seed_everything,
)
from malvision.train.fit import check_trainable, fit, fitted_in_one_call, train_val_rows
from malvision.train.predict import predict, predict_logits

__all__ = [
    "TrainConfig", "TrainResult", "check_trainable", "class_weights", "fit", "fitted_in_one_call", "get_lr", "predict",
    "predict_logits", "sample_weights", "seed_everything", "train_val_rows",
]  # fmt: skip
