"""What a dataset holds: counts per class and group, sample sizes, the cache's conversion settings."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from malvision.data.cache import CachedDataset
from malvision.data.records import RawDataset

__all__ = ["ClassCount", "Summary", "summarize"]


@dataclass(frozen=True)
class ClassCount:
    """One class: samples, distinct groups and median sample size."""

    label: str
    n: int
    groups: int
    median_size: float


@dataclass
class Summary:
    """The numbers ``malvision data info`` prints."""

    name: str
    format: str
    n: int
    classes: list[ClassCount]
    n_groups: int
    sizes: tuple[int, float, float, int]  # min, median, mean, max (bytes)
    spec: dict[str, Any] | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)
    top_groups: list[tuple[str, int]] = field(default_factory=list)
    lengths: tuple[int, float, float, int] | None = None  # sequence caches: tokens per sample
    collections: list[tuple[str, int, int]] = field(default_factory=list)  # (collection, files, groups)
    pe_types: dict[str, dict[str, int]] = field(default_factory=dict)  # class -> PE type -> files


def summarize(ds: RawDataset | CachedDataset, top: int = 10) -> Summary:
    """Counts per class and group, and size statistics, of any dataset ``open_dataset`` returns."""
    recs = ds.records
    sizes = np.asarray([r.size for r in recs], dtype=np.int64)
    by_class: dict[str, list[int]] = {}
    for k, r in enumerate(recs):
        by_class.setdefault(r.label, []).append(k)
    classes = [
        ClassCount(
            label,
            len(ix),
            len({recs[k].group for k in ix if recs[k].group is not None}),
            float(np.median(sizes[ix])),
        )
        for label, ix in sorted(by_class.items())
    ]
    groups = Counter(r.group for r in recs if r.group is not None)
    spec = None
    lengths = None
    if isinstance(ds, CachedDataset):
        spec = ds.spec.to_dict()
        spec.pop("vocab", None)
        if ds.codebook:
            spec["codebook"] = len(ds.codebook)
        if ds.spec.fixed_shape is None and len(ds):
            n = ds.lengths
            lengths = (int(n.min()), float(np.median(n)), float(n.mean()), int(n.max()))
    stats = (
        (int(sizes.min()), float(np.median(sizes)), float(sizes.mean()), int(sizes.max()))
        if sizes.size
        else (0, 0.0, 0.0, 0)
    )
    return Summary(
        name=ds.name,
        format=ds.format,
        n=len(recs),
        classes=classes,
        n_groups=len(groups),
        sizes=stats,
        spec=spec,
        skipped=list(ds.skipped),
        top_groups=groups.most_common(top),
        lengths=lengths,
        collections=_collections(recs),
        pe_types={
            label: dict(sorted(Counter(recs[k].pe_type or "not a PE" for k in ix).items()))
            for label, ix in sorted(by_class.items())
            if any(recs[k].pe_type for k in ix)
        },
    )


def _collections(recs: list[Any]) -> list[tuple[str, int, int]]:
    """(collection, files, groups) of every collection the samples come from, largest first."""
    files: Counter[str] = Counter()
    groups: dict[str, set[str | None]] = {}
    for r in recs:
        if r.collection:
            files[r.collection] += 1
            groups.setdefault(r.collection, set()).add(r.group)
    return [(c, n, len(groups[c])) for c, n in files.most_common()]
