"""From model input back to the file: attribution profiles as byte ranges, and the PE regions
(headers, sections, overlay) they fall in.

The model image is an exact area average of the Nataraj byte plot, so model pixel (i, j) is shared
among the plot rows [i*H/S, (i+1)*H/S) by their overlap, and plot row r holds bytes [r*W, (r+1)*W):
ranges found on an image model are whole plot rows (W bytes each). For ``bytes`` position i is byte
offset i; for ``opcodes`` it is token i (no byte offsets). Ranges merge neighbouring high-attribution
regions and carry their share of the total positive attribution.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from malvision.pe import HEAD_BYTES, PEHeaders, parse_or_none
from malvision.triage import entropy_bits

__all__ = ["Region", "ByteRange", "row_profile", "top_ranges", "pe_regions", "locate"]

MAX_BINS = 1024  # a long attribution profile is summed into at most this many bins before ranking
HOT = 0.2  # a bin is "hot" when it holds at least this share of the hottest bin's attribution
GAP = 2  # hot runs this many cold bins apart (or closer) merge into one range


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


def pe_regions(data: bytes, headers: PEHeaders | None = None) -> list[Region]:
    """Headers, sections (by raw file offset) and overlay of a PE file, with entropy; [] if not a PE.

    ``headers`` are the file's parsed PE headers when the caller has them."""
    if data[:2] != b"MZ":
        return []
    headers = headers or parse_or_none(data[:HEAD_BYTES])
    if headers is None:
        return []
    view = memoryview(data)  # no copies of the sections
    return [Region(n, a, z, entropy_bits(view[a:z])) for n, a, z in headers.regions(len(data))]


def locate(start: int, end: int, regions: list[Region]) -> tuple[str | None, tuple[str, ...], float | None]:
    """(region holding most of [start, end), every region it touches in file order, that one's entropy)."""
    hits = [(min(end, r.end) - max(start, r.start), r) for r in regions if r.start < end and start < r.end]
    if not hits:
        return None, (), None
    best = max(hits, key=lambda h: h[0])[1]
    return best.name, tuple(dict.fromkeys(r.name for _, r in hits)), best.entropy
