"""An explanation: a verdict with what drove it, from one read of the file; its JSON record and files.

What is explained is the log-odds of the target class (a detector's: malware, the class its one score
is about; a family model's: the family it names; unless asked otherwise):
positive attribution is evidence for it (``explain.attribution``). Byte and token attributions become
ranges located in the file's PE regions (``explain.regions``); a feature model's become its top named
features, each import feature with the file's own imports behind it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from malvision.convert.featurelabels import feature_label, feature_span
from malvision.convert.histograms import HISTOGRAM_NAMES, histogram_label
from malvision.convert.image import nataraj_width, plot_shape
from malvision.convert.pefeatures import FEATURE_NAMES, imports_behind
from malvision.convert.prepare import prepare
from malvision.errors import ConversionError, InputError, MalvisionError
from malvision.explain.attribution import DEFAULT_STEPS, attribute
from malvision.explain.regions import ByteRange, Region, locate, pe_regions, row_profile, top_ranges
from malvision.explain.render import render_png
from malvision.io import MemorySource, atomic_writer, deferred_interrupts
from malvision.pe import PEHeaders
from malvision.scan import Scanner, Verdict

__all__ = ["FeatureShare", "Explanation", "explain_bytes", "write_explanation"]


@dataclass(frozen=True)
class FeatureShare:
    """One feature of a features model: its value, a typical training value, signed attribution to the
    target's log-odds, and its share of the total absolute attribution."""

    name: str
    value: float
    typical: float
    attribution: float
    share: float
    imports: list[str] = field(
        default_factory=list
    )  # the file's imports (dll!function) behind an import feature
    label: str = ""  # what an analyst calls it (``featurelabels``); the name when empty
    description: str = ""
    span: tuple[int, int] | None = None  # the file bytes it is read from (None: the whole file, or none)

    def to_dict(self) -> dict[str, Any]:
        d = {k: round(v, 6) if isinstance(v, float) else v for k, v in asdict(self).items()}
        d["label"] = self.label or self.name
        d["span"] = list(self.span) if self.span else None
        return d


@dataclass
class Explanation:
    """A verdict with what drove it: attributions, top ranges and, for PE files, sections."""

    verdict: Verdict
    model: str
    kind: str
    method: str
    target: str
    raw_probability: float  # the model's uncalibrated probability of the target class (softmax)
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
            "raw_probability": round(self.raw_probability, 6),
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


def _target_index(scanner: Scanner, verdict: Verdict, probs: np.ndarray, target: str | None) -> int:
    classes = scanner.classes
    if target is not None:
        if target not in classes:
            raise MalvisionError(
                f"unknown target class {target!r}; this model's classes: {', '.join(classes)}"
            )
        return classes.index(target)
    if scanner.detector:  # the one score there is: what pushes P(malware) up or down
        return classes.index("malware")
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
    """Verdict and attribution of in-memory ``data``, mapped back to the file, from one read.

    Triage may withhold a verdict (``unknown``); the explanation still shows what the model would key on.
    """
    from malvision.models import is_fitted  # here, not at import: torch loads with the checkpoint

    if not data:
        raise InputError(f"{name}: empty file, nothing to explain")
    if scanner.spec.tile:  # its pixels are tiles from all over the file: no row of it is a range of bytes
        raise MalvisionError(
            f"explain maps an area-averaged byte plot back to the file; this model reads {scanner.spec.tile}x"
            f"{scanner.spec.tile} tiles"
        )
    prepared = prepare(MemorySource.of(name, data), scanner.spec, scanner.vocab)
    verdict = scanner.verdict_of(prepared)
    x = prepared.x
    if x is None:
        raise ConversionError(f"{name}: cannot explain this file: {prepared.problem}")
    probs = scanner.infer([x])[0]
    t = _target_index(scanner, verdict, probs, target)
    model = scanner.checkpoint.model
    heat = attribute(model, x, t, method, steps)
    if is_fitted(model):  # what attribute measured: a fitted model has no gradient
        method = getattr(model, "attribution_method", "occlusion")
    note = None
    if verdict.verdict == "unknown":
        note = (
            f"verdict is unknown ({verdict.reason}); its attribution shows what the model would key on anyway"
        )
    expl = Explanation(
        verdict=verdict,
        model=scanner.checkpoint.model_name,
        kind=scanner.spec.kind,
        method=method,
        target=scanner.classes[t],
        raw_probability=float(probs[t]),
        unit="byte",
        ranges=[],
        sections=[],
        heat=heat,
        profile=np.abs(heat).astype(np.float64),
        note=note,
    )
    if expl.kind in ("features", "histograms"):
        _name_features(expl, model, x, heat, data, prepared.headers, top_k)
    elif expl.kind == "fused":  # the features by name, the image part as ranges of the byte plot
        n = model.n_features
        _name_features(expl, model, x[:n], heat[:n], data, prepared.headers, top_k)
        s = model.image_size
        _locate_ranges(expl, heat[n:].reshape(s, s), "image", x, data, prepared.headers, top_k)
        expl.unit = "feature"
    else:
        _locate_ranges(
            expl, heat, "image" if expl.kind == "views" else expl.kind, x, data, prepared.headers, top_k
        )
        if is_fitted(model):  # an n-gram model: the grams behind the verdict, by name
            _name_grams(expl, model, x, t, scanner.spec.vocab, scanner.classes, top_k)
    return expl


