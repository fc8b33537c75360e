"""The PE structure vector: fixed length, finite for any bytes, and the header fields where they are."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pip

from corpus import FILES, PE, minimal_pe, patch
from malvision.convert.pefeatures import FEATURE_NAMES, N_FEATURES, features_of


def features(data: bytes) -> dict[str, float]:
    v = features_of(data)
    assert v.shape == (N_FEATURES,) and v.dtype == np.float32 and np.isfinite(v).all()
    return dict(zip(FEATURE_NAMES, v.tolist(), strict=True))


def test_names_are_unique_and_count() -> None:
    assert len(set(FEATURE_NAMES)) == N_FEATURES > 100
    for leaky in ("timestamp", "date", "rich"):  # the build date and the compiler ids stay out
        assert not any(leaky in n for n in FEATURE_NAMES)


def test_linker_and_image_versions_and_the_checksum_flag_are_read_where_they_are() -> None:
    pe = minimal_pe()
    assert features(pe)["checksum_set"] == 0
    (e,) = struct.unpack_from("<I", pe, PE.E_LFANEW)
    opt = e + 24
    pe = patch(patch(pe, opt + 2, "<BB", 6, 42), opt + 44, "<HH", 3, 4464)
    f = features(patch(pe, opt + 64, "<I", 0x1234))
    assert (f["linker_version_major"], f["linker_version_minor"]) == (6, 42)
    assert (f["image_version_major"], f["image_version_minor"]) == (3, 255)  # capped: 4464 reads as 255
    assert f["checksum_set"] == 1


def test_a_minimal_pe_reads_as_what_it_is() -> None:
    f = features(minimal_pe())
    assert f["pe_parsed"] == 1 and f["machine_i386"] == 1 and f["pe32_plus"] == 0
    assert f["subsystem_gui"] == 1 and f["n_sections"] == 2
    assert f["section_text"] == 1 and f["section_data"] == 1 and f["section_rsrc"] == 0
    assert f["entry_in_executable"] == 1 and f["entry_outside_sections"] == 0
    assert f["n_executable"] == 1 and f["log_overlay"] == 0
    assert abs(sum(f[f"hist_{i:x}x"] for i in range(16)) - 1) < 1e-5


def test_an_overlay_and_a_moved_entry_point_show() -> None:
    pe = minimal_pe()
    f = features(pe + bytes(range(256)) * 64)
    assert f["log_overlay"] > 9 and 0 < f["overlay_share"] < 1
    (e,) = struct.unpack_from("<I", pe, PE.E_LFANEW)
    outside = patch(pe, e + 24 + 16, "<I", 0x7FFF0000)  # AddressOfEntryPoint past every section
    assert features(outside)["entry_outside_sections"] == 1


def test_real_pe_launchers_parse() -> None:
    for exe in sorted(Path(pip.__file__).parent.joinpath("_vendor", "distlib").glob("*.exe")):
        f = features(exe.read_bytes())
        assert f["pe_parsed"] == 1 and f["n_sections"] >= 3, exe.name
        assert f["machine_i386"] + f["machine_amd64"] + f["machine_arm64"] == 1, exe.name


def test_what_is_not_a_pe_keeps_its_header_block_at_zero() -> None:
    for name in ("text.txt", "image.png", "elf.bin", "zeros_300k.bin", "empty.bin"):
        f = features(FILES[name]())
        assert f["pe_parsed"] == 0 and f["n_sections"] == 0, name
