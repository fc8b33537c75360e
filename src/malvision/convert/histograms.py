"""The ``histograms`` input: what a file's bytes look like, in 1,396 numbers, none read from its PE structure.

Of the whole file, however large:

- the **byte histogram**: each byte value's share (256);
- the **byte-entropy histogram** (Saxe and Berlin, 2015, as EMBER computes it): windows of
  ``WINDOW`` bytes every ``STEP`` bytes, each binned by its entropy (over its bytes' high nibbles,
  doubled, so 0 to 8 bits, in 16 bins of half a bit) and by its high nibbles; each bin's share (16 x 16,
  entropy major). A file shorter than one window is one window;
- the size, log2;
- the **nibble transitions**: how often a byte with high nibble a is followed by one with high nibble b
  (16 x 16, shares): the texture of code, text, tables and compressed data, in order.

Of its start, where headers, the import table and the entry code usually sit:

- the byte-entropy histogram of the first ``HEAD`` bytes (16 x 16);
- the byte histogram of the first ``HEADER`` bytes (256).

And the **printable strings** of the whole file, as the PE feature vector counts them (``STRING_NAMES``,
115 of ``convert.contentfeatures``: how many runs of 5 or more printable bytes, how long, their characters'
distribution, and what they name: URLs, registry keys, paths, command interpreters, ...).

The passes over every byte (nibble counts by block, transitions) are ``_bytepass``'s, in C. Shares go in as
their square roots, which spreads the small ones a network would otherwise not tell
apart. ``Histograms`` is fed the same chunks as every other reader of ``prepare``, in memory bounded by
one chunk, whatever the file's size; the whole file's byte histogram is the one triage already counts.
The transitions, the two views of the start and the strings each added to the ranking on the
source-disjoint folds (``docs/detection.md``). Like EMBER's format-agnostic groups, none of it reads the PE
structure, so it holds for any file, packed or not.
"""

from __future__ import annotations

import numpy as np

from malvision._bytepass import nibble_blocks, nibble_pairs
from malvision.convert.contentfeatures import CONTENT_NAMES
from malvision.convert.pefeatures import FEATURE_NAMES

__all__ = [
    "HEAD",
    "HEADER",
    "HISTOGRAM_NAMES",
    "N_HISTOGRAM",
    "STRING_COLUMNS",
    "STRING_NAMES",
    "STEP",
    "WINDOW",
    "EntropyHistogram",
    "Histograms",
    "histogram_label",
]

WINDOW = 2048
STEP = WINDOW // 2
HEAD = 64 * 1024
HEADER = 4096
_BINS = 16
STRING_NAMES = tuple(n for n in CONTENT_NAMES if n.startswith(("strings_", "marker_")))
STRING_COLUMNS = np.array([FEATURE_NAMES.index(n) for n in STRING_NAMES])  # where the vector has them
_GRID = tuple(f"{e}_nibble_{h:x}" for e in range(_BINS) for h in range(_BINS))
HISTOGRAM_NAMES: tuple[str, ...] = (
    tuple(f"byte_{b:02x}" for b in range(256))
    + tuple(f"entropy_{g}" for g in _GRID)
    + ("log2_size",)
    + tuple(f"pair_{a:x}_{b:x}" for a in range(_BINS) for b in range(_BINS))
    + tuple(f"head_entropy_{g}" for g in _GRID)
    + tuple(f"header_byte_{b:02x}" for b in range(256))
    + STRING_NAMES
)
N_HISTOGRAM = len(HISTOGRAM_NAMES)
_LOG2 = np.log2(np.arange(1, WINDOW + 1, dtype=np.float64) / WINDOW)  # log2(count / WINDOW), count >= 1


def _root_shares(counts: np.ndarray) -> np.ndarray:
    total = counts.sum()
    return np.sqrt(counts / total) if total else np.zeros(counts.shape)


