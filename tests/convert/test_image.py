"""Byte plots, the exact area resize, streaming and PNG writing (malvision.convert.image)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from fractions import Fraction

import numpy as np
import pytest
from PIL import Image

from malvision.convert import image
from malvision.convert.image import (
    byte_plot,
    iter_plot_rows,
    nataraj_width,
    plot_shape,
    resize_plot,
    resize_rows,
    tile_rows,
    write_png,
)
from malvision.errors import ConversionError

KB = 1024
# Nataraj et al. 2011, Table 1, written out again here (not imported) so a change to the table fails.
BOUNDS = [(10, 32, 64), (30, 64, 128), (60, 128, 256), (100, 256, 384), (200, 384, 512), (500, 512, 768)]
BOUNDS.append((1000, 768, 1024))


def odd_chunks(data: bytes, sizes: tuple[int, ...] = (1, 4099, 77, 65536, 3)) -> Iterator[bytes]:
    """Split ``data`` into chunks of cycling, awkward sizes."""
    pos, i = 0, 0
    while pos < len(data):
        n = sizes[i % len(sizes)]
        yield data[pos : pos + n]
        pos += n
        i += 1


# --- width rule and plot shape -------------------------------------------------------------------


@pytest.mark.parametrize(("kb", "below", "at"), BOUNDS)
def test_nataraj_width_on_both_sides_of_every_boundary(kb: int, below: int, at: int) -> None:
    bound = kb * KB
    assert nataraj_width(bound - 1) == below
    assert nataraj_width(bound) == at
    assert nataraj_width(bound + 1) == at


@pytest.mark.parametrize(
    ("size", "width"), [(0, 32), (1, 32), (32, 32), (1000 * KB + 1, 1024), (2**40, 1024)]
)
def test_nataraj_width_extremes(size: int, width: int) -> None:
    assert nataraj_width(size) == width


def test_nataraj_width_negative_is_an_error() -> None:
    with pytest.raises(ConversionError):
        nataraj_width(-1)


SHAPE_SIZES = sorted({kb * KB + d for kb, _, _ in BOUNDS for d in (-1, 0, 1)} | {32, 33, 63, 64, 1023, 5000})


@pytest.mark.parametrize("size", SHAPE_SIZES)
def test_plot_shape_drops_only_the_partial_last_row(size: int) -> None:
    height, width = plot_shape(size)
    assert width == nataraj_width(size)
    assert height == size // width
    assert height * width <= size < (height + 1) * width


def test_plot_shape_examples() -> None:
    assert plot_shape(10 * KB - 1) == (319, 32)  # 10239 // 32, 31 bytes dropped
    assert plot_shape(10 * KB) == (160, 64)
    assert plot_shape(1000 * KB) == (1000, 1024)
    assert plot_shape(32) == (1, 32)


@pytest.mark.parametrize("size", [0, 1, 31])
def test_plot_shape_shorter_than_one_row_is_an_error(size: int) -> None:
    with pytest.raises(ConversionError, match="shorter than one 32-pixel row"):
        plot_shape(size)


# --- byte plot ---------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [32, 10 * KB - 1, 10 * KB, 70_001])
def test_byte_plot_rows_flatten_back_to_the_bytes(rng: np.random.Generator, size: int) -> None:
    data = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
    plot = byte_plot(data)
    height, width = plot_shape(size)
    assert plot.shape == (height, width)
    assert plot.dtype == np.uint8
    assert plot.tobytes() == data[: height * width]
    assert size - plot.size < width


def test_byte_plot_accepts_every_buffer_type(rng: np.random.Generator) -> None:
    data = rng.integers(0, 256, 5000, dtype=np.uint8).tobytes()
    ref = byte_plot(data)
    for buf in (bytearray(data), memoryview(data), np.frombuffer(data, np.uint8).reshape(-1, 8)):
        assert np.array_equal(byte_plot(buf), ref)


def test_byte_plot_refuses_other_dtypes_and_short_data() -> None:
    with pytest.raises(ConversionError, match="uint8"):
        byte_plot(np.zeros(100, dtype=np.int16))
    with pytest.raises(ConversionError):
        byte_plot(b"\x01" * 31)


# --- streaming rows ----------------------------------------------------------------------------


@pytest.mark.parametrize("block_bytes", [1, 100, 5000, image.BLOCK_BYTES])
def test_iter_plot_rows_regroups_any_chunking_into_whole_rows(
    rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch, block_bytes: int
) -> None:
    monkeypatch.setattr(image, "BLOCK_BYTES", block_bytes)
    data = rng.integers(0, 256, 70_001, dtype=np.uint8).tobytes()
    height, width = plot_shape(len(data))
    blocks = list(iter_plot_rows(odd_chunks(data), len(data)))
    assert all(b.ndim == 2 and b.shape[1] == width for b in blocks)
    assert all(b.shape[0] <= max(1, block_bytes // width) for b in blocks)
    assert np.array_equal(np.concatenate(blocks), byte_plot(data))
    assert sum(b.shape[0] for b in blocks) == height


def test_iter_plot_rows_ignores_bytes_past_size_and_refuses_a_short_stream(rng: np.random.Generator) -> None:
    data = rng.integers(0, 256, 4096, dtype=np.uint8).tobytes()
    rows = np.concatenate(list(iter_plot_rows([data, b"extra bytes"], len(data))))
    assert rows.tobytes() == data
    with pytest.raises(ConversionError, match="stream ended"):
        list(iter_plot_rows([data[:1000]], len(data)))


# --- area resize -------------------------------------------------------------------------------


def reference_loops(plot: np.ndarray, size: int) -> np.ndarray:
    """Area average by definition: exact fractions, each output cell an (h/size) x (w/size) box."""
    height, width = plot.shape
    out = np.zeros((size, size), dtype=np.uint8)
    for i in range(size):
        r0, r1 = Fraction(i * height, size), Fraction((i + 1) * height, size)
        for j in range(size):
            c0, c1 = Fraction(j * width, size), Fraction((j + 1) * width, size)
            total = Fraction(0)
            for r in range(int(r0), min(height, int(np.ceil(r1)))):
                wr = min(r + 1, r1) - max(r, r0)
                for c in range(int(c0), min(width, int(np.ceil(c1)))):
                    wc = min(c + 1, c1) - max(c, c0)
                    total += int(plot[r, c]) * wr * wc
            mean = total / ((r1 - r0) * (c1 - c0))
            out[i, j] = int(mean + Fraction(1, 2))  # floor(x + 1/2): round half up
    return out


def overlap_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) integer overlaps, in units where an input cell is n_out long, an output n_in."""
    i = np.arange(n_out)[:, None]
    k = np.arange(n_in)[None, :]
    return np.clip(np.minimum((k + 1) * n_out, (i + 1) * n_in) - np.maximum(k * n_out, i * n_in), 0, None)


