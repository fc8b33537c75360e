"""The content block: section entropies, strings and markers, the same however a file is chunked."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from corpus import minimal_pe
from malvision.convert.contentfeatures import _MARKERS, CONTENT_NAMES, WORD_NAMES, words_of
from malvision.convert.pefeatures import FEATURE_NAMES, FeatureTap, features_of
from malvision.convert.stringwords import WORDS
from malvision.pe import parse
from malvision.triage import entropy_bits


def content(data: bytes, chunk: int | None = None) -> dict[str, float]:
    tap = FeatureTap()
    step = chunk or max(1, len(data))
    for i in range(0, len(data), step):
        tap.update(data[i : i + step])
    v = tap.features(len(data))
    assert np.isfinite(v).all()
    f = dict(zip(FEATURE_NAMES, v.tolist(), strict=True))
    return {n: f[n] for n in CONTENT_NAMES}


def test_strings_are_runs_of_five_printable_bytes_wherever_the_chunks_cut() -> None:
    data = b"\x00abcd\x00abcdefg\x01" + b"x" * 10 + b"\xff" + "Hello".encode("utf-16-le") + b"\x00"
    whole = content(data)
    assert whole["strings_log_n"] == pytest.approx(math.log1p(2))  # abcdefg, x*10; abcd is too short
    assert whole["strings_mean_length"] == pytest.approx(8.5)
    assert whole["strings_char_78"] == pytest.approx(10 / 17) and whole["strings_char_61"] == pytest.approx(
        1 / 17
    )
    for chunk in (1, 2, 3, 5, 7):
        assert content(data, chunk) == whole


def test_markers_split_across_chunks_count_once() -> None:
    data = b"go to http://example.org and http://x \x00 HKEY_CURRENT_USER\x01 c:\\x\x00c:\\\x00"
    whole = content(data)
    assert whole["marker_http"] == pytest.approx(math.log1p(2))
    assert whole["marker_hkey"] == pytest.approx(math.log1p(1)) and whole["marker_https"] == 0
    # " c:\\x" is a string of five bytes; the second "c:\\" alone is too short to be one
    assert whole["marker_drive_lower"] == pytest.approx(math.log1p(1))
    for chunk in (1, 4, 9):
        assert content(data, chunk) == whole


def test_section_entropies_are_those_of_their_raw_bytes() -> None:
    pe = bytearray(minimal_pe(text_size=0x2000, data_size=0x2000))
    headers = parse(bytes(pe[:4096]))
    text, data = headers.sections
    pe[data.raw_pointer : data.raw_pointer + data.raw_size] = random.Random(1).randbytes(data.raw_size)
    pe += bytes(300)  # an overlay of zeros
    pe = bytes(pe)
    f = content(pe)
    span = lambda s: pe[s.raw_pointer : s.raw_pointer + s.raw_size]  # noqa: E731
    assert f["text_entropy"] == pytest.approx(entropy_bits(span(text)))
    assert f["data_entropy"] == pytest.approx(entropy_bits(span(data))) and f["data_entropy"] > 7.5
    assert f["entry_section_entropy"] == f["text_entropy"]
    assert f["section_entropy_max"] == f["data_entropy"] and f["section_entropy_min"] == f["text_entropy"]
    assert f["n_high_entropy_sections"] == 1
    assert f["high_entropy_share"] == pytest.approx(data.raw_size / len(pe))
    assert f["overlay_entropy"] == 0 and f["rsrc_entropy"] == -1
    assert f["headers_entropy"] == pytest.approx(entropy_bits(pe[: headers.size_of_headers]))
    for chunk in (512, 4096, 5000):
        assert content(pe, chunk) == f


def test_bytes_that_are_not_a_pe_leave_the_section_block_at_minus_one() -> None:
    f = content(b"just some text, no headers at all")
    assert all(f[n] == -1 for n in ("section_entropy_max", "overlay_entropy", "entry_section_entropy"))
    assert f["strings_log_n"] > 0
    assert np.array_equal(features_of(b""), features_of(b""))  # an empty file is a vector too


def test_markers_count_as_bytes_count_does_in_the_strings_run_together() -> None:
    rng = random.Random(3)
    pieces = [m for _, m in _MARKERS] + [b":", b".", b"_", b"x", b"C:", b"ttp:/", b".ex", b"HKEY", b"\x00"]
    data = b"".join(rng.choice(pieces) for _ in range(5000))
    text = b"".join(s for s in data.split(b"\x00") if len(s) >= 5)
    f = content(data)
    for name, m in _MARKERS:
        assert f[f"marker_{name}"] == pytest.approx(math.log1p(text.count(m))) and text.count(m) > 0
    for chunk in (7, 4096):
        assert content(data, chunk) == f


def test_strings_and_markers_are_the_same_however_long_the_runs_and_wherever_cut() -> None:
    rng = random.Random(5)
    pieces = [m for _, m in _MARKERS] + [b"\x00", b"\xff", b"ab", b"abcdefgh", b"\x01\x02\x03"]
    data = b"".join(rng.choice(pieces) for _ in range(3000))
    whole = content(data)
    assert whole["strings_log_n"] > 0 and whole["marker_exe"] > 0
    for chunk in (1, 3, 8, 19, 1000):
        assert content(data, chunk) == whole


def test_words_count_in_the_bytes_and_utf16_strings_any_case_wherever_cut() -> None:
    first, second = WORDS[0], WORDS[1]
    data = (
        b"\x00" + first.upper().encode() + b"\x01xx " + first.encode() + b"\xff"  # twice in the bytes
        + b"xx" + first.encode()  # a longer word, not this one
        + f"say {first}".encode("utf-16-le") + b"\x01\x02"  # a UTF-16 string
        + second.encode("utf-16-le") + b"\x00\x00"  # another UTF-16 string
        + first[:4].encode("utf-16-le") + b"\x01"  # four characters: too short to be a string
    )  # fmt: skip

    def words(chunk: int | None = None) -> dict[str, float]:
        tap = FeatureTap()
        step = chunk or len(data)
        for i in range(0, len(data), step):
            tap.update(data[i : i + step])
        return dict(zip(FEATURE_NAMES, tap.features(len(data)).tolist(), strict=True))

    whole = words()
    assert whole[f"word_{first}"] == pytest.approx(math.log1p(3))
    assert whole[f"word_{second}"] == pytest.approx(math.log1p(1))
    assert sum(whole[n] > 0 for n in WORD_NAMES) == 2
    for chunk in (1, 3, 8, 17):
        assert words(chunk) == whole


def test_words_are_runs_of_four_to_24_letters_in_the_bytes_and_the_utf16_strings() -> None:
    data = (
        b"\x00Hello Ransomware 42\x01abc\x01" + "DisableTaskMgr".encode("utf-16-le") + b"\x01\x00xyz1\x00"
        + b"RegisterServiceCtrlHandlerEx hello"  # 28 letters: 24, then 4
    )  # fmt: skip
    assert words_of(data) == {
        b"hello": 2, b"ransomware": 1, b"disabletaskmgr": 1, b"registerservicectrlhandl": 1, b"erex": 1
    }  # fmt: skip
