"""Why a model said what it said: attributions mapped back to byte offsets and PE sections.

Image models: integrated gradients (Sundararajan et al. 2017) on the S x S model image, from a black
image (all-zero bytes), or Grad-CAM on the model's ``cam_layer()``. The model image is an exact area
average of the Nataraj byte plot, so model pixel (i, j) is shared among the plot rows
[i*H/S, (i+1)*H/S) by their overlap, and plot row r holds bytes [r*W, (r+1)*W): ranges found on an
image model are whole plot rows (W bytes each); the heat map keeps the columns.

Sequence models (bytes, opcodes): integrated gradients in embedding space (``embed`` then
``forward_embedded``; baseline: the padding embedding, zeros), summed over the embedding: one value per
position. For ``bytes`` position i is byte offset i; for ``opcodes`` it is token i (no byte offsets).

Feature models (``features``, the PE structure vector): integrated gradients over the named features
from an average training file (the mean of the training inputs), so each feature's attribution is
what its value, against the typical one, adds to the target's log-odds; ranked by absolute size. Tree
models have no gradient: for them each feature is measured by occlusion, the change in log-odds when
that feature alone takes its typical value.

What is explained is the log-odds of the target class (the verdict's class unless asked otherwise):
positive attribution is evidence for it. Ranges merge neighbouring high-attribution regions and carry
their share of the total positive attribution. The model is never edited: gradients are taken with
``torch.autograd.grad`` with respect to the input only, so concurrent explanations do not interfere.
"""

from __future__ import annotations

import io
import json
import math
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from malvision.convert.image import iter_plot_rows, nataraj_width, plot_shape, resize_rows
from malvision.convert.opcodes import parse_opcodes
from malvision.convert.pefeatures import FEATURE_NAMES, features_of, imports_behind
from malvision.convert.sequence import byte_sequence
from malvision.errors import ConversionError, InputError, MalvisionError
from malvision.io import MemorySource, atomic_writer
from malvision.scan import Scanner, Verdict
from malvision.triage import entropy_bits

__all__ = [
    "METHODS",
    "Region",
    "ByteRange",
    "FeatureShare",
    "Explanation",
    "explain_bytes",
    "attribute",
    "pe_regions",
    "row_profile",
    "top_ranges",
    "render_png",
    "write_explanation",
]

METHODS = ("ig", "gradient", "gradcam")
DEFAULT_STEPS = 32
MAX_BINS = 1024  # a long attribution profile is summed into at most this many bins before ranking
HOT = 0.2  # a bin is "hot" when it holds at least this share of the hottest bin's attribution
GAP = 2  # hot runs this many cold bins apart (or closer) merge into one range
BATCH_ELEMENTS = 2**21  # interpolation steps per batch: input elements per forward pass, at most
OPCODE_PREFIX = 64  # opcode text bytes read per token of max_len, as Scanner.prepare
DISPLAY_ROWS = 1024  # byte plots taller than this are drawn with rows averaged together

_HOOK_LOCK = threading.Lock()  # Grad-CAM registers a forward hook on a shared model
_RENDER_LOCK = threading.Lock()  # matplotlib is not thread-safe, even with separate figures


@dataclass(frozen=True)
class Region:
    """A part of a PE file: ``headers``, a section (``.text``, ...) or ``overlay``; byte offsets [start, end)."""

    name: str
    start: int
    end: int
    entropy: float


@dataclass(frozen=True)
class ByteRange:
    """A high-attribution range [start, end) in ``unit``s (byte offsets, or token indices for opcodes)."""

    start: int
    end: int
    share: float
    unit: str = "byte"
    section: str | None = None
    sections: tuple[str, ...] = ()
    section_entropy: float | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["length"] = self.end - self.start
        d["share"] = round(self.share, 6)
        d["sections"] = list(self.sections)
        d["section_entropy"] = None if self.section_entropy is None else round(self.section_entropy, 4)
        return d