def reference_float(plot: np.ndarray, size: int) -> np.ndarray:
    """The same filter by brute-force matrices in float64 (exact: every value is an integer < 2**53)."""
    height, width = plot.shape
    rows = overlap_matrix(height, size).astype(np.float64)
    cols = overlap_matrix(width, size).astype(np.float64)
    total = rows @ plot.astype(np.float64) @ cols.T
    return np.floor(total / (height * width) + 0.5).astype(np.uint8)


def test_overlap_matrix_rows_cover_each_output_exactly() -> None:
    for n_in, n_out in [(7, 3), (3, 7), (64, 64), (1000, 224)]:
        m = overlap_matrix(n_in, n_out)
        assert (m.sum(axis=1) == n_in).all()  # an output cell is n_in long
        assert (m.sum(axis=0) == n_out).all()  # an input cell is n_out long


TINY_SHAPES = [(1, 32, 8), (3, 32, 8), (5, 32, 5), (37, 32, 8), (9, 64, 16), (12, 32, 12), (2, 32, 7)]


@pytest.mark.parametrize(("height", "width", "size"), TINY_SHAPES)
def test_resize_matches_the_exact_fraction_definition(
    rng: np.random.Generator, height: int, width: int, size: int
) -> None:
    plot = rng.integers(0, 256, (height, width), dtype=np.uint8)
    expected = reference_loops(plot, size)
    assert np.array_equal(reference_float(plot, size), expected)
    assert np.array_equal(resize_plot(plot, size), expected)


SHAPES = [
    (3, 32, 64),  # upsampling both ways
    (10, 64, 224),
    (160, 64, 128),  # rows down, columns up
    (64, 64, 64),  # identity
    (997, 256, 64),  # downsampling, nothing divides
    (1000, 768, 224),
    (2000, 1024, 128),
]


@pytest.mark.parametrize(("height", "width", "size"), SHAPES)
def test_resize_matches_the_brute_force_float_reference(
    rng: np.random.Generator, height: int, width: int, size: int
) -> None:
    plot = rng.integers(0, 256, (height, width), dtype=np.uint8)
    out = resize_plot(plot, size)
    assert out.shape == (size, size)
    assert out.dtype == np.uint8
    assert np.array_equal(out, reference_float(plot, size))


def test_resize_of_the_same_size_is_the_identity(rng: np.random.Generator) -> None:
    plot = rng.integers(0, 256, (64, 64), dtype=np.uint8)
    assert np.array_equal(resize_plot(plot, 64), plot)


