"""The histograms input: EMBER's byte-entropy histogram and the other views, the same however a file is
chunked."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from malvision.convert.histograms import (
    HEAD,
    HEADER,
    HISTOGRAM_NAMES,
    N_HISTOGRAM,
    STEP,
    STRING_COLUMNS,
    WINDOW,
    Histograms,
    histogram_label,
)
from malvision.convert.pefeatures import features_of
from malvision.convert.prepare import model_input
from malvision.convert.spec import ConvertSpec
from malvision.io import CHUNK, MemorySource


def entropy_histogram(a: np.ndarray) -> np.ndarray:
    """EMBER's ByteEntropyHistogram, window by window, as square roots of its shares."""
    out = np.zeros((16, 16))
    blocks = [a] if len(a) < WINDOW else [a[i : i + WINDOW] for i in range(0, len(a) - WINDOW + 1, STEP)]
    for block in blocks:
        c = np.bincount(block >> 4, minlength=16)
        p = c[c > 0] / WINDOW
        h = -sum(float(q) * math.log2(float(q)) for q in p) * 2
        out[min(int(h * 2), 15)] += c
    return np.sqrt(out.ravel() / out.sum()) if out.sum() else out.ravel()


def naive(data: bytes) -> np.ndarray:
    """Every view, each from the bytes at once, in HISTOGRAM_NAMES' order."""
    a = np.frombuffer(data, dtype=np.uint8)
    nib = (a >> 4).astype(np.int64)
    pairs = np.zeros(256)
    for x, y in zip(nib[:-1].tolist(), nib[1:].tolist(), strict=True):
        pairs[x * 16 + y] += 1
    header = a[:HEADER]
    return np.concatenate(
        [
            np.sqrt(np.bincount(a, minlength=256) / max(len(a), 1)),
            entropy_histogram(a),
            [math.log2(max(len(a), 1))],
            np.sqrt(pairs / pairs.sum()) if pairs.sum() else pairs,
            entropy_histogram(a[:HEAD]),
            np.sqrt(np.bincount(header, minlength=256) / max(len(header), 1)),
            features_of(data)[STRING_COLUMNS],  # the feature vector's own strings (tested with it)
        ]
    )


def fed(data: bytes, cuts: list[int]) -> np.ndarray:
    e = Histograms()
    start = 0
    for cut in sorted(cuts) + [len(data)]:
        e.update(memoryview(data)[start:cut])
        start = cut
    return e.vector(np.bincount(np.frombuffer(data, dtype=np.uint8), minlength=256), features_of(data))


def sample(n: int, seed: int = 0) -> bytes:
    """Blocks of low and high entropy, so windows fall in several entropy bins."""
    rng = np.random.default_rng(seed)
    parts = [
        rng.integers(0, 256, n // 3),
        np.repeat(rng.integers(0, 256, n // 300 + 1), 100),
        rng.integers(0, 4, n),
    ]
    return np.concatenate(parts)[:n].astype(np.uint8).tobytes()


@pytest.mark.parametrize(
    "n", [0, 1, 100, STEP - 1, STEP, STEP + 1, WINDOW - 1, WINDOW, WINDOW + 1, 10 * STEP + 7, HEAD + 5_000]
)
def test_matches_embers_window_by_window(n: int) -> None:
    data = sample(n)
    got = fed(data, [])
    assert got.shape == (N_HISTOGRAM,) and got.dtype == np.float32
    np.testing.assert_allclose(got, naive(data), atol=1e-6)
    if n >= 10 * STEP:  # high-entropy and low-entropy windows land in different rows
        rows = np.flatnonzero(got[256:512].reshape(16, 16).sum(1))
        assert len(rows) >= 2


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 70_000), st.lists(st.integers(0, 70_000), max_size=8), st.integers(0, 3))
def test_any_chunking_gives_the_same_vector(n: int, cuts: list[int], seed: int) -> None:
    data = sample(n, seed)
    np.testing.assert_array_equal(fed(data, [c for c in cuts if c <= n]), fed(data, []))


def test_prepare_gives_the_vector_of_the_whole_file() -> None:
    data = sample(CHUNK + 3 * STEP + 5)  # two of prepare's chunks, the second not on a block boundary
    x = model_input(MemorySource.of("f.bin", data), ConvertSpec(kind="histograms"))
    np.testing.assert_allclose(x, naive(data), atol=1e-6)
    assert ConvertSpec(kind="histograms").fixed_shape == (N_HISTOGRAM,)


def test_every_input_has_a_name_and_a_label() -> None:
    assert len(set(HISTOGRAM_NAMES)) == N_HISTOGRAM == 1396
    assert histogram_label("byte_4d")[0] == "byte 0x4d"
    assert histogram_label("header_byte_4d")[0] == "byte 0x4d in the first 4,096 bytes"
    assert histogram_label("entropy_15_nibble_f")[0] == "entropy 7.5-8, bytes 0xf0-0xff"
    assert (
        histogram_label("head_entropy_0_nibble_1")[0] == "entropy 0-0.5, bytes 0x10-0x1f in the first 64 KiB"
    )
    assert histogram_label("pair_a_3")[0] == "bytes 0xa0-0xaf then 0x30-0x3f"
    assert histogram_label("marker_http")[0] == "mentions of http"
    assert histogram_label("log2_size")[0] == "file size"
    assert all(histogram_label(n)[1] for n in HISTOGRAM_NAMES)
