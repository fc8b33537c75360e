"""A PE file's import table, read with ``struct``: which DLLs it links and which functions it names.

What a program asks Windows for (``VirtualAllocEx``, ``WriteProcessMemory``, ``CreateRemoteThread``)
says more about what it does than its byte texture. The table can sit anywhere in a file, so a
streaming reader first asks ``import_window`` which file range to keep (the section that holds the
import directory, at most ``WINDOW`` bytes either side of it), then ``read_imports`` parses that
range. Names outside the range are skipped, never fetched: one read per file stays one read.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ordlookup import ordLookup  # pefile's table of well-known ordinals (ws2_32, oleaut32)

__all__ = ["WINDOW", "Imports", "NtHeaders", "nt_headers", "import_window", "read_imports", "api_name"]

WINDOW = 1 << 20  # bytes kept either side of the import directory
MAX_DLLS = 512
MAX_FUNCTIONS = 8192
MAX_NAME = 512


@dataclass(frozen=True)
class Imports:
    """DLL names (lower case) and function names (``api_name`` form). An import by ordinal is named
    from pefile's table where the DLL is a well-known one, else ``#n``."""

    dlls: tuple[str, ...] = ()
    functions: tuple[str, ...] = ()
    n_ordinal: int = 0
    parsed: bool = False


@dataclass(frozen=True)
class _Layout:
    plus: bool
    sections: tuple[tuple[int, int, int, int], ...]  # virtual address, virtual size, raw pointer, raw size
    import_rva: int


@dataclass(frozen=True)
class NtHeaders:
    """The file header's fields, where the optional header starts and whether it is PE32+."""

    machine: int
    n_sections: int
    opt_size: int
    characteristics: int
    opt: int
    plus: bool


def nt_headers(head: bytes) -> NtHeaders:
    """Find and check the NT headers (MZ, PE signature, optional header magic); raises
    struct.error/ValueError on what does not parse."""
    if head[:2] != b"MZ":
        raise ValueError("no MZ")
    (e,) = struct.unpack_from("<I", head, 0x3C)
    if head[e : e + 4] != b"PE\0\0":
        raise ValueError("no PE signature")
    machine, n_sections, _, _, _, opt_size, chars = struct.unpack_from("<HHIIIHH", head, e + 4)
    (magic,) = struct.unpack_from("<H", head, e + 24)
    if magic not in (0x10B, 0x20B):
        raise ValueError("bad optional header magic")
    return NtHeaders(machine, n_sections, opt_size, chars, e + 24, magic == 0x20B)


def _layout(head: bytes) -> _Layout:
    """Section table and import directory from the headers; raises struct.error/ValueError."""
    nt = nt_headers(head)
    n_sections, opt_size, opt, plus = nt.n_sections, nt.opt_size, nt.opt, nt.plus
    n_dirs_at = opt + (108 if plus else 92)
    (n_dirs,) = struct.unpack_from("<I", head, n_dirs_at)
    if n_dirs < 2 or n_dirs_at + 20 > opt + opt_size:
        raise ValueError("no import directory entry")
    (rva,) = struct.unpack_from("<I", head, n_dirs_at + 12)
    table = opt + opt_size
    n = min(n_sections, max(0, (len(head) - table) // 40), 96)
    sections = []
    for i in range(n):
        vsize, vaddr, rsize, raw = struct.unpack_from("<IIII", head, table + 40 * i + 8)
        sections.append((vaddr, vsize, raw, rsize))
    return _Layout(plus, tuple(sections), rva)


def _offset(layout: _Layout, rva: int) -> int | None:
    """File offset of ``rva``: in a section, or in the headers when it lies before every section."""
    for vaddr, vsize, raw, rsize in layout.sections:
        if vaddr <= rva < vaddr + max(vsize, rsize):
            return rva - vaddr + raw if rva - vaddr < rsize else None
    first = min((s[0] for s in layout.sections), default=0)
    return rva if rva < first else None


def import_window(head: bytes) -> tuple[int, int] | None:
    """The file range ``[start, end)`` that holds the import table, from a file's first bytes."""
    try:
        layout = _layout(head)
    except (struct.error, ValueError):
        return None
    at = _offset(layout, layout.import_rva) if layout.import_rva else None
    if at is None:
        return None
    lo, hi = max(0, at - WINDOW), at + WINDOW
    for vaddr, vsize, raw, rsize in layout.sections:
        if vaddr <= layout.import_rva < vaddr + max(vsize, rsize):
            lo, hi = max(lo, raw), min(hi, raw + rsize)
    return lo, hi


def api_name(name: str) -> str:
    """``CreateFileW`` and ``CreateFileA`` are one API to us: drop the character-set suffix."""
    if len(name) > 2 and name[-1] in "AW" and (name[-2].islower() or name[-2].isdigit()):
        return name[:-1]
    return name


def read_imports(head: bytes, window: bytes, start: int) -> Imports:
    """Parse the import table from ``window`` (the file's bytes from offset ``start``), with the
    headers from ``head``. What is malformed or out of range ends the walk; any bytes give a result."""
    try:
        layout = _layout(head)
    except (struct.error, ValueError):
        return Imports()

    # Nearly every lookup lands in the section that holds the directory: map that one without a search.
    home = next((s for s in layout.sections if s[0] <= layout.import_rva < s[0] + s[3]), (0, 0, 0, 0))
    lo, hi, shift = home[0], home[0] + home[3], home[2] - home[0] - start

    def at(rva: int, n: int) -> int | None:
        if lo <= rva < hi:
            i = rva + shift
        elif (off := _offset(layout, rva)) is not None:
            i = off - start
        else:
            return None
        return i if i >= 0 and i + n <= len(window) else None

    def cstring(rva: int) -> str | None:
        i = at(rva, 1)
        if i is None:
            return None
        end = window.find(b"\0", i, i + MAX_NAME)
        raw = window[i : end if end >= 0 else i + MAX_NAME]
        return raw.decode("latin-1") if raw and raw.isascii() else None

    width, fmt = (8, "<Q") if layout.plus else (4, "<I")
    flag = 1 << (8 * width - 1)
    dlls: list[str] = []
    functions: list[str] = []
    n_ordinal = 0
    for k in range(MAX_DLLS):
        d = at(layout.import_rva + 20 * k, 20)
        if d is None:
            break
        lookup, _, _, name_rva, first = struct.unpack_from("<IIIII", window, d)
        if not (lookup or name_rva or first):
            break
        dll = cstring(name_rva)
        if dll is None:
            continue
        dll = dll.lower()
        dlls.append(dll)
        thunk = lookup or first
        for j in range(MAX_FUNCTIONS - len(functions)):
            t = at(thunk + width * j, width)
            if t is None:
                break
            (v,) = struct.unpack_from(fmt, window, t)
            if v == 0:
                break
            if v & flag:
                n_ordinal += 1
                known = ordLookup(dll.encode(), v & 0xFFFF, make_name=False)
                functions.append(api_name(known.decode()) if known else f"#{v & 0xFFFF}")
            elif (name := cstring((v & 0x7FFFFFFF) + 2)) is not None:
                functions.append(api_name(name))
        if len(functions) >= MAX_FUNCTIONS:
            break
    return Imports(tuple(dlls), tuple(functions), n_ordinal, bool(dlls))
