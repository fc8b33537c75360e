"""Fuzz conversion: streamed byte plots equal in-memory ones for any chunking; sequences, opcodes and
BIG2015 hex dumps parse or raise their one error class."""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fuzz.strategies import fuzz, mutated
from malvision.convert import image as cimage
from malvision.convert.image import byte_plot, iter_plot_rows, plot_shape, resize_plot, resize_rows
from malvision.convert.opcodes import OpcodeReader, parse_opcodes
from malvision.convert.sequence import byte_sequence, pad_batch
from malvision.data.big2015 import parse_bytes_dump
from malvision.errors import ConversionError, DatasetError


def _split(data: bytes, cuts: list[int], kinds: list[int]) -> list[object]:
    """``data`` cut at ``cuts`` (empty pieces allowed), as bytes, memoryview or numpy chunks."""
    bounds = sorted(c % (len(data) + 1) for c in cuts)
    pieces, start = [], 0
    for i, end in enumerate([*bounds, len(data)]):
        piece = data[start:end]
        kind = kinds[i % len(kinds)] if kinds else 0
        pieces.append(
            piece if kind == 0 else memoryview(piece) if kind == 1 else np.frombuffer(piece, dtype=np.uint8)
        )
        start = end
    return pieces


@st.composite
def plot_input(draw: st.DrawFn, max_size: int) -> bytes:
    """Bytes of any length up to ``max_size`` (seeded numpy for the big ones: hypothesis stays fast)."""
    if draw(st.booleans()):
        return draw(st.binary(max_size=min(max_size, 4096)))
    n = draw(st.integers(0, max_size))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    return rng.integers(0, draw(st.sampled_from([2, 16, 256])), n, dtype=np.uint8).tobytes()


@fuzz(150)
@given(
    plot_input(1_100_000),
    st.lists(st.integers(0, 2**31), max_size=12),
    st.lists(st.integers(0, 2), max_size=3),
    st.integers(1, 300),
    st.integers(1, 1 << 16),
)
def test_streamed_plot_equals_the_plot_in_memory(
    data: bytes, cuts: list[int], kinds: list[int], size: int, block: int
) -> None:
    """Any chunking and any row-block size give bit-for-bit the in-memory plot and resized image."""
    with mock.patch.object(cimage, "BLOCK_BYTES", block):
        try:
            height, width = plot_shape(len(data))
        except ConversionError:
            assert len(data) < 32
            with pytest.raises(ConversionError):
                byte_plot(data)
            return
        plot = byte_plot(data)
        assert plot.shape == (height, width)
        rows = list(iter_plot_rows(_split(data, cuts, kinds), len(data)))
        assert all(r.ndim == 2 and r.shape[1] == width for r in rows)
        assert np.array_equal(np.concatenate(rows), plot)
        streamed = resize_rows(iter_plot_rows(_split(data, cuts, kinds), len(data)), height, width, size)
        assert streamed.dtype == np.uint8 and streamed.shape == (size, size)
        assert np.array_equal(streamed, resize_plot(plot, size))
        if size == 1:
            assert abs(int(streamed[0, 0]) - plot.mean()) <= 0.5 + 1e-9


@fuzz(100)
@given(
    st.binary(min_size=32, max_size=5000), st.integers(1, 5000), st.lists(st.integers(0, 2**31), max_size=5)
)
def test_a_stream_that_ends_early_is_a_conversion_error(data: bytes, short: int, cuts: list[int]) -> None:
    height, width = plot_shape(len(data))
    short = short % (height * width)  # fewer bytes than the plot's whole rows need
    with pytest.raises(ConversionError, match="stream ended"):
        list(iter_plot_rows(_split(data[:short], cuts, [0]), len(data)))


@fuzz(150)
@given(st.binary(max_size=3000), st.integers(-3, 4000))
def test_byte_sequence(data: bytes, max_len: int) -> None:
    if max_len < 1 or not data:
        with pytest.raises(ConversionError):
            byte_sequence(data, max_len)
        return
    seq = byte_sequence(data, max_len)
    assert seq.dtype == np.uint16 and len(seq) == min(len(data), max_len)
    assert seq.tolist() == [b + 1 for b in data[:max_len]]


