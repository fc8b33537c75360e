"""The picture of an explanation: the byte plot with the heat map over it, PE section boundaries and
the top ranges; a bar chart of the top features for feature models; a profile for opcode models."""

from __future__ import annotations

import io
import math
import textwrap
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
    """PNG bytes: the file's byte plot with its PE sections (and entropy) always; a byte model's heat
    map and top ranges over it, a feature model's top features beside it (boxes on the plot where a
    feature has bytes of its own), an opcode model's attribution per token beside it."""
    from matplotlib.figure import Figure

    v = expl.verdict
    score = f" ({v.band})" if v.band else ""
    score += f", malware score {v.score_text()}" if v.score is not None else ""
    fam = f" {v.family}" if v.family else ""
    title = (
        f"{Path(v.path).name[:60]}: {v.verdict}{score}{fam}\n{expl.model}: {expl.method} of {expl.target!r}"
    )
    drawable = len(data) >= nataraj_width(len(data))
    with _RENDER_LOCK:
        fig = Figure(figsize=(9, 7.5), dpi=dpi, layout="constrained")
        if not drawable:  # shorter than one plot row: no byte plot to draw on
            (_draw_features if expl.unit == "feature" else _draw_profile)(fig.add_subplot(1, 1, 1), expl)
        elif expl.unit == "feature":
            fig.set_size_inches(12, max(6.0, 1.5 + 0.45 * len(expl.features)))
            gs = fig.add_gridspec(1, 2, width_ratios=(2, 3))
            _draw_plot(fig.add_subplot(gs[0, 0]), expl, data, heat=False)
            _draw_features(fig.add_subplot(gs[0, 1]), expl)
        elif expl.unit == "token":
            fig.set_size_inches(12, 7.5)
            gs = fig.add_gridspec(1, 2, width_ratios=(2, 3))
            _draw_plot(fig.add_subplot(gs[0, 0]), expl, data, heat=False)
            _draw_profile(fig.add_subplot(gs[0, 1]), expl)
        else:
            gs = fig.add_gridspec(1, 2, width_ratios=(4, 1))
            ax = fig.add_subplot(gs[0, 0])
            _draw_plot(ax, expl, data, heat=True)
            _draw_row_profile(fig.add_subplot(gs[0, 1], sharey=ax), expl, data)
        note = "\n" + textwrap.fill(expl.note, 120) if expl.note else ""  # a long note wraps, not cut off
        fig.suptitle(title + note, fontsize=9)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def _draw_features(ax: Any, expl: Explanation) -> None:
    """The top features as signed bars, the largest at the top, by their analysts' names."""
    shown = expl.features[::-1]
    ys = np.arange(len(shown))
    vals = [f.attribution for f in shown]
    ax.barh(ys, vals, color=["tab:red" if v > 0 else "tab:blue" for v in vals])
    n = len(expl.features)
    labels = [
        f"#{n - k} {f.label or f.name} = {f.value:.3g} (typical {f.typical:.3g})" for k, f in enumerate(shown)
    ]
    ax.set_yticks(ys, labels, fontsize=8)
    ax.axvline(0, color="black", lw=0.6)
    ax.set_xlabel(
        f"attribution to the log-odds of {expl.target!r}\n(red: pushes it up, blue: down)", fontsize=8
    )


def _draw_profile(ax: Any, expl: Explanation) -> None:
    """Attribution per token (opcode models) or per byte (a file shorter than one plot row)."""
    ax.plot(np.arange(len(expl.profile)), expl.profile, lw=0.8, color="tab:red")
    for i, r in enumerate(expl.ranges):
        ax.axvspan(r.start, r.end, color="tab:orange", alpha=0.3)
        ax.text(r.start, ax.get_ylim()[1], f"#{i + 1}", va="top", fontsize=8)
    ax.set_xlabel("opcode token index" if expl.unit == "token" else "byte offset")
    ax.set_ylabel("attribution (positive part)")


def _draw_plot(ax: Any, expl: Explanation, data: bytes, heat: bool) -> None:
    """The byte plot with sections (and entropy), the heat map over it when ``heat``, and the top
    ranges (byte models) or the top features' own bytes (feature models) as numbered boxes."""
    height, width = plot_shape(len(data))
    plot = np.frombuffer(data, dtype=np.uint8)[: height * width].reshape(height, width)
    factor = max(1, math.ceil(height / DISPLAY_ROWS))
    extent = (0, width, height, 0)
    shown = _display_rows(plot, factor)
    ax.imshow(shown, cmap="gray", vmin=0, vmax=255, extent=extent, aspect="auto", interpolation="nearest")
    if heat:
        if expl.kind in ("image", "views"):
            values = np.clip(expl.heat, 0, None)
        else:
            values = _sequence_heat(np.clip(expl.heat, 0, None), width, height, factor)
        peak = float(values.max()) if values.size else 0.0
        if peak > 0:
            alpha = np.clip(values / peak, 0, 1) * 0.75
            ax.imshow(
                values / peak, cmap="inferno", alpha=alpha, vmin=0, vmax=1, extent=extent, aspect="auto",
                interpolation="nearest",
            )  # fmt: skip
    _draw_sections(ax, expl, width, height)
    if expl.unit == "feature":
        _draw_feature_spans(ax, expl, width)
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    ax.set_xlabel(f"byte column (plot width {width})", fontsize=8)
    ax.set_ylabel("row (byte offset = row x width + column)", fontsize=8)
    if not heat:
        ax.set_title("byte plot (one byte, one gray pixel)", fontsize=8)


def _draw_row_profile(side: Any, expl: Explanation, data: bytes) -> None:
    """A byte model's positive attribution per plot row, the top ranges marked."""
    width = plot_shape(len(data))[1]
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


def _draw_feature_spans(ax: Any, expl: Explanation, width: int) -> None:
    """The bytes each top feature is read from, as a box on the plot labelled with its rank."""
    from matplotlib.patches import Rectangle

    tag_row = abs(ax.get_ylim()[0] - ax.get_ylim()[1]) / 40  # ten tags a row, then the next row down
    for i, f in enumerate(expl.features):
        if not f.span:
            continue
        r0, r1 = f.span[0] / width, max(f.span[1], f.span[0] + width) / width
        color = "tab:red" if f.attribution > 0 else "tab:blue"
        inset = width * 0.012 * (i % 5)  # boxes of one region (the import table) stay apart
        ax.add_patch(Rectangle((inset, r0), width - 2 * inset, r1 - r0, fill=False, ec=color, lw=1.4))
        ax.text(
            inset + width * (0.02 + 0.09 * (i % 10)), r0 + tag_row * (i // 10), f"#{i + 1}", color="white",
            fontsize=7, va="top", ha="left", bbox={"facecolor": color, "alpha": 0.85, "pad": 1, "lw": 0},
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
    for i, r in enumerate(expl.ranges if expl.unit != "token" else []):
        r0, r1 = r.start / width, r.end / width
        ax.add_patch(Rectangle((0, r0), width, r1 - r0, fill=False, ec="lime", lw=0.9))
        ax.text(
            width * 0.99, r0, f"#{i + 1}", color="lime", fontsize=8, va="bottom", ha="right",
            bbox={"facecolor": "black", "alpha": 0.5, "pad": 1, "lw": 0},
        )  # fmt: skip
