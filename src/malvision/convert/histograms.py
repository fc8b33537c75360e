"""The ``histograms`` input: what a whole file's bytes look like, in 513 numbers, with no parsing.

- the **byte histogram**: each byte value's share of the file (256);
- the **byte-entropy histogram** (Saxe and Berlin, 2015, as EMBER computes it): windows of
  ``WINDOW`` bytes every ``STEP`` bytes, each binned by its entropy (over its bytes' high nibbles,
  doubled, so 0 to 8 bits, in 16 bins of half a bit) and by its high nibbles; each bin's share (16 x 16,
  entropy major). A file shorter than one window is one window;
- the file size, log2.

Shares go in as their square roots, which spreads the small ones a network would otherwise not tell
apart. ``EntropyHistogram`` is fed the same chunks as every other reader of ``prepare``, in memory
bounded by one chunk, whatever the file's size; the byte histogram is the one triage already counts.
"""

from __future__ import annotations

import numpy as np

__all__ = ["HISTOGRAM_NAMES", "N_HISTOGRAM", "STEP", "WINDOW", "EntropyHistogram", "histogram_label"]

WINDOW = 2048
STEP = WINDOW // 2
_BINS = 16
HISTOGRAM_NAMES: tuple[str, ...] = (
    tuple(f"byte_{b:02x}" for b in range(256))
    + tuple(f"entropy_{e}_nibble_{h:x}" for e in range(_BINS) for h in range(_BINS))
    + ("log2_size",)
)
N_HISTOGRAM = len(HISTOGRAM_NAMES)
_LOG2 = np.log2(np.arange(1, WINDOW + 1, dtype=np.float64) / WINDOW)  # log2(count / WINDOW), count >= 1


class EntropyHistogram:
    """The byte-entropy histogram of a stream fed in chunks (``update``), then ``vector``."""

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
        nib = data.reshape(-1, STEP) >> 4
        blocks = len(nib)
        idx = nib + (np.arange(blocks, dtype=np.int64) * _BINS)[:, None]
        counts = np.bincount(idx.ravel(), minlength=blocks * _BINS).reshape(blocks, _BINS)
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

    def vector(self, hist: np.ndarray) -> np.ndarray:
        """The 513 inputs, given the stream's byte histogram (``triage``'s count of the same bytes)."""
        if self.n < WINDOW:  # one window of what there is
            counts = np.bincount(np.frombuffer(self._tail, dtype=np.uint8) >> 4, minlength=_BINS)
            self._add((counts if self._prev is None else counts + self._prev[0])[None])
        total = self.out.sum()
        return np.concatenate(
            [
                np.sqrt(hist / max(self.n, 1)),
                np.sqrt(self.out.ravel() / total if total else self.out.ravel()),
                [np.log2(max(self.n, 1))],
            ]
        ).astype(np.float32)


def histogram_label(name: str) -> tuple[str, str]:
    """The analyst's name and description of input ``name`` (one of ``HISTOGRAM_NAMES``)."""
    if name == "log2_size":
        return "file size", "the file's size in bytes, log2"
    if name.startswith("byte_"):
        return f"byte 0x{name[5:]}", f"how much of the file is byte 0x{name[5:]} (square root of its share)"
    _, e, _, h = name.split("_")
    lo = int(e) / 2
    return (
        f"entropy {lo:g}-{lo + 0.5:g}, bytes 0x{h}0-0x{h}f",
        f"how much of the file lies in {WINDOW}-byte windows of {lo:g} to {lo + 0.5:g} bits of entropy and "
        f"is bytes 0x{h}0 to 0x{h}f (square root of its share)",
    )