def test_resize_rounds_half_up() -> None:
    plot = np.array([[1, 2] * 16], dtype=np.uint8).repeat(2, axis=0)  # 2x32, pairs average to 1.5
    assert (resize_plot(plot, 16) == 2).all()
    assert (resize_plot(plot[:1, :2], 1) == 2).all()  # not banker's rounding (1.5 -> 2, 2.5 -> 3)
    assert (resize_plot(np.array([[2, 3] * 16], dtype=np.uint8), 1) == 3).all()
    plot = np.array([[0, 1] * 16, [0, 0] * 16], dtype=np.uint8)  # the mean is 0.25
    assert (resize_plot(plot, 1) == 0).all()
    assert (resize_plot(plot[:1], 1) == 1).all()  # the mean is 0.5


@pytest.mark.parametrize("value", [0, 1, 128, 255])
@pytest.mark.parametrize(("height", "width", "size"), [(3, 32, 224), (997, 256, 64), (37, 32, 5)])
def test_resize_keeps_a_constant_plot_constant(value: int, height: int, width: int, size: int) -> None:
    plot = np.full((height, width), value, dtype=np.uint8)
    assert (resize_plot(plot, size) == value).all()


def test_resize_is_deterministic(rng: np.random.Generator) -> None:
    data = rng.integers(0, 256, 123_457, dtype=np.uint8).tobytes()
    first = resize_plot(byte_plot(data), 64)
    assert np.array_equal(resize_plot(byte_plot(bytes(data)), 64), first)
    assert first.std() > 0  # random bytes do not give a flat image


@pytest.mark.parametrize("size", [64, 128, 224])
@pytest.mark.parametrize("block_bytes", [1, 1000, 33_333])
def test_resize_does_not_depend_on_row_blocking(
    rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch, size: int, block_bytes: int
) -> None:
    data = rng.integers(0, 256, 300_001, dtype=np.uint8).tobytes()
    whole = resize_plot(byte_plot(data), size)
    monkeypatch.setattr(image, "BLOCK_BYTES", block_bytes)
    height, width = plot_shape(len(data))
    streamed = resize_rows(iter_plot_rows(odd_chunks(data), len(data)), height, width, size)
    assert np.array_equal(streamed, whole)
    assert np.array_equal(resize_plot(byte_plot(data), size), whole)


@pytest.mark.parametrize(("size", "tile"), [(64, 8), (64, 16), (32, 32), (48, 4)])
@pytest.mark.parametrize("n_bytes", [9_000, 300_001])
@pytest.mark.parametrize("block_bytes", [1, 1000, 33_333])
def test_tiles_are_the_plot_at_its_own_resolution_in_any_row_blocking(
    rng: np.random.Generator,
    monkeypatch: pytest.MonkeyPatch,
    size: int,
    tile: int,
    n_bytes: int,
    block_bytes: int,
) -> None:
    data = rng.integers(0, 256, n_bytes, dtype=np.uint8).tobytes()
    plot = byte_plot(data)
    height, width = plot.shape
    monkeypatch.setattr(image, "BLOCK_BYTES", block_bytes)
    mosaic = tile_rows(iter_plot_rows(odd_chunks(data), len(data)), height, width, size, tile)
    side = size // tile
    assert mosaic.shape == (size, size) and mosaic.dtype == np.uint8
    tops = []
    for i in range(side * side):  # tile i, row-major, is the plot's own pixels at its left edge
        r, c = divmod(i, side)
        got = mosaic[r * tile : (r + 1) * tile, c * tile : (c + 1) * tile]
        top = next(t for t in range(height - tile + 1) if np.array_equal(plot[t : t + tile, :tile], got))
        tops.append(top)
    assert tops[0] == 0 and tops[-1] == (height - tile if side > 1 else 0)  # from the first rows to the last
    steps = np.diff(tops)
    assert (steps >= 0).all() and (steps.size == 0 or np.ptp(steps) <= 1)  # evenly spread, in reading order


def test_tiles_refuse_a_plot_smaller_than_a_tile_or_a_tile_that_does_not_divide(
    rng: np.random.Generator,
) -> None:
    plot = rng.integers(0, 256, (7, 32), dtype=np.uint8)
    with pytest.raises(ConversionError, match="smaller than one 8x8 tile"):
        tile_rows([plot], 7, 32, 64, 8)
    with pytest.raises(ConversionError, match="tile 12 must divide the image side 64"):
        tile_rows([plot], 7, 32, 64, 12)
    with pytest.raises(ConversionError, match="got 7 plot rows, expected 9"):
        tile_rows([plot], 9, 32, 64, 8)


