"""A PE file's resource directory, read with ``struct``: what a program carries besides its code.

A real Windows program ships menus, dialogs, accelerators, icons and a version block; a dropper often
carries little but one large raw blob (``RCDATA``) to write out and run. The directory is a tree of
three levels (type, name, language) whose leaves point at the data. ``resource_window`` names the file
range a streaming reader keeps (the start of the resource directory, at most ``WINDOW`` bytes, within
its section), ``read_resources`` walks it. Only the tree is read, never the data it points at.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from malvision.pe.headers import PEHeaders
from malvision.pe.imports import MAX_SECTIONS

__all__ = ["WINDOW", "TYPES", "Resources", "resource_window", "read_resources"]

WINDOW = 1 << 16  # bytes of the directory kept: the tree and its leaves sit before the data
MAX_TYPES = 64
MAX_NAMES = 256  # names of one type
MAX_LANGUAGES = 16  # languages of one name
MAX_LEAVES = 4096
# The predefined types (winuser.h RT_*) a feature names.
TYPES = {2: "bitmap", 3: "icon", 4: "menu", 5: "dialog", 6: "string", 9: "accelerator", 10: "rcdata",
         14: "group_icon", 16: "version", 23: "html", 24: "manifest"}  # fmt: skip


@dataclass(frozen=True)
class Resources:
    """The tree's type ids (-1 for a type with a name), how many leaves, their language ids, and the
    largest ``RCDATA`` leaf's size in bytes."""

    types: tuple[int, ...] = ()
    leaves: int = 0
    languages: tuple[int, ...] = ()
    rcdata_max: int = 0
    parsed: bool = False


def resource_window(headers: PEHeaders) -> tuple[int, int] | None:
    """The file range ``[start, end)`` that holds the resource directory's tree."""
    entry = headers.directory("resource")
    rva = entry[0] if entry and entry[1] else 0
    at = headers.offset(rva, MAX_SECTIONS) if rva else None
    if at is None:
        return None
    section = headers.section_of(rva, MAX_SECTIONS)
    end = section.raw_pointer + section.raw_size if section is not None else at + WINDOW
    return (at, min(at + WINDOW, end)) if end > at else None


def read_resources(window: bytes) -> Resources:
    """Walk the tree from ``window`` (the file's bytes from the directory's start, as ``resource_window``
    names them). Offsets past the window or back into a level already read end that branch."""
    types, languages, leaves, rcdata_max = [], [], 0, 0
    for type_id, type_dir in _entries(window, 0, MAX_TYPES):
        types.append(type_id)
        if type_dir is None:
            continue
        for _, name_dir in _entries(window, type_dir, MAX_NAMES):
            if name_dir is None:
                continue
            for lang, leaf in _entries(window, name_dir, MAX_LANGUAGES, leaves_only=True):
                if leaf is None or leaf + 16 > len(window) or leaves >= MAX_LEAVES:
                    continue
                leaves += 1
                languages.append(lang & 0x3FF)
                if type_id == 10:
                    rcdata_max = max(rcdata_max, struct.unpack_from("<I", window, leaf + 4)[0])
    return Resources(tuple(types), leaves, tuple(languages), rcdata_max, parsed=len(window) >= 16)


def _entries(window: bytes, at: int, limit: int, leaves_only: bool = False) -> list[tuple[int, int | None]]:
    """(id, offset) of a directory's entries: a name's id is -1; the offset is the subdirectory's (or the
    leaf's with ``leaves_only``), None where it points the other way or out of the window."""
    if at + 16 > len(window):
        return []
    named, ids = struct.unpack_from("<HH", window, at + 12)
    out = []
    for k in range(min(named + ids, limit)):
        e = at + 16 + 8 * k
        if e + 8 > len(window):
            break
        name, offset = struct.unpack_from("<II", window, e)
        is_dir = bool(offset & 0x80000000)
        offset &= 0x7FFFFFFF
        ok = is_dir != leaves_only and at < offset < len(window)  # forward only: no loops
        out.append((-1 if name & 0x80000000 else name & 0xFFFF, offset if ok else None))
    return out