def _name_grams(
    expl: Explanation,
    model: Any,
    x: np.ndarray,
    target: int,
    vocab: tuple[str, ...],
    classes: list[str],
    k: int,
) -> None:
    """The top n-grams of an n-gram model as features: mnemonics (or bytes), weight here and typically;
    and, for a model that reads them, the classes of the nearest training samples, in a note."""
    import torch

    if near := model.nearest(torch.from_numpy(x.astype(np.int64))):
        top = ", ".join(f"{classes[c]} {sim:.2f}" for c, sim in near[:3])
        _add_note(expl, f"nearest training samples (estimated cosine of their n-gram TF-IDF): {top}")

    def token(i: int) -> str:
        if expl.kind == "bytes":
            return f"{i - 1:02x}"
        return vocab[i - 2] if 2 <= i < len(vocab) + 2 else "<unk>"

    for ids, value, typical, part, share in model.top_grams(torch.from_numpy(x.astype(np.int64)), target, k):
        gram = " ".join(token(i) for i in ids)
        what = f"how often the {len(ids)}-gram of {'bytes' if expl.kind == 'bytes' else 'opcodes'} {gram!r} occurs"
        expl.features.append(FeatureShare(gram, value, typical, part, share, label=gram, description=what))


def _add_note(expl: Explanation, text: str) -> None:
    expl.note = f"{expl.note}; {text}" if expl.note else text


def _locate_ranges(
    expl: Explanation,
    heat: np.ndarray,
    kind: str,
    x: np.ndarray,
    data: bytes,
    headers: PEHeaders | None,
    top_k: int,
) -> None:
    """Attribution over byte-plot rows (``kind`` image), bytes or tokens, as ranges in the PE regions."""
    if kind == "image":
        height, expl.plot_width = plot_shape(len(data))
        expl.profile = row_profile(np.clip(heat, 0, None).sum(axis=1), height)
        expl.unit_bytes = expl.plot_width
    else:
        expl.profile = np.clip(heat, 0, None).astype(np.float64)
        if kind == "opcodes":
            expl.unit = "token"
        else:
            expl.plot_width = nataraj_width(len(data))
            if len(data) > len(x):
                _add_note(expl, f"the model reads the first {len(x):,} of {len(data):,} bytes")
    expl.sections = pe_regions(data, headers) if kind != "opcodes" else []
    for a, z, share in top_ranges(expl.profile, top_k):
        start, end = a * expl.unit_bytes, z * expl.unit_bytes
        sec, secs, ent = locate(start, end, expl.sections) if expl.unit == "byte" else (None, (), None)
        expl.ranges.append(ByteRange(start, end, share, expl.unit, sec, secs, ent))


def _name_features(
    expl: Explanation,
    model: Any,
    x: np.ndarray,
    heat: np.ndarray,
    data: bytes,
    headers: PEHeaders | None,
    top_k: int,
) -> None:
    """The top features by absolute attribution, with the imports behind each import feature (for the
    histograms: the bins, which lie all over the file)."""
    typical = model.typical_input()[0].numpy()
    total = float(np.abs(heat).sum()) or 1.0
    pe = expl.kind != "histograms"
    behind = imports_behind(data, headers) if pe else {}
    for i in np.argsort(-np.abs(heat), kind="stable")[:top_k]:
        name = FEATURE_NAMES[i] if pe else HISTOGRAM_NAMES[i]
        share = abs(float(heat[i])) / total
        label, description = feature_label(name) if pe else histogram_label(name)
        expl.features.append(
            FeatureShare(
                name,
                float(x[i]),
                float(typical[i]),
                float(heat[i]),
                share,
                behind.get(name, []),
                label,
                description,
                feature_span(name, headers, len(data)) if pe else None,
            )  # fmt: skip
        )
    expl.unit = "feature"
    expl.sections = pe_regions(data, headers)
    _add_note(expl, "attribution against an average training file")


def write_explanation(
    expl: Explanation, data: bytes, out_dir: Path | str, stem: str | None = None
) -> tuple[Path, Path]:
    """Write ``<stem>.explain.png`` and then ``<stem>.explain.json``, which names it, into ``out_dir``
    atomically: an interrupt waits for both, and a failed write leaves the JSON as it was."""
    out = Path(out_dir)
    stem = stem or Path(expl.verdict.path).name or "input"
    png_path, json_path = out / f"{stem}.explain.png", out / f"{stem}.explain.json"
    png = render_png(expl, data)
    record = json.dumps(expl.to_dict() | {"png": png_path.name}, indent=1).encode()
    with deferred_interrupts(), atomic_writer(json_path) as g, atomic_writer(png_path) as f:
        f.write(png)  # the inner writer lands first: the PNG, then the JSON that names it
        g.write(record)
    return json_path, png_path
