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

from malvision.pe.headers import PEHeaders

__all__ = ["WINDOW", "MAX_SECTIONS", "Imports", "import_window", "read_imports", "api_name"]

WINDOW = 1 << 20  # bytes kept either side of the import directory
MAX_SECTIONS = 96  # section headers read, as the Windows XP loader did
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
    owners: tuple[str, ...] = ()  # the DLL each of ``functions`` is imported from
    names: tuple[str, ...] = ()  # each of ``functions`` as the file names it (``CreateFileW``)

    def qualified(self) -> list[str]:
        """The functions as analysts write them, as the file names them: ``kernel32.dll!CreateFileW``."""
        return [f"{d}!{f}" for d, f in zip(self.owners, self.names or self.functions, strict=False)]


def import_window(headers: PEHeaders) -> tuple[int, int] | None:
    """The file range ``[start, end)`` that holds the import table."""
    entry = headers.directory("import")
    rva = entry[0] if entry else 0
    at = headers.offset(rva, MAX_SECTIONS) if rva else None
    if at is None:
        return None
    lo, hi = max(0, at - WINDOW), at + WINDOW
    for s in headers.sections[:MAX_SECTIONS]:  # every section that claims the directory narrows the range
        if s.virtual_address <= rva < s.virtual_address + max(s.virtual_size, s.raw_size):
            lo, hi = max(lo, s.raw_pointer), min(hi, s.raw_pointer + s.raw_size)
    return lo, hi


def api_name(name: str) -> str:
    """``CreateFileW`` and ``CreateFileA`` are one API to us: drop the character-set suffix."""
    if len(name) > 2 and name[-1] in "AW" and (name[-2].islower() or name[-2].isdigit()):
        return name[:-1]
    return name


def read_imports(headers: PEHeaders | None, window: bytes, start: int) -> Imports:
    """Parse the import table from ``window`` (the file's bytes from offset ``start``). What is
    malformed or out of range ends the walk; any bytes give a result."""
    entry = headers.directory("import") if headers is not None else None
    if headers is None or entry is None:
        return Imports()
    view = _Window(headers, window, start, entry[0])
    dlls: list[str] = []
    functions: list[str] = []
    owners: list[str] = []
    n_ordinal = 0
    for k in range(MAX_DLLS):
        d = view.at(entry[0] + 20 * k, 20)
        if d is None:
            break
        lookup, _, _, name_rva, first = struct.unpack_from("<IIIII", window, d)
        if not (lookup or name_rva or first):
            break
        dll = view.cstring(name_rva)
        if dll is None:
            continue
        dlls.append(dll.lower())
        n_ordinal += view.thunks(dll.lower(), lookup or first, functions)
        owners += [dll.lower()] * (len(functions) - len(owners))
        if len(functions) >= MAX_FUNCTIONS:
            break
    names = tuple(functions)
    return Imports(
        tuple(dlls), tuple(api_name(f) for f in names), n_ordinal, bool(dlls), tuple(owners), names
    )


class _Window:
    """The file bytes that hold an import table, addressed by rva."""

    def __init__(self, headers: PEHeaders, window: bytes, start: int, import_rva: int) -> None:
        self.headers, self.window, self.start = headers, window, start
        # Nearly every lookup lands in the section that holds the directory: map that one without a search.
        home = next(
            (
                s
                for s in headers.sections[:MAX_SECTIONS]
                if s.virtual_address <= import_rva < s.virtual_address + s.raw_size
            ),
            None,
        )
        self.lo, self.hi = (home.virtual_address, home.virtual_address + home.raw_size) if home else (0, 0)
        self.shift = home.raw_pointer - home.virtual_address - start if home else -start
        self.width, self.fmt = (8, "<Q") if headers.plus else (4, "<I")

    def at(self, rva: int, n: int) -> int | None:
        """Index in the window of ``n`` bytes at ``rva``, or None where they are not in it."""
        if self.lo <= rva < self.hi:
            i = rva + self.shift
        elif (off := self.headers.offset(rva, MAX_SECTIONS)) is not None:
            i = off - self.start
        else:
            return None
        return i if i >= 0 and i + n <= len(self.window) else None

    def cstring(self, rva: int) -> str | None:
        """The NUL-ended ASCII name at ``rva`` (at most ``MAX_NAME`` bytes), or None."""
        i = self.at(rva, 1)
        if i is None:
            return None
        end = self.window.find(b"\0", i, i + MAX_NAME)
        raw = self.window[i : end if end >= 0 else i + MAX_NAME]
        return raw.decode("latin-1") if raw and raw.isascii() else None

    def thunks(self, dll: str, thunk: int, functions: list[str]) -> int:
        """Append the functions one DLL's thunk array names (as it names them); returns how many were by
        ordinal."""
        flag = 1 << (8 * self.width - 1)
        n_ordinal = 0
        for j in range(MAX_FUNCTIONS - len(functions)):
            t = self.at(thunk + self.width * j, self.width)
            if t is None:
                break
            (v,) = struct.unpack_from(self.fmt, self.window, t)
            if v == 0:
                break
            if v & flag:
                n_ordinal += 1
                known = ordLookup(dll.encode(), v & 0xFFFF, make_name=False)
                functions.append(known.decode() if known else f"#{v & 0xFFFF}")
            elif (name := self.cstring((v & 0x7FFFFFFF) + 2)) is not None:
                functions.append(name)
        return n_ordinal
