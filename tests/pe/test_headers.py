"""The PE layer's headers agree with pefile on real files, and every damaged file gets one line."""

from __future__ import annotations

from pathlib import Path

import pefile
import pip
import pytest

from corpus import EXPECT, FILES
from malvision.pe import DIRECTORIES, HEAD_BYTES, PEError, parse, parse_or_none, problem

LAUNCHERS = sorted(Path(pip.__file__).parent.joinpath("_vendor", "distlib").glob("*.exe"))


@pytest.mark.parametrize("exe", LAUNCHERS, ids=lambda p: p.name)
def test_headers_match_pefile(exe: Path) -> None:
    data = exe.read_bytes()
    ours, theirs = parse(data[:HEAD_BYTES]), pefile.PE(data=data, fast_load=True)
    fh, oh = theirs.FILE_HEADER, theirs.OPTIONAL_HEADER
    assert (ours.machine, ours.n_sections, ours.characteristics) == (
        fh.Machine, fh.NumberOfSections, fh.Characteristics,
    )  # fmt: skip
    assert ours.plus == (oh.Magic == 0x20B)
    for mine, field in [
        ("entry_point", "AddressOfEntryPoint"), ("size_of_image", "SizeOfImage"),
        ("size_of_headers", "SizeOfHeaders"), ("subsystem", "Subsystem"),
        ("dll_characteristics", "DllCharacteristics"), ("file_alignment", "FileAlignment"),
        ("section_alignment", "SectionAlignment"), ("stack_reserve", "SizeOfStackReserve"),
        ("heap_reserve", "SizeOfHeapReserve"), ("n_data_directories", "NumberOfRvaAndSizes"),
    ]:  # fmt: skip
        assert getattr(ours, mine) == getattr(oh, field), mine
    assert ours.directories == tuple((d.VirtualAddress, d.Size) for d in oh.DATA_DIRECTORY)
    assert ours.directory("import") == ours.directories[DIRECTORIES.index("import")]
    assert [
        (s.name, s.raw_pointer, s.raw_size, s.virtual_address, s.characteristics) for s in ours.sections
    ] == [
        (s.Name.rstrip(b"\0"), s.PointerToRawData, s.SizeOfRawData, s.VirtualAddress, s.Characteristics)
        for s in theirs.sections
    ]
    for s in theirs.sections:  # rva -> file offset as pefile maps it, inside each section's raw data
        rva = s.VirtualAddress + s.SizeOfRawData // 2
        assert ours.offset(rva) == theirs.get_offset_from_rva(rva)
    assert problem(data[:HEAD_BYTES], len(data), ours) is None


@pytest.mark.parametrize("exe", LAUNCHERS[:2], ids=lambda p: p.name)
def test_regions_cover_the_file_in_order(exe: Path) -> None:
    data = exe.read_bytes()
    regions = parse(data[:HEAD_BYTES]).regions(len(data))
    assert regions[0][:2] == ("headers", 0) and regions[-1][2] == len(data)
    assert [r[0] for r in regions[1:3]] == [".text", ".rdata"]
    assert all(a < z for _, a, z in regions)
    assert all(regions[i][2] <= regions[i + 1][1] for i in range(len(regions) - 1))


def test_what_does_not_parse_says_why() -> None:
    for data, match in [
        (b"ELF", "no MZ"),
        (b"MZ" + bytes(30), "shorter than the 64-byte DOS header"),
        (FILES["pe_bad_signature.exe"](), "no PE signature"),
        (FILES["pe_cut_in_headers.exe"]()[:300], "cut short|no PE signature"),
    ]:
        with pytest.raises(PEError, match=match):
            parse(data)
        assert parse_or_none(data) is None


@pytest.mark.parametrize("name", [n for n in FILES if n.startswith("pe_")])
def test_every_corpus_pe_gets_the_documented_answer(name: str) -> None:
    data = FILES[name]()
    why = problem(data[:HEAD_BYTES], len(data))
    expected, fragment = EXPECT[name]
    if expected == "unknown" and fragment is not None and "PE" in fragment and name != "pe_mz_only.exe":
        assert why is not None and fragment in why and "\n" not in why
    elif expected == "verdict":
        assert why is None
    assert why is None or why.startswith(("truncated PE: ", "malformed PE: "))


def test_section_table_past_the_end_is_truncated() -> None:
    """Found by the corpus: NumberOfSections 0xFFFF in a 9 KB file was judged a whole PE."""
    data = FILES["pe_65535_sections.exe"]()
    assert (
        problem(data, len(data)) == "truncated PE: the table of 65535 sections runs past the end of the file"
    )
