"""The C passes over every byte (``malvision._bytepass``) against plain Python that says the same."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fuzz.strategies import fuzz
from malvision._bytepass import (
    MIN_RUN,
    count_patterns,
    histogram,
    letter_words,
    nibble_blocks,
    nibble_pairs,
    printable_runs,
    wide_runs,
)

_RUN = re.compile(rb"[\x20-\x7e]{%d,}" % MIN_RUN)
_WIDE = re.compile(rb"(?:[\x20-\x7e]\x00){%d,}" % MIN_RUN)
_MARKERS = (b"http://", b"https://", b"C:\\", b".exe", b"cmd.exe", b"This program cannot", b"aa")
# printable and other bytes at random, with the markers' bytes and runs of every length near MIN_RUN
_TEXTY = st.lists(
    st.sampled_from(
        [b"\x00", b"\xff", b"\x1f", b"\x7f", b"a", b"ab", b"abcd", b"abcde", b"x" * 9, *_MARKERS]
    ),
    max_size=400,
).map(b"".join)


def runs_in_pieces(data: bytes, cuts: list[int]) -> tuple[bytes, int, int, bytes]:
    """``printable_runs`` fed ``data`` cut at ``cuts``: the text run together, runs, final state."""
    run, pending, text, n = 0, b"", [], 0
    for lo, hi in zip([0, *cuts], [*cuts, len(data)], strict=True):
        t, k, run, pending = printable_runs(data[lo:hi], run, pending)
        text.append(t)
        n += k
    return b"".join(text), n, run, pending


@fuzz(300)
@given(st.one_of(st.binary(max_size=3000), _TEXTY))
def test_histogram_counts_every_byte(data: bytes) -> None:
    out = np.arange(256, dtype=np.int64)  # added to, not overwritten
    histogram(data, out)
    want = np.bincount(np.frombuffer(data, dtype=np.uint8), minlength=256) + np.arange(256)
    assert np.array_equal(out, want)


@fuzz(300)
@given(st.one_of(st.binary(max_size=3000), _TEXTY), st.lists(st.integers(0, 3000), max_size=6))
def test_printable_runs_are_the_runs_a_regex_finds_wherever_the_stream_is_cut(
    data: bytes, cuts: list[int]
) -> None:
    found = _RUN.findall(data)
    text, n, run, pending = runs_in_pieces(data, sorted(c for c in cuts if c <= len(data)))
    assert (text, n) == (b"".join(found), len(found))
    tail = len(data) - len(data.rstrip(bytes(range(0x20, 0x7F))))  # the printable bytes at the end
    assert run == min(tail, MIN_RUN)
    assert pending == (data[len(data) - tail :] if tail < MIN_RUN else b"")


def test_printable_runs_cross_blocks_and_pieces() -> None:
    """Runs that straddle the C loop's 8 KiB blocks and the pieces a stream comes in."""
    rng = np.random.default_rng(0)
    data = bytearray(rng.integers(0, 256, 100_000, dtype=np.uint8).tobytes())
    for at in (8186, 8190, 8192, 16380, 40_000):
        data[at : at + 9] = b"straddles"
    data[60_000:70_000] = b"y" * 10_000  # a run longer than a block
    data = bytes(data)
    found = _RUN.findall(data)
    for cuts in ([], [8190], [3, 8194, 65_000], list(range(1000, 100_000, 7001))):
        assert runs_in_pieces(data, cuts)[:2] == (b"".join(found), len(found))


def carried_in_pieces(scan: Any, data: bytes, cuts: list[int], *args: Any) -> bytes:
    """``scan`` (``wide_runs``, ``letter_words``) fed ``data`` cut at ``cuts``, each piece after the bytes the
    one before kept."""
    keep, text = b"", []
    for lo, hi in zip([0, *cuts], [*cuts, len(data)], strict=True):
        buf = keep + data[lo:hi]
        t, k = scan(buf, hi == len(data), *args)
        keep = buf[len(buf) - k :] if k else b""
        text.append(t)
    assert keep == b""  # the last piece takes every run
    return b"".join(text)


# UTF-16LE text among other bytes, both alignments
_WIDE_PIECES = [b"\x00", b"\xff", b"a", b"\x00\x00", b"a\x00\x01\x00"] + [
    w.encode("utf-16-le") for w in ("abcd", "abcdef", "x" * 9)
]
_WIDE_TEXTY = st.lists(st.sampled_from(_WIDE_PIECES), max_size=300).map(b"".join)


@fuzz(300)
@given(st.one_of(st.binary(max_size=2000), _WIDE_TEXTY), st.lists(st.integers(0, 3000), max_size=6))
def test_wide_runs_are_the_runs_a_regex_finds_wherever_the_stream_is_cut(
    data: bytes, cuts: list[int]
) -> None:
    want = b"".join(m.replace(b"\x00", b"") + b"\n" for m in _WIDE.findall(data))
    assert carried_in_pieces(wide_runs, data, sorted(c for c in cuts if c <= len(data))) == want