@dataclass(frozen=True)
class FeatureShare:
    """One feature of a features model: its value, a typical training value, signed attribution to the
    target's log-odds, and its share of the total absolute attribution."""

    name: str
    value: float
    typical: float
    attribution: float
    share: float
    imports: list[str] = field(default_factory=list)  # the file's imported functions behind an import feature

    def to_dict(self) -> dict[str, Any]:
        return {k: round(v, 6) if isinstance(v, float) else v for k, v in asdict(self).items()}


@dataclass
class Explanation:
    """A verdict with what drove it: attributions, top ranges and, for PE files, sections."""

    verdict: Verdict
    model: str
    kind: str
    method: str
    target: str
    target_probability: float
    unit: str
    ranges: list[ByteRange]
    sections: list[Region]
    heat: np.ndarray = field(repr=False)  # image: (S, S); sequences: per position
    profile: np.ndarray = field(repr=False)  # positive attribution per unit (plot row, byte or token)
    unit_bytes: int = 1  # bytes per profile unit (the plot width for image models)
    plot_width: int | None = None
    note: str | None = None
    features: list[FeatureShare] = field(default_factory=list)  # features models: the top features

    def to_dict(self) -> dict[str, Any]:
        """The JSON record: the verdict's fields, then how it was explained, ranges and sections."""
        return self.verdict.to_dict() | {
            "model": self.model,
            "input_kind": self.kind,
            "method": self.method,
            "target": self.target,
            "target_probability": round(self.target_probability, 6),
            "unit": self.unit,
            "plot_width": self.plot_width,
            "note": self.note,
            "ranges": [dict(r.to_dict(), rank=i + 1) for i, r in enumerate(self.ranges)],
            "sections": [
                {"name": s.name, "start": s.start, "end": s.end, "entropy": round(s.entropy, 4)}
                for s in self.sections
            ],
            "features": [dict(f.to_dict(), rank=i + 1) for i, f in enumerate(self.features)],
        }


# -- attribution ------------------------------------------------------------------------------------
def _log_odds(logits: Any, target: int) -> Any:
    """log p_t - log(1 - p_t) per row: the target's logit against the log-sum-exp of the others."""
    import torch

    if logits.shape[1] == 1:  # a single-logit model: the logit is the log-odds of class 1
        return logits[:, 0] if target == 1 else -logits[:, 0]
    others = torch.cat([logits[:, :target], logits[:, target + 1 :]], dim=1)
    return logits[:, target] - torch.logsumexp(others, dim=1)


def _integrated(f: Callable[[Any], Any], x: Any, baseline: Any, steps: int, batch: int) -> Any:
    """Integrated gradients of scalar-per-row ``f`` from ``baseline`` to ``x`` (midpoint rule)."""
    import torch

    total = torch.zeros_like(x)
    alphas = (torch.arange(steps, dtype=x.dtype) + 0.5) / steps
    for i in range(0, steps, batch):
        a = alphas[i : i + batch].view(-1, *([1] * (x.dim() - 1)))
        xs = (baseline + a * (x - baseline)).requires_grad_(True)
        (g,) = torch.autograd.grad(f(xs).sum(), xs)
        total += g.sum(0, keepdim=True)
    return (x - baseline) * total / steps


def _gradient(f: Callable[[Any], Any], x: Any, baseline: Any) -> Any:
    """Gradient x (input - baseline) at the input: one backward pass."""
    import torch

    xs = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(f(xs).sum(), xs)
    return (x - baseline) * g


