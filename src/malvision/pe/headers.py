"""PE headers, data directories and the section table, read with ``struct`` from a file's first bytes.

``parse`` reads them once per file into a ``PEHeaders``, which triage, the feature vector, the import
reader, explain and the page all use. ``problem`` says in one line why an ``MZ`` file is not a whole
PE. Everything is read from ``head`` (the first ``HEAD_BYTES`` of the file, or all of a shorter one);
what lies past it is never fetched. ``benchmarks/pe_parse.py`` measures this reader against pefile and
LIEF on real files: struct is what keeps a scan's PE parsing in microseconds.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import NamedTuple

__all__ = [
    "HEAD_BYTES",
    "DIRECTORIES",
    "PEError",
    "Section",
    "PEHeaders",
    "file_type_of",
    "parse",
    "parse_or_none",
    "problem",
    "type_kind",
]

HEAD_BYTES = 64 * 1024
DIRECTORIES = (
    "export", "import", "resource", "exception", "security", "basereloc", "debug", "architecture",
    "globalptr", "tls", "load_config", "bound_import", "iat", "delay_import", "clr", "reserved",
)  # fmt: skip
PE32, PE32_PLUS = 0x10B, 0x20B


class PEError(ValueError):
    """Headers that do not parse; the message says what is wrong."""


class Section(NamedTuple):
    """One section header; ``name`` is its 8 raw bytes without trailing NULs."""

    name: bytes
    virtual_size: int
    virtual_address: int
    raw_size: int
    raw_pointer: int
    characteristics: int

    def label(self, index: int) -> str:
        """The name as text, or ``(section N)`` for an unnamed one (N counts from 1)."""
        return self.name.decode("latin-1") or f"(section {index + 1})"


def file_type_of(plus: bool, is_dll: bool, subsystem: int) -> str:
    """``32-bit GUI``, ``64-bit console``, ``32-bit DLL``, ...: a DLL is a DLL whatever its subsystem;
    drivers and EFI programs are ``other``. ``plus``: PE32+ (64-bit)."""
    kind = "DLL" if is_dll else {2: "GUI", 3: "console"}.get(subsystem, "other")
    return f"{64 if plus else 32}-bit {kind}"


def type_kind(file_type: str | None) -> str:
    """The kind in a ``file_type_of`` name, bitness left out (``GUI``, ``console``, ``DLL``, ``other``);
    ``not a PE`` for None."""
    return file_type.split(" ", 1)[-1] if file_type else "not a PE"


@dataclass(frozen=True)
class PEHeaders:
    """File header, optional header, data directories and section table of one PE file.

    ``n_sections`` and ``n_data_directories`` are as declared; ``directories`` holds the (rva, size)
    entries that lie inside both the optional header and the head (at most 16), ``sections`` the
    section headers that lie inside the head (at most ``n_sections``).
    """

    e_lfanew: int
    machine: int
    n_sections: int
    characteristics: int
    optional_offset: int
    optional_size: int
    plus: bool
    size_of_code: int
    size_of_initialized_data: int
    size_of_uninitialized_data: int
    entry_point: int
    section_alignment: int
    file_alignment: int
    os_version_major: int
    subsystem_version_major: int
    linker_version: tuple[int, int]
    image_version: tuple[int, int]
    checksum: int
    size_of_image: int
    size_of_headers: int
    subsystem: int
    dll_characteristics: int
    stack_reserve: int
    stack_commit: int
    heap_reserve: int
    n_data_directories: int
    directories: tuple[tuple[int, int], ...]
    sections: tuple[Section, ...]

    @property
    def file_type(self) -> str:
        """``32-bit GUI``, ``64-bit console``, ``32-bit DLL``, ...: what the per-type reports group by."""
        return file_type_of(self.plus, bool(self.characteristics & 0x2000), self.subsystem)

    def directory(self, name: str) -> tuple[int, int] | None:
        """(rva, size) of data directory ``name`` (see ``DIRECTORIES``), or None if it is not there."""
        i = DIRECTORIES.index(name)
        return self.directories[i] if i < len(self.directories) else None

    def section_of(self, rva: int, sections: int | None = None) -> Section | None:
        """The section whose virtual range holds ``rva`` (among the first ``sections``)."""
        for s in self.sections[:sections]:
            if s.virtual_address <= rva < s.virtual_address + max(s.virtual_size, s.raw_size):
                return s
        return None

    def offset(self, rva: int, sections: int | None = None) -> int | None:
        """File offset of ``rva``: in a section's raw data, or in the headers before every section."""
        s = self.section_of(rva, sections)
        if s is not None:
            return rva - s.virtual_address + s.raw_pointer if rva - s.virtual_address < s.raw_size else None
        first = min((s.virtual_address for s in self.sections[:sections]), default=0)
        return rva if rva < first else None

    def raw_end(self) -> int:
        """Where the last section's raw data ends (0 when no section has any)."""
        return max((s.raw_pointer + s.raw_size for s in self.sections if s.raw_size), default=0)

    def regions(self, size: int) -> list[tuple[str, int, int]]:
        """(name, start, end) of the headers, each section's raw data and the overlay, by file offset,
        within a ``size``-byte file."""
        spans = []
        for i, s in enumerate(self.sections):
            if s.raw_size <= 0 or s.raw_pointer >= size:
                continue
            spans.append((s.label(i), s.raw_pointer, min(size, s.raw_pointer + s.raw_size)))
        spans.sort(key=lambda t: t[1])
        head_end = min(size, self.size_of_headers or size)
        if spans:  # headers end where the first section starts, whatever SizeOfHeaders says
            head_end = min(head_end, spans[0][1])
        regions = [("headers", 0, head_end)] if head_end > 0 else []
        regions += spans
        end = max((z for _, _, z in regions), default=0)
        if end < size:
            regions.append(("overlay", end, size))
        return regions


