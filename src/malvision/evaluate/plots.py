"""PNG plots: confusion matrix, training curves, leaderboard, gradient norms. Never ``show()``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from malvision.io import atomic_writer  # noqa: E402

__all__ = ["plot_confusion", "plot_history", "plot_leaderboard", "plot_gradients", "save_figure"]


def save_figure(fig: Any, path: Path | str) -> Path:
    """Write ``fig`` as a PNG atomically and close it."""
    p = Path(path)
    with atomic_writer(p) as f:
        fig.savefig(f, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    return p


def plot_confusion(cm: list[list[int]], classes: list[str], path: Path | str, title: str = "") -> Path:
    """Row-normalised confusion matrix with counts in the cells."""
    m = np.asarray(cm, dtype=np.float64)
    norm = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
    n = len(classes)
    fig, ax = plt.subplots(figsize=(1.0 + 0.7 * n, 0.8 + 0.6 * n))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), classes, rotation=45, ha="right")
    ax.set_yticks(range(n), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(n):
        for j in range(n):
            if m[i, j]:
                ax.text(
                    j,
                    i,
                    int(m[i, j]),
                    ha="center",
                    va="center",
                    color="white" if norm[i, j] > 0.5 else "black",
                    fontsize=8,
                )
    ax.set_title(title or "confusion matrix (rows normalised)")
    return save_figure(fig, path)


def plot_history(history: list[dict[str, float]], path: Path | str, title: str = "") -> Path:
    """Training/validation loss and validation accuracy/macro-F1 per epoch."""
    ep = [h["epoch"] for h in history]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.5))
    a.plot(ep, [h["train_loss"] for h in history], label="train loss")
    a.plot(ep, [h["val_loss"] for h in history], label="val loss")
    a.set_xlabel("epoch")
    a.set_yscale("log")
    a.legend()
    b.plot(ep, [h["val_accuracy"] for h in history], label="val accuracy")
    b.plot(ep, [h["val_macro_f1"] for h in history], label="val macro-F1")
    b.set_xlabel("epoch")
    b.legend()
    fig.suptitle(title)
    return save_figure(fig, path)


def plot_leaderboard(rows: list[dict[str, Any]], path: Path | str, title: str = "") -> Path:
    """Mean +- std of accuracy and macro-F1 per model, with training time as text; best macro-F1 first,
    as the table lists them."""
    rows = sorted(rows, key=lambda r: -r["macro_f1_mean"])
    names = [r["model"] for r in rows]
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(1.5 + 1.3 * len(rows), 4))
    ax.bar(
        x - 0.2,
        [r["accuracy_mean"] for r in rows],
        0.4,
        yerr=[r["accuracy_std"] for r in rows],
        label="accuracy",
    )
    ax.bar(
        x + 0.2,
        [r["macro_f1_mean"] for r in rows],
        0.4,
        yerr=[r["macro_f1_std"] for r in rows],
        label="macro-F1",
    )
    lo = min(min(r["accuracy_mean"], r["macro_f1_mean"]) for r in rows)
    ax.set_ylim(max(0.0, lo - 0.1), 1.0)
    ax.set_xticks(x, [f"{n}\n{r['train_seconds']:.0f}s" for n, r in zip(names, rows, strict=True)])
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=2, frameon=False)  # under the bars
    ax.set_title(title or "k-fold leaderboard")
    ax.grid(axis="y", alpha=0.3)
    return save_figure(fig, path)


def plot_gradients(
    curves: dict[str, dict[str, np.ndarray]],
    accuracy_by_len: dict[str, dict[int, float]],
    path: Path | str,
    title: str = "",
) -> Path:
    """||dL/dh_t|| against t (log scale) at init and after training, and accuracy against length."""
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for ax, stage in zip(axes[:2], ("init", "trained"), strict=True):
        for name, c in curves.items():
            if stage in c:
                ax.plot(np.arange(len(c[stage])), np.maximum(c[stage], 1e-30), label=name)
        ax.set_yscale("log")
        ax.set_xlabel("time step t (last step = T-1, where the loss is read)")
        ax.set_ylabel("mean ||dL/dh_t||")
        ax.set_title(
            f"gradient reaching h_t ({'at initialisation' if stage == 'init' else 'after training'})"
        )
        ax.legend()
        ax.grid(alpha=0.3, which="both")
    ax = axes[2]
    for name, accs in accuracy_by_len.items():
        lens = sorted(accs)
        ax.plot(lens, [accs[n] for n in lens], marker="o", label=name)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("sequence length (opcodes)")
    ax.set_ylabel("test accuracy")
    ax.set_title("accuracy against sequence length")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.suptitle(title)
    return save_figure(fig, path)
