"""The one conversion path from a Source to model input (malvision.convert.convert_source)."""

from __future__ import annotations

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
    convert_source,
    resize_plot,
)
from malvision.convert import image as cimage
from malvision.errors import ConversionError
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
    from_file = convert_source(open_source(make_file("sample.bin", data)), spec)
    from_memory = convert_source(MemorySource.of("sample", data), spec)
    assert from_file.shape == (size, size) and from_file.dtype == np.uint8
    assert np.array_equal(from_file, in_memory)
    assert np.array_equal(from_memory, in_memory)


def test_same_bytes_same_image_different_bytes_different_image(rng: np.random.Generator) -> None:
    data = rng.integers(0, 256, 50_000, dtype=np.uint8).tobytes()
    spec = ConvertSpec(image_size=64)
    a = convert_source(MemorySource.of("a", data), spec)
    assert np.array_equal(a, convert_source(MemorySource.of("b", bytes(data)), spec))
    assert not np.array_equal(a, convert_source(MemorySource.of("c", bytes(50_000)), spec))


def test_image_of_a_file_shorter_than_one_row_is_an_error() -> None:
    with pytest.raises(ConversionError, match="shorter than one"):
        convert_source(MemorySource.of("tiny", b"MZ"), ConvertSpec())


def test_bytes_kind_keeps_the_first_max_len_bytes(
    rng: np.random.Generator, make_file: Callable[[str, bytes], Path]
) -> None:
    data = rng.integers(0, 256, 10_000, dtype=np.uint8).tobytes()
    src = open_source(make_file("s.bin", data))
    seq = convert_source(src, ConvertSpec(kind="bytes", max_len=1000))
    assert np.array_equal(seq, byte_sequence(data[:1000]))
    seq = convert_source(src, ConvertSpec(kind="bytes", max_len=50_000))
    assert np.array_equal(seq, byte_sequence(data))


def test_opcodes_kind_uses_the_spec_vocabulary_or_the_one_given() -> None:
    src = MemorySource.of("ops.txt", b"push\nmov\nnop\nmov\n")
    spec = ConvertSpec(kind="opcodes", max_len=3, vocab=("mov", "push"))
    assert convert_source(src, spec).tolist() == [3, 2, 1]
    assert convert_source(src, spec, Vocabulary(["nop"])).tolist() == [1, 1, 2]


@pytest.mark.slow  # ~1 s warm, ~3 s when the kernel first fills the page cache
def test_a_1_gib_sparse_file_streams_to_zeros(tmp_path: Path) -> None:
    path = tmp_path / "sparse.bin"
    with open(path, "wb") as f:
        f.truncate(1024**3)
    out = convert_source(open_source(path), ConvertSpec(kind="image", image_size=64))
    assert out.shape == (64, 64)
    assert not out.any()
