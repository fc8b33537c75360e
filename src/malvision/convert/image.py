"""Nataraj byte plots and the fixed-size images models read.

A byte plot is one byte one 8-bit gray pixel, row-major, with a width chosen from the file size as in
Nataraj et al. 2011 ("Malware images: visualization and automatic classification"). The bytes of a
last partial row are dropped, as in Malimg.

Models read a fixed-size square image made from the byte plot by exact area averaging (a box filter
in integer arithmetic, rounded half up). Integer sums make the result independent of how the rows are
chunked, so a multi-GB file streamed in blocks gives bit-for-bit the image of the same file in memory.
With a tile side (``ConvertSpec.tile``) they read a mosaic of small tiles of the plot at its own
resolution instead (``tile_rows``): fewer bytes, but each with its own value and its neighbours.
"""

from __future__ import annotations

import functools
import struct
import zlib
from collections.abc import Iterable, Iterator
from typing import Any, BinaryIO

import numpy as np

from malvision.convert.spec import MAX_IMAGE_SIZE
from malvision.errors import ConversionError

__all__ = [
    "KB",
    "nataraj_width",
    "plot_shape",
    "byte_plot",
    "iter_plot_rows",
    "resize_plot",
    "resize_rows",
    "tile_rows",
    "EntropyPlot",
    "write_png",
]

KB = 1024
# (exclusive upper bound on file size in bytes, width): Nataraj et al. 2011, Table 1.
WIDTH_TABLE: tuple[tuple[int, int], ...] = (
    (10 * KB, 32),
    (30 * KB, 64),
    (60 * KB, 128),
    (100 * KB, 256),
    (200 * KB, 384),
    (500 * KB, 512),
    (1000 * KB, 768),
)
MAX_WIDTH = 1024
BLOCK_BYTES = 4 * 1024 * 1024  # rows handled per step when streaming
NIBBLES = 16  # the entropy plot counts high nibbles


def nataraj_width(size: int) -> int:
    """Byte-plot width for a file of ``size`` bytes (half-open ranges, KB = 1024 bytes)."""
    if not size >= 0:  # NaN too
        raise ConversionError(f"file size must be at least 0, got {size}")
    for bound, width in WIDTH_TABLE:
        if size < bound:
            return width
    return MAX_WIDTH


def plot_shape(size: int) -> tuple[int, int]:
    """(height, width) of the byte plot of a ``size``-byte file; shorter than a row is an error."""
    width = nataraj_width(size)
    if size < width:
        raise ConversionError(f"{size} bytes is shorter than one {width}-pixel row of a byte plot")
    return size // width, width


def _as_uint8(data: object) -> np.ndarray:
    if isinstance(data, np.ndarray):
        if data.dtype != np.uint8:
            raise ConversionError(f"expected uint8 bytes, got {data.dtype}")
        return data.reshape(-1)
    return np.frombuffer(data, dtype=np.uint8)  # type: ignore[call-overload]


def byte_plot(data: bytes | bytearray | memoryview | np.ndarray) -> np.ndarray:
    """The Nataraj byte plot of ``data`` as a (height, width) uint8 array (a view, no copy)."""
    flat = _as_uint8(data)
    height, width = plot_shape(flat.size)
    return flat[: height * width].reshape(height, width)


