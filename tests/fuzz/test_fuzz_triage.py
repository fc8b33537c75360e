"""Fuzz triage: any bytes give a type name and a reason or None; nothing else ever comes out."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from corpus import FILES
from fuzz.strategies import fuzz, mutated_pe
from malvision.triage import byte_histogram, byte_stats, file_type, pe_problem, triage


def _stats(data: bytes):  # noqa: ANN202
    return byte_stats(np.bincount(np.frombuffer(data, dtype=np.uint8), minlength=256))


@fuzz(300)
@given(st.binary(max_size=5000), st.integers(1, 4096))
def test_byte_histogram_counts_every_byte(data: bytes, piece: int) -> None:
    """Pairs counted as uint16 and folded give np.bincount's answer, odd lengths and pieces too."""
    import malvision.triage as t

    want = np.bincount(np.frombuffer(data, dtype=np.uint8), minlength=256)
    assert np.array_equal(byte_histogram(data), want)
    saved, t.HIST_PIECE = t.HIST_PIECE, piece
    try:
        assert np.array_equal(byte_histogram(memoryview(data)), want)
    finally:
        t.HIST_PIECE = saved


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
@example(FILES["pe_65535_sections.exe"](), 0)  # pefile parsed 2 of 65535 sections: now "truncated"
@example(FILES["pe_optional_header_0xffff.exe"](), 0)
def test_triage_of_damaged_pe_headers(data: bytes, extra: int) -> None:
    check_triage(data[: 64 * 1024], len(data) + extra)


def test_section_table_past_the_end_is_truncated() -> None:
    """Found by the corpus: NumberOfSections 0xFFFF in a 9 KB file was judged a whole PE."""
    data = FILES["pe_65535_sections.exe"]()
    assert (
        pe_problem(data, len(data))
        == "truncated PE: the table of 65535 sections runs past the end of the file"
    )
    assert pe_problem(FILES["pe_valid.exe"](), len(FILES["pe_valid.exe"]())) is None


def test_a_damaged_pe_costs_no_garbage_collection(monkeypatch: pytest.MonkeyPatch) -> None:
    """Found by the fuzz run's speed: pefile's close() runs gc.collect() when a parse fails, ~80 ms a
    file beside torch (a folder of damaged PEs scanned at 12 files/s)."""
    import gc

    calls = []
    monkeypatch.setattr(gc, "collect", lambda *a: calls.append(a) or 0)
    for name in ("pe_bad_signature.exe", "pe_lfanew_zero.exe", "pe_valid.exe"):
        pe_problem(FILES[name](), len(FILES[name]()))
    assert calls == []