def test_resize_refuses_bad_arguments(rng: np.random.Generator) -> None:
    plot = rng.integers(0, 256, (10, 32), dtype=np.uint8)
    with pytest.raises(ConversionError, match="from 1 to 4096, got 0"):
        resize_plot(plot, 0)
    with pytest.raises(ConversionError, match="from 1 to 4096, got 1000000"):  # 7 TiB it would ask for
        resize_plot(plot, 10**6)
    with pytest.raises(ConversionError, match="at least 0, got nan"):
        plot_shape(float("nan"))
    with pytest.raises(ConversionError, match="2-D uint8"):
        resize_plot(plot.astype(np.int32), 8)
    with pytest.raises(ConversionError, match="2-D uint8"):
        resize_plot(plot[None], 8)
    with pytest.raises(ConversionError, match="empty"):
        resize_plot(np.zeros((0, 32), dtype=np.uint8), 8)
    with pytest.raises(ConversionError, match="rows"):
        resize_rows([plot], 11, 32, 8)  # fewer rows than announced
    with pytest.raises(ConversionError, match="32 wide"):
        resize_rows([plot[:, :16]], 10, 32, 8)


# --- PNG ---------------------------------------------------------------------------------------


def png_of(blocks: list[np.ndarray], height: int, width: int, level: int = 1) -> bytes:
    buf = io.BytesIO()
    write_png(buf, blocks, height, width, level)
    return buf.getvalue()


@pytest.mark.parametrize("level", [0, 1, 6, 9])
def test_write_png_reads_back_as_the_byte_plot(
    rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch, level: int
) -> None:
    monkeypatch.setattr(image, "BLOCK_BYTES", 3000)  # many blocks, many IDAT chunks
    data = (rng.integers(0, 256, 40_000, dtype=np.uint8).tobytes() + bytes(40_000))[:75_001]
    height, width = plot_shape(len(data))
    png = png_of(list(iter_plot_rows(odd_chunks(data), len(data))), height, width, level)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    # zlib (levels 0, 4-9) emits as it goes even on this small input; ISA-L (1-3) buffers small inputs,
    # and is shown to stream in test_write_png_streams_with_isal.
    assert png.count(b"IDAT") > (2 if level in (0, 6, 9) else 0)
    with Image.open(io.BytesIO(png)) as im:
        im.load()
        assert im.mode == "L"
        assert im.size == (width, height)
        assert np.array_equal(np.asarray(im), byte_plot(data))


def test_write_png_levels_trade_size_only(rng: np.random.Generator) -> None:
    plot = byte_plot(bytes(50_000) + rng.integers(0, 4, 50_000, dtype=np.uint8).tobytes())
    stored, smallest = png_of([plot], *plot.shape, level=0), png_of([plot], *plot.shape, level=9)
    assert len(smallest) < len(stored) / 4
    with Image.open(io.BytesIO(stored)) as a, Image.open(io.BytesIO(smallest)) as b:
        assert np.array_equal(np.asarray(a), np.asarray(b))


def test_write_png_refuses_a_wrong_row_count_or_width(rng: np.random.Generator) -> None:
    plot = rng.integers(0, 256, (10, 32), dtype=np.uint8)
    with pytest.raises(ConversionError, match="rows"):
        png_of([plot], 11, 32)
    with pytest.raises(ConversionError, match="32 wide"):
        png_of([plot[:, :8]], 10, 32)


def test_write_png_streams_with_isal(rng: np.random.Generator) -> None:
    """Level 1 (ISA-L) writes IDAT chunks while rows arrive, not all at the end."""
    data = rng.integers(0, 256, 24 * 1024 * 1024, dtype=np.uint8)
    plot = byte_plot(data)
    blocks = [plot[r : r + 4096] for r in range(0, plot.shape[0], 4096)]
    png = png_of(blocks, *plot.shape, 1)
    assert png.count(b"IDAT") > 2
    with Image.open(io.BytesIO(png)) as im:
        assert np.array_equal(np.asarray(im), plot)


@pytest.mark.parametrize("size", [1, 100, 4096, 4097, 70_001])
@pytest.mark.parametrize("piece", [1, 13, 65_536])
def test_entropy_plot_is_the_nibble_entropy_of_equal_windows_in_any_chunking(size: int, piece: int) -> None:
    from malvision.convert.image import EntropyPlot

    rng = np.random.default_rng(size)
    data = rng.integers(0, 256, size, dtype=np.uint8)
    data[size // 2 :] = 7  # a constant half: entropy 0 there
    plot = EntropyPlot(size, 8)
    for i in range(0, size, piece):
        plot.update(data[i : i + piece].tobytes())
    got = plot.image()
    bounds = (np.arange(65) * size) // 64
    want = []
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        counts = np.bincount(data[a:b] >> 4, minlength=16)  # high nibbles, as EMBER's byte-entropy histogram
        p = counts[counts > 0] / max(b - a, 1)
        want.append(np.floor(-(p * np.log2(p)).sum() * 255 / 4 + 0.5) if b > a else 0)
    assert got.shape == (8, 8) and got.dtype == np.uint8
    assert got.ravel().tolist() == want
    if size > 1000:
        assert got.ravel()[-1] == 0 and got.ravel()[0] > 100  # the constant end, the random start
