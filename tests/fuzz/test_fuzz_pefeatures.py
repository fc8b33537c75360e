"""Fuzz the PE structure vector: any bytes, any damaged PE, any claimed size give a finite vector,
the same however the file is cut into chunks."""

from __future__ import annotations

import numpy as np
from hypothesis import example, given
from hypothesis import strategies as st

from corpus import FILES
from fuzz.strategies import fuzz, mutated_pe
from malvision.convert.pefeatures import N_FEATURES, FeatureTap, features_of


def check(data: bytes, size: int) -> None:
    """The vector of ``data`` said to be ``size`` bytes long (a size the bytes need not match)."""
    tap = FeatureTap()
    tap.update(data)
    v = tap.features(size)
    assert v.shape == (N_FEATURES,) and v.dtype == np.float32 and np.isfinite(v).all()


@fuzz(300)
@given(mutated_pe(), st.integers(0, 2**33))
@example(FILES["pe_65535_sections.exe"](), 0)
@example(FILES["pe_optional_header_0xffff.exe"](), 0)
def test_any_damaged_pe_gives_a_finite_vector(data: bytes, extra: int) -> None:
    check(data, len(data) + extra)


@fuzz(200)
@given(st.binary(max_size=4096))
def test_any_bytes_give_a_finite_vector(data: bytes) -> None:
    check(b"MZ" + data, len(data) + 2)
    check(data, len(data))


@fuzz(200)
@given(mutated_pe(), st.integers(1, 70 * 1024))
def test_any_chunking_of_a_damaged_pe_gives_the_same_vector(data: bytes, chunk: int) -> None:
    tap = FeatureTap()
    for i in range(0, len(data), chunk):
        tap.update(data[i : i + chunk])
    np.testing.assert_array_equal(tap.features(len(data)), features_of(data))
