"""Open data for a model and score a trained model on it."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from malvision.calibration import detector_score, softmax
from malvision.card import training_ids
from malvision.checkpoint import Checkpoint
from malvision.convert.spec import ConvertSpec, input_name
from malvision.data.loader import make_loader
from malvision.errors import DatasetError
from malvision.evaluate.detection import as_scanned, scanned_metrics, unscored
from malvision.evaluate.metrics import classification_metrics
from malvision.train.predict import predict_logits

__all__ = ["open_cache", "evaluate_checkpoint", "caveats"]


def open_cache(
    data: Path | str, spec: ConvertSpec | None = None, progress: Any = None, image_size: int = 64
) -> Any:
    """A ``CachedDataset`` for ``data``: the cache itself, or one built once under ~/.cache/malvision.

    Raw datasets (Malimg tree, binary tree, opcode tree, zip, BIG2015, CSV) are converted with ``spec``
    (default: opcodes for opcode trees, ``image_size`` square images otherwise) into a cache keyed by
    path and spec.
    """
    from malvision.data.build import cache_home
    from malvision.data.cache import CachedDataset, is_cache
    from malvision.data.cache_write import write_cache
    from malvision.data.detect import detect_format, open_dataset

    p = Path(data)
    if is_cache(p):
        return CachedDataset(p)
    fmt = detect_format(p)
    if spec is None:
        spec = (
            ConvertSpec(kind="opcodes")
            if fmt == "opcodes"
            else ConvertSpec(kind="image", image_size=image_size)
        )
    elif spec.kind == "opcodes":
        spec = ConvertSpec(kind="opcodes", max_len=spec.max_len)  # caches keep every token
    key = hashlib.sha256(f"{p.resolve()}|{sorted(spec.to_dict().items())}".encode()).hexdigest()[:16]
    dest = cache_home() / "caches" / f"{p.name}-{spec.kind}-{key}"
    if is_cache(dest) and (ds := CachedDataset(dest)).triaged:  # an older cache records no triage: rebuilt
        return ds
    with open_dataset(p) as raw:
        n, _ = write_cache(raw, dest, spec, progress=progress, overwrite=True)
    if n == 0:
        raise DatasetError(f"{p}: no sample could be converted")
    return CachedDataset(dest)


def evaluate_checkpoint(
    ck: Checkpoint, ds: Any, max_len: int | None = None, seen: set[str] | None = None
) -> dict[str, Any]:
    """Metrics of ``ck`` on every sample of ``ds`` whose label is one of the model's classes. A detector's
    files are called as ``scan`` calls them: its card's score against its card's threshold. Samples of
    its card's training lists or of ``seen`` are counted and scored apart (``unseen``)."""
    spec = ConvertSpec.from_dict(ck.spec)
    data, reads = input_name(ds.spec.to_dict()), input_name(ck.spec)
    if data != reads:
        raise DatasetError(
            f"{ds.path}: data is {data} but the model reads {reads}; rebuild the cache with the model's settings"
        )
    ds.read_as(spec)
    model_classes = list(ck.classes)
    mapping = {i: model_classes.index(c) for i, c in enumerate(ds.classes) if c in model_classes}
    if not mapping:
        raise DatasetError(f"{ds.path}: none of its labels {list(ds.classes)} is a class of the model")
    idx = np.flatnonzero(np.isin(ds.labels, list(mapping)))
    logits, labels = predict_logits(
        ck.model, make_loader(ds, idx, 64, shuffle=False, max_len=max_len or spec.max_len)
    )
    probs = softmax(logits)
    y = np.array([mapping[int(v)] for v in labels])
    card = (ck.extra or {}).get("card", {})
    pred = None
    if sorted(model_classes) == ["benign", "malware"]:  # a detector: the verdicts `scan` gives
        malware = model_classes.index("malware")
        threshold = float(card.get("threshold", 0.5))
        score = detector_score(logits, malware, float(card.get("temperature", 1.0)), card.get("platt"))
        unknown = [ds.records[i].unknown for i in idx]  # scan calls these unknown: never flagged
        scanned = as_scanned(score, unknown)
        pred = np.where(scanned >= threshold, malware, 1 - malware)
    m = classification_metrics(y, probs, model_classes, pred)
    if pred is not None:
        m |= scanned_metrics((y == malware).astype(int), scanned)  # the rates a scan's verdicts give
        m["threshold"] = threshold
        m["unscored"] = unscored((y == malware).astype(int), unknown)
        if not getattr(ds, "triaged", True):
            m["unscored"]["recorded"] = False
    if ds.spec.fixed_shape is None and ds.spec.max_len < spec.max_len:  # the cache cut what the model reads
        m["cut_samples"] = {
            "n": int((np.asarray(ds.lengths)[idx] >= ds.spec.max_len).sum()),
            "cache_max_len": ds.spec.max_len,
            "model_max_len": spec.max_len,
        }
    m["skipped_unknown_labels"] = int(len(ds) - len(idx))
    # Samples the model trained on (by sample id or sha256, from its card) are not a test of it.
    seen = training_ids(card) | (seen or set())  # ``seen``: a run's own split, where it has no card
    if seen:
        keys = [(ds.records[i].id, ds.records[i].sha256) for i in idx]
        fresh = np.array([a not in seen and b not in seen for a, b in keys])
        m["n_seen_in_training"] = int((~fresh).sum())
        if fresh.any() and not fresh.all():
            sub = classification_metrics(
                y[fresh], probs[fresh], model_classes, None if pred is None else pred[fresh]
            )
            m["unseen"] = {k: sub[k] for k in ("n", "accuracy", "macro_f1", "per_class")}
    return m


def caveats(m: dict[str, Any]) -> list[str]:
    """What an ``evaluate`` figure needs said beside it: samples cut by the cache, samples the model
    trained on, and files a scan calls unknown."""
    notes = []
    if (cut := m.get("cut_samples")) and cut["n"]:
        notes.append(
            f"warning: {cut['n']} of {m['n']} samples are cut at {cut['cache_max_len']:,} tokens in this "
            f"cache, where the model reads {cut['model_max_len']:,}: rebuild it with --max-len "
            f"{cut['model_max_len']} for the model's own figures"
        )
    if m.get("n_seen_in_training"):
        notes.append(f"warning: {m['n_seen_in_training']} of {m['n']} samples were used to train this model")
    if (u := m.get("unscored")) and u.get("recorded") is False:
        notes.append(
            "warning: this cache predates format 3 and does not record which files a scan calls unknown; "
            "rebuild it (malvision data build) for the figures a scan's verdicts give"
        )
    elif u and u["malware"] + u["benign"]:
        why = ", ".join(f"{k} {v}" for k, v in u["reasons"].items())
        notes.append(
            f"note: scan calls {u['malware']} malware and {u['benign']} benign files unknown ({why}): "
            "counted as not flagged"
        )
    return notes
