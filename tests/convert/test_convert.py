"""The one conversion path from a Source to model input (malvision.convert.prepare)."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from malvision import io as mio
from malvision.convert import (
    ConvertSpec,
    Vocabulary,
    byte_plot,
    byte_sequence,
    model_input,
    parse_opcodes,
    prepare,
    resize_plot,
)
from malvision.convert import image as cimage
from malvision.errors import ConversionError, InputError
from malvision.io import MemorySource, open_source


@pytest.mark.parametrize("size", [64, 128, 224])
@pytest.mark.parametrize(
    ("chunk", "block_bytes"), [(4099, 1000), (65_537, 33_333), (mio.CHUNK, cimage.BLOCK_BYTES)]
)
def test_streamed_file_equals_the_in_memory_image(
    rng: np.random.Generator,
    make_file: Callable[[str, bytes], Path],
    monkeypatch: pytest.MonkeyPatch,
    size: int,
    chunk: int,
    block_bytes: int,
) -> None:
    data = rng.integers(0, 256, 250_003, dtype=np.uint8).tobytes()
    in_memory = resize_plot(byte_plot(data), size)
    monkeypatch.setattr(mio, "CHUNK", chunk)
    monkeypatch.setattr(cimage, "BLOCK_BYTES", block_bytes)
    spec = ConvertSpec(kind="image", image_size=size)
    from_file = model_input(open_source(make_file("sample.bin", data)), spec)
    from_memory = model_input(MemorySource.of("sample", data), spec)
    assert from_file.shape == (size, size) and from_file.dtype == np.uint8
    assert np.array_equal(from_file, in_memory)
    assert np.array_equal(from_memory, in_memory)


def test_same_bytes_same_image_different_bytes_different_image(rng: np.random.Generator) -> None:
    data = rng.integers(0, 256, 50_000, dtype=np.uint8).tobytes()
    spec = ConvertSpec(image_size=64)
    a = model_input(MemorySource.of("a", data), spec)
    assert np.array_equal(a, model_input(MemorySource.of("b", bytes(data)), spec))
    assert not np.array_equal(a, model_input(MemorySource.of("c", bytes(50_000)), spec))


def test_image_of_a_file_shorter_than_one_row_is_an_error() -> None:
    with pytest.raises(ConversionError, match="shorter than one"):
        model_input(MemorySource.of("tiny", b"MZ"), ConvertSpec())


def test_bytes_kind_keeps_the_first_max_len_bytes(
    rng: np.random.Generator, make_file: Callable[[str, bytes], Path]
) -> None:
    data = rng.integers(0, 256, 10_000, dtype=np.uint8).tobytes()
    src = open_source(make_file("s.bin", data))
    seq = model_input(src, ConvertSpec(kind="bytes", max_len=1000))
    assert np.array_equal(seq, byte_sequence(data[:1000]))
    seq = model_input(src, ConvertSpec(kind="bytes", max_len=50_000))
    assert np.array_equal(seq, byte_sequence(data))


def test_opcodes_kind_uses_the_spec_vocabulary_or_the_one_given() -> None:
    src = MemorySource.of("ops.txt", b"push\nmov\nnop\nmov\n")
    spec = ConvertSpec(kind="opcodes", max_len=3, vocab=("mov", "push"))
    assert model_input(src, spec).tolist() == [3, 2, 1]
    assert model_input(src, spec, Vocabulary(["nop"])).tolist() == [1, 1, 2]


@pytest.mark.slow  # ~1 s warm, ~3 s when the kernel first fills the page cache
def test_a_1_gib_sparse_file_streams_to_zeros(tmp_path: Path) -> None:
    path = tmp_path / "sparse.bin"
    with open(path, "wb") as f:
        f.truncate(1024**3)
    out = model_input(open_source(path), ConvertSpec(kind="image", image_size=64))
    assert out.shape == (64, 64)
    assert not out.any()


def test_prepare_reads_once_for_triage_and_the_model(rng: np.random.Generator) -> None:
    data = b"MZ" + rng.integers(0, 256, 70_000, dtype=np.uint8).tobytes()
    p = prepare(MemorySource.of("f", data), ConvertSpec(kind="bytes", max_len=100))
    assert p.sha256 == hashlib.sha256(data).hexdigest() and p.size == len(data)
    assert p.head == data[:65536] and p.hist.sum() == len(data)
    assert p.headers is None and p.problem is None  # MZ, but no PE headers
    assert np.array_equal(p.x, byte_sequence(data[:100]))


def test_a_byte_plot_source_keeps_its_own_width(rng: np.random.Generator) -> None:
    """Malimg PNG rows: the width is the PNG's, not the one the Nataraj table gives for the size."""
    plot = rng.integers(0, 256, (300, 100), dtype=np.uint8)
    src = MemorySource.of("m.png", plot.tobytes(), plot_width=100)
    assert np.array_equal(model_input(src, ConvertSpec(image_size=16)), resize_plot(plot, 16))
    assert not np.array_equal(
        model_input(MemorySource.of("raw", plot.tobytes()), ConvertSpec(image_size=16)), resize_plot(plot, 16)
    )