def _nt(head: bytes) -> tuple[int, int, int, int, int, int]:
    """(e_lfanew, machine, n_sections, optional size, characteristics, optional magic)."""
    if head[:2] != b"MZ":
        raise PEError("no MZ signature")
    if len(head) < 64:
        raise PEError("shorter than the 64-byte DOS header")
    (e,) = struct.unpack_from("<I", head, 0x3C)
    if head[e : e + 4] != b"PE\0\0":
        raise PEError(f"no PE signature at offset {e}")
    if e + 26 > len(head):
        raise PEError("the file header is cut short")
    machine, n_sections, _, _, _, opt_size, chars = struct.unpack_from("<HHIIIHH", head, e + 4)
    (magic,) = struct.unpack_from("<H", head, e + 24)
    if magic not in (PE32, PE32_PLUS):
        raise PEError(f"unknown optional header magic 0x{magic:x}")
    return e, machine, n_sections, opt_size, chars, magic


def parse(head: bytes) -> PEHeaders:
    """The headers of the PE file whose first bytes are ``head``; a ``PEError`` on what does not parse.

    The optional header must reach its data-directory count; every other part is taken as far as it
    lies in ``head``.
    """
    e, machine, n_sections, opt_size, chars, magic = _nt(head)
    opt, plus = e + 24, magic == PE32_PLUS
    n_dirs_at = opt + (108 if plus else 92)
    if n_dirs_at + 4 > len(head):
        raise PEError("the optional header is cut short")
    size_code, size_init, size_uninit, entry = struct.unpack_from("<IIII", head, opt + 4)
    linker = struct.unpack_from("<BB", head, opt + 2)
    sect_align, file_align, os_major = struct.unpack_from("<IIH", head, opt + 32)
    image_version = struct.unpack_from("<HH", head, opt + 44)
    (subsys_major,) = struct.unpack_from("<H", head, opt + 48)
    (checksum,) = struct.unpack_from("<I", head, opt + 64)
    size_image, size_headers = struct.unpack_from("<II", head, opt + 56)
    subsystem, dll_chars = struct.unpack_from("<HH", head, opt + 68)
    stack_reserve, stack_commit, heap_reserve = struct.unpack_from("<QQQ" if plus else "<III", head, opt + 72)
    (n_dirs,) = struct.unpack_from("<I", head, n_dirs_at)
    directories = []
    for i in range(min(n_dirs, len(DIRECTORIES))):
        at = n_dirs_at + 4 + 8 * i
        if at + 8 > len(head) or at + 8 > opt + opt_size:
            break
        directories.append(struct.unpack_from("<II", head, at))
    table = opt + opt_size
    sections = []
    for i in range(min(n_sections, max(0, (len(head) - table) // 40))):
        raw_name, vsize, vaddr, rsize, rptr = struct.unpack_from("<8sIIII", head, table + 40 * i)
        (sc,) = struct.unpack_from("<I", head, table + 40 * i + 36)
        sections.append(Section(raw_name.rstrip(b"\0"), vsize, vaddr, rsize, rptr, sc))
    return PEHeaders(
        e, machine, n_sections, chars, opt, opt_size, plus, size_code, size_init, size_uninit, entry,
        sect_align, file_align, os_major, subsys_major, linker, image_version, checksum, size_image,
        size_headers, subsystem, dll_chars, stack_reserve, stack_commit, heap_reserve, n_dirs,
        tuple(directories), tuple(sections),
    )  # fmt: skip


def parse_or_none(head: bytes) -> PEHeaders | None:
    """``parse``, or None for bytes that are not a PE file."""
    try:
        return parse(head)
    except PEError:
        return None


def problem(head: bytes, size: int, headers: PEHeaders | None = None) -> str | None:
    """Why an ``MZ`` file of ``size`` bytes is not a whole PE (bad or missing headers, truncated), or
    None if it is one. ``headers`` is ``parse(head)`` when the caller already has it."""
    if len(head) < 64:
        return "truncated PE: shorter than the 64-byte DOS header"
    (e,) = struct.unpack_from("<I", head, 0x3C)
    if e + 24 > size:
        return f"truncated PE: the PE header offset {e} lies past the end of the file"
    if head[e : e + 4] == b"PE\0\0" and e + 24 <= len(head):
        # The loader wants the whole declared section table, not just the part that is there.
        (n_sections,) = struct.unpack_from("<H", head, e + 6)
        (opt_size,) = struct.unpack_from("<H", head, e + 20)
        if e + 24 + opt_size + 40 * n_sections > size:
            return f"truncated PE: the table of {n_sections} sections runs past the end of the file"
    if headers is None:
        try:
            headers = parse(head)
        except PEError as err:
            return f"malformed PE: {err}"
    if headers.n_sections == 0 or not headers.sections:
        return "malformed PE: no sections"
    end = headers.raw_end()
    if end == 0:
        return "malformed PE: no section has raw data"
    if end > size:
        return f"truncated PE: sections end at byte {end:,} but the file has {size:,} bytes"
    if headers.size_of_headers > size:
        return "truncated PE: headers run past the end of the file"
    return None