def _gradcam(model: Any, run: Callable[[], Any], target: int, out_len: tuple[int, ...]) -> Any:
    """Grad-CAM: ReLU of the channel-weighted ``cam_layer`` activation, resized to ``out_len``."""
    import torch
    import torch.nn.functional as F

    layer = model.cam_layer()
    if layer is None:
        raise MalvisionError(f"model {type(model).__name__} has no conv layer for Grad-CAM; use --method ig")
    acts: list[Any] = []
    me = threading.get_ident()  # a scan running on another thread must not feed this hook

    def keep(_m: Any, _i: Any, o: Any) -> None:
        if threading.get_ident() == me:
            acts.append(o)

    with _HOOK_LOCK:
        handle = layer.register_forward_hook(keep)
        try:
            logits = run()
        finally:
            handle.remove()
    a = acts[-1]
    (g,) = torch.autograd.grad(_log_odds(logits, target).sum(), a)
    weights = g.mean(dim=tuple(range(2, a.dim())), keepdim=True)
    cam = torch.relu((weights * a).sum(1, keepdim=True))
    mode = "bilinear" if a.dim() == 4 else "linear"
    return F.interpolate(cam, size=out_len, mode=mode, align_corners=False)[0, 0]


def attribute(
    model: Any, x: np.ndarray, target: int, method: str = "ig", steps: int = DEFAULT_STEPS
) -> np.ndarray:
    """Attribution to the target's log-odds: (S, S) for an image, one value per position for ids."""

    if method not in METHODS:
        raise MalvisionError(f"unknown explanation method {method!r}; use one of {', '.join(METHODS)}")
    if steps < 1:
        raise MalvisionError(f"--steps must be positive, got {steps}")
    was_training = model.training
    model.eval()  # batch norm must use its running statistics; the mode is restored below
    try:
        return _attribute(model, x, target, method, steps)
    finally:
        model.train(was_training)


def _occlusion(f: Any, x: Any, base: Any) -> Any:
    """Per feature of a (1, F) ``x``: ``f(x)`` minus ``f`` with that one feature set to ``base``'s."""
    import torch

    n = x.shape[1]
    rows = x.repeat(n, 1)
    rows[torch.arange(n), torch.arange(n)] = base[0]
    with torch.no_grad():
        return f(x)[0] - f(rows)