def test_a_tiled_image_is_made_of_the_plots_own_pixels(rng: np.random.Generator) -> None:
    """With a tile side, the picture is the mosaic of ``tile_rows``, for a file as for its Malimg PNG."""
    data = rng.integers(0, 256, 40_000, dtype=np.uint8).tobytes() + bytes(5_000)
    plot = byte_plot(data)
    spec = ConvertSpec(image_size=16, tile=8)
    x = model_input(MemorySource.of("f", data), spec)
    assert np.array_equal(x, cimage.tile_rows([plot], *plot.shape, 16, 8))
    assert np.array_equal(x[:8, :8], plot[:8, :8]) and np.array_equal(x[8:, 8:], plot[-8:, :8])
    png = MemorySource.of("f.png", plot.tobytes(), plot_width=plot.shape[1])
    assert np.array_equal(model_input(png, spec), x)
    assert not np.array_equal(x, model_input(MemorySource.of("f", data), ConvertSpec(image_size=16)))
    with pytest.raises(ConversionError, match="smaller than one 8x8 tile"):
        model_input(MemorySource.of("small", data[:200]), spec)
    views = model_input(MemorySource.of("f", data), ConvertSpec(kind="views", image_size=16, tile=8))
    untiled = model_input(MemorySource.of("f", data), ConvertSpec(kind="views", image_size=16))
    # the mosaic, then the entropy
    assert np.array_equal(views[0], x) and np.array_equal(views[1], untiled[1])


@pytest.mark.parametrize("kind", ["image", "views"])
def test_a_file_and_its_malimg_png_give_one_input(rng: np.random.Generator, kind: str) -> None:
    """The PNG holds the file's whole rows only (Malimg drops the last partial row): both channels of the
    views input cover those rows, for the file as for its PNG (the entropy channel once took the whole file)."""
    data = rng.integers(0, 256, 40_000, dtype=np.uint8).tobytes() + bytes(5_000)  # a partial last row
    height, width = cimage.plot_shape(len(data))
    assert height * width < len(data)
    png_rows = MemorySource.of("f.png", data[: height * width], plot_width=width)
    spec = ConvertSpec(kind=kind, image_size=16)
    assert np.array_equal(model_input(MemorySource.of("f", data), spec), model_input(png_rows, spec))


def test_a_stop_flag_ends_the_read() -> None:
    stop = threading.Event()
    stop.set()
    with pytest.raises(InputError, match="interrupted"):
        prepare(MemorySource.of("f", b"MZ" * 1000), ConvertSpec(), stop=stop)


@pytest.mark.parametrize("chunk", [1, 7, 4096, mio.CHUNK])
@pytest.mark.parametrize("max_len", [1, 3, 50, 10_000])
def test_opcodes_are_the_first_max_len_mnemonics_in_any_chunking(
    monkeypatch: pytest.MonkeyPatch, chunk: int, max_len: int
) -> None:
    lines = [b"push", b"", b"  MOV ", b"\tcall", b"\r", b"jmp", b"xor\r"] * 30
    data = b"\n".join(lines) + b"\x0cret\x1dnop"  # every break str.splitlines knows, and no final newline
    monkeypatch.setattr(mio, "CHUNK", chunk)
    reader_vocab = Vocabulary(["push", "mov", "call", "jmp", "xor", "ret", "nop"])
    got = model_input(
        MemorySource.of("ops.txt", data), ConvertSpec(kind="opcodes", max_len=max_len), reader_vocab
    )
    assert got.tolist() == reader_vocab.encode(parse_opcodes(data), max_len).tolist()


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"push\x00\nmov\n", "binary data"),
        (b"push\n" * 10 + "mov\u00e9\n".encode(), "not ASCII"),
        (b"\n \n\t\n", "no opcodes"),
        (b"push\n" + b"x" * 5000, "a line of over"),
    ],
)
def test_opcode_text_refusals(data: bytes, match: str) -> None:
    p = prepare(MemorySource.of("ops.txt", data), ConvertSpec(kind="opcodes", max_len=100, vocab=("push",)))
    assert p.x is None and match in p.problem


@pytest.mark.parametrize("src", [b"MZ", "a.exe", Path("a.exe"), bytearray(b"MZ")])
def test_prepare_names_what_to_wrap_bytes_and_paths_in(src: object) -> None:
    with pytest.raises(TypeError, match=r"MemorySource\.of\(name, data\).*open_source\(path\)"):
        model_input(src, ConvertSpec())  # type: ignore[arg-type]