def test_a_wide_run_longer_than_a_piece_keeps_is_taken_at_the_pieces_end() -> None:
    data = "y".encode("utf-16-le") * 5000 + b"\x01"
    assert carried_in_pieces(wide_runs, data, []) == b"y" * 5000 + b"\n"
    split = carried_in_pieces(
        wide_runs, data, [9000]
    )  # 9,000 bytes of the run before the cut: more than it keeps
    assert split == b"y" * 4500 + b"\n" + b"y" * 500 + b"\n"


_LETTERY = st.lists(
    st.sampled_from(
        [b"\x00", b" ", b"1", b"@", b"[", b"`", b"{", b"\xc1", b"a", b"Z", b"xyz", b"Word", b"Q" * 30]
    ),
    max_size=300,
).map(b"".join)
_WORD = re.compile(rb"[a-z]{4,24}")


@fuzz(300)
@given(st.one_of(st.binary(max_size=2000), _LETTERY), st.lists(st.integers(0, 3000), max_size=6))
def test_letter_words_are_what_a_regex_finds_in_lower_case_wherever_the_stream_is_cut(
    data: bytes, cuts: list[int]
) -> None:
    cuts = sorted(c for c in cuts if c <= len(data))
    found = _WORD.findall(data.lower())
    assert carried_in_pieces(letter_words, data, cuts) == b"".join(w + b" " for w in found)
    only = (b"word", b"qqqqqqqqqqqqqqqqqqqqqqqq", b"xyzz")
    assert carried_in_pieces(letter_words, data, cuts, only) == b"".join(w + b" " for w in found if w in only)


@fuzz(300)
@given(_TEXTY, st.integers(0, 40))
def test_count_patterns_counts_the_matches_that_end_past_skip(data: bytes, skip: int) -> None:
    got = count_patterns(data, skip, _MARKERS)
    want = [sum(1 for i in range(len(data)) if data.startswith(m, i) and i + len(m) > skip) for m in _MARKERS]
    assert got == want


@fuzz(300)
@given(st.binary(max_size=3000), st.sampled_from([1, 3, 64, 1024]))
def test_nibble_blocks_count_each_blocks_high_nibbles(data: bytes, block: int) -> None:
    whole = data[: len(data) // block * block]
    out = np.full((len(whole) // block, 16), -1, dtype=np.int64)  # overwritten
    nibble_blocks(whole, block, out)
    a = np.frombuffer(whole, dtype=np.uint8) >> 4
    want = [np.bincount(a[i : i + block], minlength=16) for i in range(0, len(a), block)]
    np.testing.assert_array_equal(out, np.array(want, dtype=np.int64).reshape(-1, 16))


@fuzz(300)
@given(st.binary(max_size=3000), st.lists(st.integers(0, 3000), max_size=6))
def test_nibble_pairs_count_transitions_wherever_the_stream_is_cut(data: bytes, cuts: list[int]) -> None:
    cuts = sorted(c for c in cuts if c <= len(data))
    pairs, last = np.arange(256, dtype=np.int64), -1  # added to, not overwritten
    for lo, hi in zip([0, *cuts], [*cuts, len(data)], strict=True):
        last = nibble_pairs(data[lo:hi], pairs, last)
    a = [b >> 4 for b in data]
    want = np.arange(256) + np.bincount(
        [x * 16 + y for x, y in zip(a[:-1], a[1:], strict=True)], minlength=256
    )
    np.testing.assert_array_equal(pairs, want)
    assert last == (a[-1] if a else -1)


def test_bad_arguments_are_errors_not_crashes() -> None:
    with pytest.raises(ValueError, match="256"):
        histogram(b"abc", np.zeros(255, dtype=np.int64))
    with pytest.raises(ValueError, match="pending"):
        printable_runs(b"abc", 2, b"a")
    with pytest.raises(ValueError, match="tuple"):
        letter_words(b"abcd", True, [b"abcd"])
    with pytest.raises(TypeError, match="bytes"):
        letter_words(b"abcd", True, ("abcd",))
    with pytest.raises(TypeError, match="at least 2"):
        count_patterns(b"abc", 0, (b"a",))
    with pytest.raises(ValueError, match="64"):
        count_patterns(b"abc", 0, tuple(b"ab" for _ in range(65)))
    with pytest.raises(ValueError, match="whole blocks"):
        nibble_blocks(b"abc", 2, np.zeros((1, 16), dtype=np.int64))
    with pytest.raises(ValueError, match="whole blocks"):
        nibble_blocks(b"abcd", 2, np.zeros((1, 16), dtype=np.int64))
    with pytest.raises(ValueError, match="last"):
        nibble_pairs(b"abc", np.zeros(256, dtype=np.int64), 16)
    with pytest.raises(ValueError, match="256"):
        nibble_pairs(b"abc", np.zeros(255, dtype=np.int64), -1)