def _attribute(model: Any, x: np.ndarray, target: int, method: str, steps: int) -> np.ndarray:
    import torch

    with torch.enable_grad():
        if x.dtype == np.float32:  # a PE feature vector: from the average training file
            if method == "gradcam":
                raise MalvisionError("gradcam needs a convolutional model; use --method ig or gradient")
            xt = torch.from_numpy(x[None])
            base = model.typical_input()[0][None]

            def fv(xs: Any) -> Any:
                return _log_odds(model(xs), target)

            if not getattr(model, "differentiable", True):  # trees: no gradient, measure by occlusion
                return _occlusion(fv, xt, base).numpy()

            attr = _integrated(fv, xt, base, steps, steps) if method == "ig" else _gradient(fv, xt, base)
            return attr[0].detach().numpy()
        if x.ndim == 2:  # an image, as Scanner.infer feeds it
            xt = torch.from_numpy(x.astype(np.float32)[None, None] / np.float32(255.0))

            def f(xs: Any) -> Any:
                return _log_odds(model(xs), target)

            if method == "gradcam":
                return _gradcam(model, lambda: model(xt), target, tuple(x.shape)).detach().numpy()
            base = torch.zeros_like(xt)
            per = xt[0, 0].numel()
            batch = max(1, min(steps, BATCH_ELEMENTS // per))
            attr = _integrated(f, xt, base, steps, batch) if method == "ig" else _gradient(f, xt, base)
            return attr[0, 0].detach().numpy()
        ids = torch.from_numpy(np.asarray(x, dtype=np.int64)[None])
        mask = model.padding_mask(ids)
        if method == "gradcam":
            return _gradcam(model, lambda: model(ids), target, (ids.shape[1],)).detach().numpy()
        e = model.embed(ids).detach()

        def fe(es: Any) -> Any:
            m = None if mask is None else mask.expand(es.shape[0], -1)
            return _log_odds(model.forward_embedded(es, m), target)

        base = torch.zeros_like(e)
        batch = max(1, min(steps, BATCH_ELEMENTS // max(1, e[0].numel())))
        attr = _integrated(fe, e, base, steps, batch) if method == "ig" else _gradient(fe, e, base)
        return attr[0].sum(-1).detach().numpy()


# -- from model input back to the file ------------------------------------------------------------------
def row_profile(cells: np.ndarray, height: int) -> np.ndarray:
    """Share each of S row-cells' values among the ``height`` plot rows it area-averages.

    Output row i of the resize covers plot rows [i*H/S, (i+1)*H/S); plot row r gets the share of its
    overlap. The total is kept: ``row_profile(c, H).sum() == c.sum()``.
    """
    size = len(cells)
    out = np.zeros(height, dtype=np.float64)
    for i, v in enumerate(cells):
        lo, hi = i * height, (i + 1) * height  # in units where a plot row is ``size`` wide
        k0, k1 = lo // size, -(-hi // size)
        starts = np.arange(k0, k1, dtype=np.int64) * size
        w = np.minimum(starts + size, hi) - np.maximum(starts, lo)
        out[k0:k1] += float(v) * w / height
    return out


def top_ranges(profile: np.ndarray, top_k: int = 5) -> list[tuple[int, int, float]]:
    """(start, end, share) of the ``top_k`` ranges of ``profile`` (>= 0) holding the most attribution.

    The profile is summed into at most ``MAX_BINS`` bins; bins with at least ``HOT`` of the hottest bin's
    sum are hot, hot runs at most ``GAP`` bins apart merge, and each range's share is its part of the
    whole profile's sum. Sorted by share, largest first.
    """
    pos = np.clip(np.nan_to_num(np.asarray(profile, dtype=np.float64)), 0.0, None)
    total = float(pos.sum())
    n = len(pos)
    if n == 0 or total <= 0.0 or top_k < 1:
        return []
    b = max(1, math.ceil(n / MAX_BINS))
    sums = np.add.reduceat(pos, np.arange(0, n, b))
    hot = np.flatnonzero(sums >= HOT * sums.max())
    runs: list[list[int]] = []
    for k in hot:
        if runs and k - runs[-1][1] <= GAP + 1:
            runs[-1][1] = int(k)
        else:
            runs.append([int(k), int(k)])
    ranges = []
    for a, z in runs:
        start, end = a * b, min(n, (z + 1) * b)
        ranges.append((start, end, float(pos[start:end].sum()) / total))
    ranges.sort(key=lambda r: (-r[2], r[0]))
    return ranges[:top_k]


def pe_regions(data: bytes) -> list[Region]:
    """Headers, sections (by raw file offset) and overlay of a PE file, with entropy; [] if not a PE."""
    import pefile

    if data[:2] != b"MZ":
        return []
    try:
        pe = pefile.PE(data=data, fast_load=True)
    except pefile.PEFormatError:
        return []
    size = len(data)
    try:
        spans = []
        for i, s in enumerate(pe.sections):
            start, length = int(s.PointerToRawData), int(s.SizeOfRawData)
            if length <= 0 or start >= size:
                continue
            name = s.Name.rstrip(b"\0").decode("latin-1", "replace") or f"(section {i + 1})"
            spans.append((name, start, min(size, start + length)))
        spans.sort(key=lambda t: t[1])
        head_end = min(size, int(pe.OPTIONAL_HEADER.SizeOfHeaders) or size)
        if spans:  # headers end where the first section starts, whatever SizeOfHeaders says
            head_end = min(head_end, spans[0][1])
        regions = [("headers", 0, head_end)] if head_end > 0 else []
        regions += spans
        end = max((z for _, _, z in regions), default=0)
        if end < size:
            regions.append(("overlay", end, size))
    except (AttributeError, ValueError):
        return []
    # No pe.close(): it only matters for memory-mapped files, and it runs a full gc.collect()
    # (~0.15 s in a process holding torch).
    view = memoryview(data)  # no copies of the sections
    return [Region(n, a, z, entropy_bits(view[a:z])) for n, a, z in regions]


def _locate(start: int, end: int, regions: list[Region]) -> tuple[str | None, tuple[str, ...], float | None]:
    """(region holding most of [start, end), every region it touches in file order, that one's entropy)."""
    hits = [(min(end, r.end) - max(start, r.start), r) for r in regions if r.start < end and start < r.end]
    if not hits:
        return None, (), None
    best = max(hits, key=lambda h: h[0])[1]
    return best.name, tuple(dict.fromkeys(r.name for _, r in hits)), best.entropy


# -- the whole job -------------------------------------------------------------------------------
def _model_input(scanner: Scanner, name: str, data: bytes) -> np.ndarray:
    """The model input for ``data``: ``Scanner.prepare``'s own array, or the same conversion past triage.

    Triage may withhold the input (an ``unknown`` verdict); the explanation still shows what the model
    would key on, from the same convert functions.
    """
    prepared = scanner.prepare(MemorySource.of(name, data))
    if prepared.x is not None:
        return prepared.x
    spec = scanner.spec
    if spec.kind == "image":
        try:
            h, w = plot_shape(len(data))
        except ConversionError as e:
            raise ConversionError(f"{name}: too small to explain as a byte plot ({e})") from None
        return resize_rows(iter_plot_rows([data], len(data)), h, w, spec.image_size)
    if spec.kind == "bytes":
        return byte_sequence(data, spec.max_len)
    if spec.kind == "features":
        return features_of(data)
    assert scanner.vocab is not None
    text = data[: OPCODE_PREFIX * spec.max_len]  # as prepare: a prefix, without its cut last line
    if len(text) < len(data):
        text = text[: text.rfind(b"\n") + 1]
    return scanner.vocab.encode(parse_opcodes(text, name), spec.max_len)


def _target_index(scanner: Scanner, verdict: Verdict, probs: np.ndarray, target: str | None) -> int:
    classes = scanner.classes
    if target is not None:
        if target not in classes:
            raise MalvisionError(
                f"unknown target class {target!r}; this model's classes: {', '.join(classes)}"
            )
        return classes.index(target)
    if scanner.detector and verdict.verdict in ("malware", "benign"):
        return classes.index(verdict.verdict)
    if verdict.family in classes:
        return classes.index(verdict.family)
    return int(probs.argmax())


def explain_bytes(
    scanner: Scanner,
    name: str,
    data: bytes,
    *,
    top_k: int = 5,
    method: str = "ig",
    steps: int = DEFAULT_STEPS,
    target: str | None = None,
) -> Explanation:
    """Verdict (via ``scanner.scan_bytes``) and attribution of in-memory ``data`` mapped to the file."""
    if not data:
        raise InputError(f"{name}: empty file, nothing to explain")
    verdict = scanner.scan_bytes(name, data)
    x = _model_input(scanner, name, data)
    probs = scanner.infer([x])[0]
    t = _target_index(scanner, verdict, probs, target)
    model = scanner.checkpoint.model
    heat = attribute(model, x, t, method, steps)
    if not getattr(model, "differentiable", True):
        method = "occlusion"  # what attribute measured: a tree model has no gradient
    kind = scanner.spec.kind
    note = None
    if verdict.verdict == "unknown":
        note = f"verdict is unknown ({verdict.reason}); the heat map shows what the model would key on anyway"
    if kind == "features":
        return _feature_explanation(scanner, verdict, x, heat, t, float(probs[t]), method, top_k, data, note)
    unit, unit_bytes, width = "byte", 1, None
    if kind == "image":
        height, width = plot_shape(len(data))
        profile = row_profile(np.clip(heat, 0, None).sum(axis=1), height)
        unit_bytes = width
    else:
        profile = np.clip(heat, 0, None).astype(np.float64)
        if kind == "opcodes":
            unit = "token"
        else:
            width = nataraj_width(len(data))
            if len(data) > len(x):
                extra = f"the model reads the first {len(x):,} of {len(data):,} bytes"
                note = f"{note}; {extra}" if note else extra
    regions = pe_regions(data) if kind != "opcodes" else []
    ranges = []
    for a, z, share in top_ranges(profile, top_k):
        start, end = a * unit_bytes, z * unit_bytes
        sec, secs, ent = _locate(start, end, regions) if unit == "byte" else (None, (), None)
        ranges.append(ByteRange(start, end, share, unit, sec, secs, ent))
    return Explanation(
        verdict=verdict,
        model=scanner.checkpoint.model_name,
        kind=kind,
        method=method,
        target=scanner.classes[t],
        target_probability=float(probs[t]),
        unit=unit,
        ranges=ranges,
        sections=regions,
        heat=heat,
        profile=profile,
        unit_bytes=unit_bytes,
        plot_width=width,
        note=note,
    )


def _feature_explanation(
    scanner: Scanner,
    verdict: Verdict,
    x: np.ndarray,
    heat: np.ndarray,
    target: int,
    probability: float,
    method: str,
    top_k: int,
    data: bytes,
    note: str | None,
) -> Explanation:
    typical = scanner.checkpoint.model.typical_input()[0].numpy()
    total = float(np.abs(heat).sum()) or 1.0
    order = np.argsort(-np.abs(heat), kind="stable")[:top_k]
    behind = imports_behind(data)
    feats = [
        FeatureShare(
            FEATURE_NAMES[i],
            float(x[i]),
            float(typical[i]),
            float(heat[i]),
            abs(float(heat[i])) / total,
            behind.get(FEATURE_NAMES[i], []),
        )
        for i in order
    ]
    against = "an average training file"
    note = f"{note}; attribution against {against}" if note else f"attribution against {against}"
    return Explanation(
        verdict=verdict,
        model=scanner.checkpoint.model_name,
        kind="features",
        method=method,
        target=scanner.classes[target],
        target_probability=probability,
        unit="feature",
        ranges=[],
        sections=pe_regions(data),
        heat=heat,
        profile=np.abs(heat).astype(np.float64),
        note=note,
        features=feats,
    )


# -- the picture ------------------------------------------------------------------------------------
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
    from matplotlib.patches import Rectangle

    v = expl.verdict
    score = f" {v.score:.3f}" if v.score is not None else ""
    fam = f" {v.family}" if v.family else ""
    title = f"{Path(v.path).name[:60]}: {v.verdict}{score}{fam}  ({expl.model}, {expl.method} for {expl.target!r})"
    with _RENDER_LOCK:
        fig = Figure(figsize=(9, 7.5), dpi=dpi, layout="constrained")
        if expl.unit == "feature":
            fig.set_size_inches(9, max(3.0, 1.5 + 0.45 * len(expl.features)))
            ax = fig.add_subplot(1, 1, 1)
            shown = expl.features[::-1]  # the largest at the top
            ys = np.arange(len(shown))
            vals = [f.attribution for f in shown]
            ax.barh(ys, vals, color=["tab:red" if v > 0 else "tab:blue" for v in vals])
            ax.set_yticks(
                ys, [f"{f.name} = {f.value:.3g} (typical {f.typical:.3g})" for f in shown], fontsize=8
            )
            ax.axvline(0, color="black", lw=0.6)
            ax.set_xlabel(f"attribution to the log-odds of {expl.target!r} (red: for it, blue: against)")
        elif expl.unit == "token" or len(data) < nataraj_width(len(data)):  # no byte plot to draw on
            ax = fig.add_subplot(1, 1, 1)
            ax.plot(np.arange(len(expl.profile)), expl.profile, lw=0.8, color="tab:red")
            for i, r in enumerate(expl.ranges):
                ax.axvspan(r.start, r.end, color="tab:orange", alpha=0.3)
                ax.text(r.start, ax.get_ylim()[1], f"#{i + 1}", va="top", fontsize=8)
            ax.set_xlabel("opcode token index" if expl.unit == "token" else "byte offset")
            ax.set_ylabel("attribution (positive part)")
        else:
            height, width = plot_shape(len(data))
            plot = np.frombuffer(data, dtype=np.uint8)[: height * width].reshape(height, width)
            factor = max(1, math.ceil(height / DISPLAY_ROWS))
            shown = _display_rows(plot, factor)
            gs = fig.add_gridspec(1, 2, width_ratios=(4, 1))
            ax = fig.add_subplot(gs[0, 0])
            side = fig.add_subplot(gs[0, 1], sharey=ax)
            extent = (0, width, height, 0)
            ax.imshow(
                shown, cmap="gray", vmin=0, vmax=255, extent=extent, aspect="auto", interpolation="nearest"
            )
            if expl.kind == "image":
                heat = np.clip(expl.heat, 0, None)
            else:
                heat = _sequence_heat(np.clip(expl.heat, 0, None), width, height, factor)
            peak = float(heat.max()) if heat.size else 0.0
            if peak > 0:
                alpha = np.clip(heat / peak, 0, 1) * 0.75
                ax.imshow(
                    heat / peak,
                    cmap="inferno",
                    alpha=alpha,
                    vmin=0,
                    vmax=1,
                    extent=extent,
                    aspect="auto",
                    interpolation="nearest",
                )
            label_at = -math.inf
            for s in expl.sections:
                row = s.start / width
                ax.axhline(row, color="cyan", lw=0.8, ls="--")
                label_at = max(row, label_at + height / 45)  # labels of close sections stack, not overlap
                ax.text(
                    width,
                    label_at,
                    f" {s.name} (H={s.entropy:.2f})",
                    color="tab:cyan",
                    fontsize=7,
                    va="top",
                    ha="left",
                    clip_on=False,
                )
            for i, r in enumerate(expl.ranges):
                r0, r1 = r.start / width, r.end / width
                ax.add_patch(Rectangle((0, r0), width, r1 - r0, fill=False, ec="lime", lw=0.9))
                ax.text(
                    width * 0.99,
                    r0,
                    f"#{i + 1}",
                    color="lime",
                    fontsize=8,
                    va="bottom",
                    ha="right",
                    bbox={"facecolor": "black", "alpha": 0.5, "pad": 1, "lw": 0},
                )
            ax.set_xlim(0, width)
            ax.set_ylim(height, 0)
            ax.set_xlabel(f"byte column (plot width {width})")
            ax.set_ylabel("plot row (byte offset = row x width + column)")
            rows_attr = expl.profile if expl.kind == "image" else _per_row(expl.profile, width)
            side.plot(rows_attr, np.arange(len(rows_attr)) + 0.5, color="tab:red", lw=0.8)
            side.set_xlabel("attribution per row")
            side.tick_params(labelleft=False)
            for i, r in enumerate(expl.ranges):
                side.axhspan(r.start / width, r.end / width, color="lime", alpha=0.3)
                side.text(
                    1.0,
                    (r.start + r.end) / 2 / width,
                    f" #{i + 1} {r.share:.0%}",
                    fontsize=7,
                    va="center",
                    ha="left",
                    transform=side.get_yaxis_transform(),
                    clip_on=False,
                )
        fig.suptitle(title + (f"\n{expl.note}" if expl.note else ""), fontsize=9)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def write_explanation(
    expl: Explanation, data: bytes, out_dir: Path | str, stem: str | None = None
) -> tuple[Path, Path]:
    """Write ``<stem>.explain.json`` and ``<stem>.explain.png`` into ``out_dir`` atomically."""
    out = Path(out_dir)
    stem = stem or Path(expl.verdict.path).name or "input"
    png_path, json_path = out / f"{stem}.explain.png", out / f"{stem}.explain.json"
    png = render_png(expl, data)
    with atomic_writer(png_path) as f:
        f.write(png)
    record = expl.to_dict() | {"png": png_path.name}
    with atomic_writer(json_path) as f:
        f.write(json.dumps(record, indent=1).encode())
    return json_path, png_path
