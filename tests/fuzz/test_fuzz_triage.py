"""Fuzz triage: any bytes give a type name and a reason or None; nothing else ever comes out."""

from __future__ import annotations

import numpy as np
from hypothesis import example, given
from hypothesis import strategies as st

from corpus import FILES
from fuzz.strategies import fuzz, mutated_pe
from malvision.pe import problem as pe_problem
from malvision.triage import byte_histogram, byte_stats, file_type, triage


def _stats(data: bytes):  # noqa: ANN202
    return byte_stats(np.bincount(np.frombuffer(data, dtype=np.uint8), minlength=256))


@fuzz(300)
@given(st.binary(max_size=5000))
def test_byte_histogram_counts_every_byte(data: bytes) -> None:
    want = np.bincount(np.frombuffer(data, dtype=np.uint8), minlength=256)
    assert np.array_equal(byte_histogram(data), want)
    assert np.array_equal(byte_histogram(memoryview(data)), want)
    assert np.array_equal(byte_histogram(np.frombuffer(data, dtype=np.uint8)), want)


def check_triage(head: bytes, size: int) -> None:
    kind = file_type(head)
    assert isinstance(kind, str) and kind
    for expects in ("pe", "text"):
        reason = triage(head, _stats(head), expects)
        assert reason is None or (isinstance(reason, str) and reason and "\n" not in reason)
    problem = pe_problem(head, size) if head[:2] == b"MZ" else None
    assert problem is None or (isinstance(problem, str) and problem and "\n" not in problem)


@fuzz(200)
@given(st.binary(max_size=4096))
def test_triage_of_any_bytes(data: bytes) -> None:
    check_triage(data, len(data))


@fuzz(200)
@given(st.binary(max_size=2048), st.integers(0, 2**40))
def test_triage_of_anything_that_starts_like_a_pe(tail: bytes, extra: int) -> None:
    """A head of a file of ``len(head) + extra`` bytes: triage reads 64 KiB of files of any size."""
    check_triage(b"MZ" + tail, 2 + len(tail) + extra)


@fuzz(300)
@given(mutated_pe(), st.integers(0, 2**33))
@example(FILES["pe_65535_sections.exe"](), 0)  # a table of 65535 sections in a 9 KB file: "truncated"
@example(FILES["pe_optional_header_0xffff.exe"](), 0)
def test_triage_of_damaged_pe_headers(data: bytes, extra: int) -> None:
    check_triage(data[: 64 * 1024], len(data) + extra)