def iter_plot_rows(
    chunks: Iterable[bytes | memoryview | np.ndarray], size: int, width: int | None = None
) -> Iterator[np.ndarray]:
    """Regroup a stream of byte chunks of a ``size``-byte file into blocks of whole plot rows
    (``width`` pixels wide; default the Nataraj width for ``size``)."""
    if width is None:
        height, width = plot_shape(size)
    else:
        height = size // width
    block_rows = max(1, BLOCK_BYTES // width)
    need = height * width
    pending = np.empty(block_rows * width, dtype=np.uint8)
    fill = 0
    seen = 0
    for chunk in chunks:
        arr = _as_uint8(chunk)[: max(0, need - seen)]
        seen += arr.size
        pos = 0
        while pos < arr.size:
            take = min(pending.size - fill, arr.size - pos)
            pending[fill : fill + take] = arr[pos : pos + take]
            fill += take
            pos += take
            if fill == pending.size:
                yield pending.reshape(block_rows, width)
                pending = np.empty_like(pending)
                fill = 0
        if seen >= need:
            break
    if seen < need:
        raise ConversionError(f"stream ended after {seen} of {size} bytes")
    if fill:
        yield pending[:fill].reshape(fill // width, width)


@functools.lru_cache(maxsize=4096)
def _overlaps(n_in: int, n_out: int) -> list[tuple[int, int, np.ndarray]]:
    """For each output cell: (first input index, last+1, integer overlap weights).

    Output cell ``i`` covers input interval [i*n_in, (i+1)*n_in) in units where an input cell is
    ``n_out`` wide, so every overlap is an integer and each cell's weights sum to ``n_in``.
    """
    spans = []
    for i in range(n_out):
        lo, hi = i * n_in, (i + 1) * n_in
        k0, k1 = lo // n_out, -(-hi // n_out)
        starts = np.arange(k0, k1, dtype=np.int64) * n_out
        weights = np.minimum(starts + n_out, hi) - np.maximum(starts, lo)
        weights.setflags(write=False)  # cached: shared by every call
        spans.append((k0, k1, weights))
    return spans


def resize_rows(blocks: Iterable[np.ndarray], height: int, width: int, size: int) -> np.ndarray:
    """Area-average a (height, width) plot, given as consecutive row blocks, to (size, size) uint8."""
    if not 1 <= size <= MAX_IMAGE_SIZE:
        raise ConversionError(f"image size must be from 1 to {MAX_IMAGE_SIZE}, got {size}")
    if height < 1 or width < 1:
        raise ConversionError(f"cannot resize an empty {height}x{width} byte plot")
    row_spans = _overlaps(height, size)
    acc = np.zeros((size, width), dtype=np.int64)
    k0 = 0
    first_out = 0
    for block in blocks:
        if block.ndim != 2 or block.shape[1] != width:
            raise ConversionError(f"expected plot rows {width} wide, got a block of shape {block.shape}")
        k1 = k0 + block.shape[0]
        i = first_out
        while i < size and row_spans[i][0] < k1:
            a, b, w = row_spans[i]
            lo, hi = max(a, k0), min(b, k1)
            if lo < hi:
                rows = block[lo - k0 : hi - k0]
                # Interior rows all weigh ``size``: sum them; only the first and last row of the
                # cell's span can carry a partial weight.
                acc[i] += size * rows.sum(axis=0, dtype=np.int64)
                for k in {lo, hi - 1}:
                    if (wk := int(w[k - a])) != size:
                        acc[i] += (wk - size) * block[k - k0].astype(np.int64)
            if b <= k1:
                first_out = i + 1
            i += 1
        k0 = k1
    if k0 != height:
        raise ConversionError(f"got {k0} plot rows, expected {height}")
    col_weights = np.zeros((size, width), dtype=np.float64)
    for j, (a, b, w) in enumerate(_overlaps(width, size)):
        col_weights[j, a:b] = w
    # Every product and partial sum is an integer below 2**53, so float64 is exact here.
    total = (acc.astype(np.float64) @ col_weights.T).astype(np.int64)
    denom = height * width
    return ((total + denom // 2) // denom).astype(np.uint8)


def tile_rows(blocks: Iterable[np.ndarray], height: int, width: int, size: int, tile: int) -> np.ndarray:
    """A (size, size) uint8 mosaic of ``(size // tile) ** 2`` tiles of a (height, width) plot at its own
    resolution, given as consecutive row blocks: tile ``i`` (row-major) is the first ``tile`` pixels of
    ``tile`` consecutive rows from row ``i * (height - tile) // (n - 1)``, so the tiles run evenly from
    the file's first rows to its last in reading order, and each keeps its bytes' own values."""
    if not 1 <= tile <= size or size % tile:
        raise ConversionError(f"tile {tile} must divide the image side {size}")
    if height < tile or width < tile:
        raise ConversionError(f"a {height}x{width} byte plot is smaller than one {tile}x{tile} tile")
    side = size // tile
    n = side * side
    starts = (np.arange(n, dtype=np.int64) * (height - tile)) // max(n - 1, 1)
    rows = (starts[:, None] + np.arange(tile, dtype=np.int64)).ravel()  # tiles overlap in a short plot
    order = np.argsort(rows, kind="stable")
    ordered = rows[order]
    out = np.empty((rows.size, tile), dtype=np.uint8)
    k0 = 0
    for block in blocks:
        if block.ndim != 2 or block.shape[1] != width:
            raise ConversionError(f"expected plot rows {width} wide, got a block of shape {block.shape}")
        k1 = k0 + block.shape[0]
        lo, hi = np.searchsorted(ordered, (k0, k1))
        out[order[lo:hi]] = block[ordered[lo:hi] - k0, :tile]
        k0 = k1
    if k0 != height:
        raise ConversionError(f"got {k0} plot rows, expected {height}")
    return out.reshape(side, side, tile, tile).transpose(0, 2, 1, 3).reshape(size, size)


def resize_plot(plot: np.ndarray, size: int) -> np.ndarray:
    """Area-average a byte plot (height, width) to a (size, size) uint8 image."""
    if plot.ndim != 2 or plot.dtype != np.uint8:
        raise ConversionError(f"expected a 2-D uint8 plot, got {plot.ndim}-D {plot.dtype}")
    height, width = plot.shape
    block_rows = max(1, BLOCK_BYTES // max(width, 1))
    blocks = (plot[r : r + block_rows] for r in range(0, height, block_rows))
    return resize_rows(blocks, height, width, size)


def _entropies(counts: np.ndarray) -> np.ndarray:
    """Shannon entropy (bits) of each row of counts (0 for an empty row), from the nonzero counts only."""
    rows, cols = np.nonzero(counts)
    c = counts[rows, cols].astype(np.float64)
    p = c / counts.sum(axis=1)[rows]
    return np.bincount(rows, weights=-p * np.log2(p), minlength=len(counts))


class EntropyPlot:
    """Entropy of a file's first ``size`` bytes (its byte plot's whole rows) cut into ``side * side``
    equal consecutive windows, laid out row-major as a (side, side) uint8 image, gathered chunk by chunk.

    As EMBER's byte-entropy histogram does, the entropy is that of each byte's high nibble (16 values,
    0 to 4 bits, 4 bits is 255): it tells code, data, text and padding from packed or encrypted runs
    as the byte entropy does, and costs 16 counters a window instead of 256. Row ``i`` covers the same
    share of the file as row ``i`` of the resized byte plot, so those runs light up beside the bytes
    they are made of. Windows of a file shorter than ``side * side`` bytes hold one byte or none
    (entropy 0).
    """

    def __init__(self, size: int, side: int) -> None:
        n = side * side
        self.side, self.bounds = side, (np.arange(n + 1, dtype=np.int64) * size) // n
        self.entropy = np.zeros(n, dtype=np.float64)
        self._hist = np.zeros(NIBBLES, dtype=np.int64)
        self._k = self._pos = 0

    def update(self, chunk: bytes | bytearray | memoryview) -> None:
        arr = _as_uint8(chunk)
        start, self._pos = self._pos, self._pos + arr.size
        arr = arr[: max(0, int(self.bounds[-1]) - start)]  # bytes past the first ``size`` are not plotted
        end = start + arr.size
        if not arr.size or self._k >= len(self.entropy):
            return
        # Windows this chunk reaches: k0 (maybe begun earlier) to k1 (maybe going on past it).
        k0, k1 = self._k, int(np.searchsorted(self.bounds, end, side="right")) - 1
        k1 = min(k1, len(self.entropy) - 1)
        lengths = np.diff(np.clip(self.bounds[k0 : k1 + 2], start, end))
        which = np.repeat(np.arange(k1 - k0 + 1, dtype=np.int64), lengths) * NIBBLES
        counts = np.bincount(which + (arr >> 4), minlength=(k1 - k0 + 1) * NIBBLES).reshape(-1, NIBBLES)
        counts[0] += self._hist
        done = k1 - k0 + (1 if self.bounds[k1 + 1] <= end else 0)  # windows that end in this chunk
        self.entropy[k0 : k0 + done] = _entropies(counts[:done])
        self._hist = counts[done].copy() if done <= k1 - k0 else np.zeros(NIBBLES, dtype=np.int64)
        self._k = k0 + done

    def image(self) -> np.ndarray:
        """The (side, side) uint8 entropy image, once every chunk has gone through ``update``."""
        return np.floor(self.entropy * (255 / 4) + 0.5).astype(np.uint8).reshape(self.side, self.side)


def _compressor(level: int) -> Any:
    """A zlib-format compressor: ISA-L for levels 1-3, the standard library for 0 (stored) and 4-9."""
    if not 0 <= level <= 9:
        raise ConversionError(f"PNG compression level must be 0-9, got {level}")
    if 1 <= level <= 3:
        from isal import isal_zlib

        return isal_zlib.compressobj(level)
    return zlib.compressobj(level)


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(payload, zlib.crc32(kind))
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def write_png(out: BinaryIO, blocks: Iterable[np.ndarray], height: int, width: int, level: int = 1) -> None:
    """Stream an 8-bit grayscale PNG from row blocks, never holding the whole image.

    ``level`` is the zlib level: on executables 1 is about 3x faster than 6 for files ~10% larger.
    Levels 1-3 use ISA-L's deflate (python-isal), several times faster than zlib at the same level;
    the stream is ordinary zlib either way, so every PNG reader takes it.
    """
    out.write(b"\x89PNG\r\n\x1a\n")
    out.write(_png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)))
    comp = _compressor(level)
    rows = 0
    for block in blocks:
        if block.ndim != 2 or block.shape[1] != width:
            raise ConversionError(f"expected plot rows {width} wide, got a block of shape {block.shape}")
        # Filter type 0 (None) before each row.
        framed = np.zeros((block.shape[0], width + 1), dtype=np.uint8)
        framed[:, 1:] = block
        data = comp.compress(framed.tobytes())
        if data:
            out.write(_png_chunk(b"IDAT", data))
        rows += block.shape[0]
    if rows != height:
        raise ConversionError(f"got {rows} plot rows, expected {height}")
    out.write(_png_chunk(b"IDAT", comp.flush()))
    out.write(_png_chunk(b"IEND", b""))