@fuzz(150)
@given(
    st.lists(st.lists(st.integers(0, 65535), max_size=40), max_size=8),
    st.one_of(st.none(), st.integers(0, 50)),
)
def test_pad_batch(seqs: list[list[int]], length: int | None) -> None:
    arrays = [np.asarray(s, dtype=np.uint16) for s in seqs]
    if not arrays:
        with pytest.raises(ConversionError):
            pad_batch(arrays, length)
        return
    out = pad_batch(arrays, length)
    width = max(len(s) for s in seqs) if length is None else length
    assert out.shape == (len(seqs), width) and out.dtype == np.int64
    for row, s in zip(out, seqs, strict=True):
        n = min(len(s), width)
        assert row[:n].tolist() == s[:n] and not row[n:].any()


OPCODE_TEXT = st.lists(
    st.one_of(
        st.sampled_from(["mov", "PUSH", "call", " pop ", "\tret", "", "  ", "jmp short", "nop\r"]),
        st.text(st.characters(codec="ascii"), max_size=12),
    ),
    max_size=60,
).map(lambda lines: "\n".join(lines).encode("ascii"))


@fuzz(200)
@given(st.one_of(st.binary(max_size=2000), OPCODE_TEXT))
def test_parse_opcodes(data: bytes) -> None:
    try:
        tokens = parse_opcodes(data, "f")
    except ConversionError as e:
        assert str(e).startswith("f: ")
        return
    assert tokens and all(t and t == t.strip().lower() for t in tokens)


def read_opcodes(data: bytes, max_len: int, cuts: list[int]) -> list[str]:
    """``OpcodeReader`` fed ``data`` cut at ``cuts``, as ``convert.prepare`` feeds it a file's chunks."""
    reader = OpcodeReader(max_len)
    for piece in _split(data, cuts, [0]):
        reader.update(piece)
    hist = np.bincount(np.frombuffer(data, dtype=np.uint8), minlength=256)
    return reader.tokens(data[:65536], hist, "f")


@fuzz(200)
@given(
    st.one_of(st.binary(max_size=2000), OPCODE_TEXT),
    st.integers(1, 40),
    st.lists(st.integers(0, 10**6), max_size=8),
)
def test_streamed_opcodes_match_a_full_parse(data: bytes, max_len: int, cuts: list[int]) -> None:
    """The first ``max_len`` mnemonics read chunk by chunk, in any chunking, are a full parse's."""
    try:
        full = parse_opcodes(data, "f")[:max_len]
    except ConversionError:
        with pytest.raises(ConversionError):
            read_opcodes(data, max_len, cuts)
        return
    assert read_opcodes(data, max_len, cuts) == full


def _dump(data: bytes, unknown: set[int], base: int = 0x401000) -> bytes:
    lines = []
    for off in range(0, len(data), 16):
        cells = ["??" if off + k in unknown else f"{b:02X}" for k, b in enumerate(data[off : off + 16])]
        lines.append(f"{base + off:08X} " + " ".join(cells) + "\r\n")
    return "".join(lines).encode("ascii")


@fuzz(150)
@given(st.binary(min_size=1, max_size=600), st.sets(st.integers(0, 599), max_size=20))
def test_bytes_dump_round_trip(data: bytes, unknown: set[int]) -> None:
    dump = _dump(data, unknown)
    zeroed = bytes(0 if i in unknown else b for i, b in enumerate(data))
    assert parse_bytes_dump(dump, "d") == zeroed
    dropped = bytes(b for i, b in enumerate(data) if i not in unknown)
    if dropped:
        assert parse_bytes_dump(dump, "d", unknown="drop") == dropped


@fuzz(200)
@given(st.one_of(st.binary(max_size=1000), mutated(_dump(bytes(range(200)), {5, 77}), max_edits=6)))
def test_bytes_dump_of_anything(text: bytes) -> None:
    for unknown in ("zero", "drop"):
        try:
            out = parse_bytes_dump(text, "d", unknown=unknown)  # type: ignore[arg-type]
        except DatasetError as e:
            assert str(e).startswith("d: ")
            continue
        assert isinstance(out, bytes) and out