class EntropyHistogram:
    """The byte-entropy histogram of a stream fed in chunks (``update``), then ``shares``."""

    def __init__(self) -> None:
        self.out = np.zeros((_BINS, _BINS), dtype=np.float64)
        self.n = 0
        self._tail = b""  # the bytes after the last whole STEP block
        self._prev: np.ndarray | None = None  # the last whole block's nibble counts

    def update(self, chunk: bytes | bytearray | memoryview) -> None:
        self.n += len(chunk)
        view = memoryview(chunk).cast("B")
        if self._tail:  # complete the block the last chunk left open
            need = STEP - len(self._tail)
            self._tail += bytes(view[:need])
            view = view[need:]
            if len(self._tail) < STEP:
                return
            self._blocks(np.frombuffer(self._tail, dtype=np.uint8))
        whole = len(view) // STEP * STEP
        self._tail = bytes(view[whole:])
        if whole:
            self._blocks(np.frombuffer(view, dtype=np.uint8, count=whole))

    def _blocks(self, data: np.ndarray) -> None:
        """Whole STEP blocks: their nibble counts, and the windows they close."""
        counts = np.empty((len(data) // STEP, _BINS), dtype=np.int64)
        nibble_blocks(data, STEP, counts)
        if self._prev is not None:
            counts = np.concatenate([self._prev, counts])
        self._prev = counts[-1:]
        self._add(counts[:-1] + counts[1:])  # each window is two blocks in a row

    def _add(self, windows: np.ndarray) -> None:
        """Bin (W, 16) nibble counts of windows by their entropy, adding their counts to the histogram."""
        if not len(windows):
            return
        h = -np.where(windows > 0, windows / WINDOW * _LOG2[np.maximum(windows, 1) - 1], 0.0).sum(1) * 2
        rows = np.minimum((h * 2).astype(np.int64), _BINS - 1)
        idx = (rows[:, None] * _BINS + np.arange(_BINS)).ravel()
        self.out += np.bincount(idx, weights=windows.ravel(), minlength=_BINS * _BINS).reshape(_BINS, _BINS)

    def shares(self) -> np.ndarray:
        """The 16 x 16 histogram, row-major, as the square roots of its shares."""
        if self.n < WINDOW:  # one window of what there is
            counts = np.bincount(np.frombuffer(self._tail, dtype=np.uint8) >> 4, minlength=_BINS)
            self._add((counts if self._prev is None else counts + self._prev[0])[None])
        return _root_shares(self.out.ravel())


class Histograms:
    """Every view of ``HISTOGRAM_NAMES`` of a stream fed in chunks (``update``), then ``vector``."""

    def __init__(self) -> None:
        self.whole, self.head = EntropyHistogram(), EntropyHistogram()
        self.pairs = np.zeros(_BINS * _BINS, dtype=np.int64)
        self.header = bytearray()
        self._last = -1  # the high nibble of the last byte so far (-1: none yet)

    def update(self, chunk: bytes | bytearray | memoryview) -> None:
        view = memoryview(chunk).cast("B")
        if not len(view):
            return
        self.whole.update(view)
        if self.head.n < HEAD:
            self.head.update(view[: HEAD - self.head.n])
        if len(self.header) < HEADER:
            self.header += view[: HEADER - len(self.header)]
        self._last = nibble_pairs(view, self.pairs, self._last)

    def vector(self, hist: np.ndarray, features: np.ndarray) -> np.ndarray:
        """The inputs, given the stream's byte histogram and its PE feature vector (``FeatureTap``'s,
        of the same bytes; only its strings are taken)."""
        header = np.bincount(np.frombuffer(bytes(self.header), dtype=np.uint8), minlength=256)
        return np.concatenate(
            [
                np.sqrt(hist / max(self.whole.n, 1)),
                self.whole.shares(),
                [np.log2(max(self.whole.n, 1))],
                _root_shares(self.pairs),
                self.head.shares(),
                np.sqrt(header / max(len(self.header), 1)),
                features[STRING_COLUMNS],
            ]
        ).astype(np.float32)


def histogram_label(name: str) -> tuple[str, str]:
    """The analyst's name and description of input ``name`` (one of ``HISTOGRAM_NAMES``)."""
    if name in STRING_NAMES:
        from malvision.convert.featurelabels import feature_label  # analysts' names, for explain only

        return feature_label(name)
    if name == "log2_size":
        return "file size", "the file's size in bytes, log2"
    part, sep, rest = name.rpartition("byte_")
    if sep:
        where = "the file" if not part else f"the first {HEADER:,} bytes"
        return (
            f"byte 0x{rest}" + (f" in the first {HEADER:,} bytes" if part else ""),
            f"how much of {where} is byte 0x{rest} (square root of its share)",
        )
    if name.startswith("pair_"):
        _, a, b = name.split("_")
        return (
            f"bytes 0x{a}0-0x{a}f then 0x{b}0-0x{b}f",
            f"how often a byte 0x{a}0 to 0x{a}f is followed by one 0x{b}0 to 0x{b}f (square root of the share)",
        )
    head = name.startswith("head_")
    e, h = name.split("_")[-3], name.split("_")[-1]
    lo = int(e) / 2
    where = f"the first {HEAD // 1024} KiB" if head else "the file"
    return (
        f"entropy {lo:g}-{lo + 0.5:g}, bytes 0x{h}0-0x{h}f"
        + (f" in the first {HEAD // 1024} KiB" if head else ""),
        f"how much of {where} lies in {WINDOW}-byte windows of {lo:g} to {lo + 0.5:g} bits of entropy and "
        f"is bytes 0x{h}0 to 0x{h}f (square root of its share)",
    )
