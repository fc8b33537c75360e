"""The picture of an explanation: the byte plot with the heat map over it, PE section boundaries and
the top ranges; a bar chart of the top features for feature models; a profile for opcode models."""

from __future__ import annotations

import io
import math
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from malvision.convert.image import nataraj_width, plot_shape

if TYPE_CHECKING:
    from malvision.explain.explanation import Explanation

__all__ = ["render_png"]

DISPLAY_ROWS = 1024  # byte plots taller than this are drawn with rows averaged together
_RENDER_LOCK = threading.Lock()  # matplotlib is not thread-safe, even with separate figures


def _display_rows(plot: np.ndarray, factor: int) -> np.ndarray:
    """Average every ``factor`` rows of a (H, W) uint8 plot, block by block (bounded memory)."""
    if factor == 1:
        return plot.astype(np.float32)
    h, w = plot.shape
    out = np.empty((-(-h // factor), w), dtype=np.float32)
    step = factor * max(1, (1 << 22) // (factor * w))  # about 4 Mi pixels (16 MiB of float32) a block
    for r in range(0, h, step):
        block = plot[r : r + step].astype(np.float32)
        n = block.shape[0]
        full = n // factor * factor
        if full:
            out[r // factor : (r + full) // factor] = block[:full].reshape(-1, factor, w).mean(1)
        if full < n:
            out[(r + full) // factor] = block[full:].mean(0)
    return out


def _sequence_heat(values: np.ndarray, width: int, rows: int, factor: int) -> np.ndarray:
    """Per-byte values laid out like the byte plot (rows of ``width``), rows summed by ``factor``.

    Memory follows ``len(values)`` (what the model read), not the file: later rows stay zero.
    """
    out = np.zeros((-(-rows // factor), width), dtype=np.float64)
    n = min(len(values), rows * width)
    used = -(-n // width)
    grid = np.zeros((used + (-used) % factor) * width, dtype=np.float64)
    grid[:n] = values[:n]
    summed = grid.reshape(-1, factor, width).sum(1)
    out[: len(summed)] = summed[: len(out)]
    return out


def _per_row(values: np.ndarray, width: int) -> np.ndarray:
    """Sum per-byte values over each plot row of ``width`` bytes (a last partial row included)."""
    return np.add.reduceat(values, np.arange(0, len(values), width)) if len(values) else values


def render_png(expl: Explanation, data: bytes, dpi: int = 100) -> bytes:
    """PNG bytes: the byte plot with the heat map over it, section boundaries and the top ranges."""
    from matplotlib.figure import Figure

    v = expl.verdict
    score = f" {v.score:.3f}" if v.score is not None else ""
    fam = f" {v.family}" if v.family else ""
    title = f"{Path(v.path).name[:60]}: {v.verdict}{score}{fam}  ({expl.model}, {expl.method} for {expl.target!r})"
    with _RENDER_LOCK:
        fig = Figure(figsize=(9, 7.5), dpi=dpi, layout="constrained")
        if expl.unit == "feature":
            _draw_features(fig, expl)
        elif expl.unit == "token" or len(data) < nataraj_width(len(data)):  # no byte plot to draw on
            _draw_profile(fig, expl)
        else:
            _draw_plot(fig, expl, data)
        fig.suptitle(title + (f"\n{expl.note}" if expl.note else ""), fontsize=9)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def _draw_features(fig: Any, expl: Explanation) -> None:
    """The top features as signed bars, the largest at the top."""
    fig.set_size_inches(9, max(3.0, 1.5 + 0.45 * len(expl.features)))
    ax = fig.add_subplot(1, 1, 1)
    shown = expl.features[::-1]
    ys = np.arange(len(shown))
    vals = [f.attribution for f in shown]
    ax.barh(ys, vals, color=["tab:red" if v > 0 else "tab:blue" for v in vals])
    ax.set_yticks(ys, [f"{f.name} = {f.value:.3g} (typical {f.typical:.3g})" for f in shown], fontsize=8)
    ax.axvline(0, color="black", lw=0.6)
    ax.set_xlabel(f"attribution to the log-odds of {expl.target!r} (red: for it, blue: against)")


def _draw_profile(fig: Any, expl: Explanation) -> None:
    """Attribution per token (opcode models) or per byte (a file shorter than one plot row)."""
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(np.arange(len(expl.profile)), expl.profile, lw=0.8, color="tab:red")
    for i, r in enumerate(expl.ranges):
        ax.axvspan(r.start, r.end, color="tab:orange", alpha=0.3)
        ax.text(r.start, ax.get_ylim()[1], f"#{i + 1}", va="top", fontsize=8)
    ax.set_xlabel("opcode token index" if expl.unit == "token" else "byte offset")
    ax.set_ylabel("attribution (positive part)")


def _draw_plot(fig: Any, expl: Explanation, data: bytes) -> None:
    """The byte plot, the heat map over it, sections and ranges; attribution per row beside it."""
    height, width = plot_shape(len(data))
    plot = np.frombuffer(data, dtype=np.uint8)[: height * width].reshape(height, width)
    factor = max(1, math.ceil(height / DISPLAY_ROWS))
    gs = fig.add_gridspec(1, 2, width_ratios=(4, 1))
    ax = fig.add_subplot(gs[0, 0])
    side = fig.add_subplot(gs[0, 1], sharey=ax)
    extent = (0, width, height, 0)
    shown = _display_rows(plot, factor)
    ax.imshow(shown, cmap="gray", vmin=0, vmax=255, extent=extent, aspect="auto", interpolation="nearest")
    if expl.kind in ("image", "views"):
        heat = np.clip(expl.heat, 0, None)
    else:
        heat = _sequence_heat(np.clip(expl.heat, 0, None), width, height, factor)
    peak = float(heat.max()) if heat.size else 0.0
    if peak > 0:
        alpha = np.clip(heat / peak, 0, 1) * 0.75
        ax.imshow(
            heat / peak, cmap="inferno", alpha=alpha, vmin=0, vmax=1, extent=extent, aspect="auto",
            interpolation="nearest",
        )  # fmt: skip
    _draw_sections(ax, expl, width, height)
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    ax.set_xlabel(f"byte column (plot width {width})")
    ax.set_ylabel("plot row (byte offset = row x width + column)")
    rows_attr = expl.profile if expl.kind in ("image", "views") else _per_row(expl.profile, width)
    side.plot(rows_attr, np.arange(len(rows_attr)) + 0.5, color="tab:red", lw=0.8)
    side.set_xlabel("attribution per row")
    side.tick_params(labelleft=False)
    for i, r in enumerate(expl.ranges):
        side.axhspan(r.start / width, r.end / width, color="lime", alpha=0.3)
        side.text(
            1.0, (r.start + r.end) / 2 / width, f" #{i + 1} {r.share:.0%}", fontsize=7, va="center",
            ha="left", transform=side.get_yaxis_transform(), clip_on=False,
        )  # fmt: skip


def _draw_sections(ax: Any, expl: Explanation, width: int, height: int) -> None:
    """Section boundaries with their names and entropy, and the top ranges as numbered boxes."""
    from matplotlib.patches import Rectangle

    label_at = -math.inf
    for s in expl.sections:
        row = s.start / width
        ax.axhline(row, color="cyan", lw=0.8, ls="--")
        label_at = max(row, label_at + height / 45)  # labels of close sections stack, not overlap
        ax.text(
            width, label_at, f" {s.name} (H={s.entropy:.2f})", color="tab:cyan", fontsize=7, va="top",
            ha="left", clip_on=False,
        )  # fmt: skip
    for i, r in enumerate(expl.ranges):
        r0, r1 = r.start / width, r.end / width
        ax.add_patch(Rectangle((0, r0), width, r1 - r0, fill=False, ec="lime", lw=0.9))
        ax.text(
            width * 0.99, r0, f"#{i + 1}", color="lime", fontsize=8, va="bottom", ha="right",
            bbox={"facecolor": "black", "alpha": 0.5, "pad": 1, "lw": 0},
        )  # fmt: skip
