"""The PE layer: headers, sections, data directories and imports of a Windows PE file, parsed once.

    headers = parse(head)              # the first HEAD_BYTES of a file
    problem(head, size, headers)       # why it is not a whole PE, or None
    headers.regions(size)              # headers, sections and overlay by file offset
    read_imports(headers, window, at)  # the import table from the range import_window(headers) names

Read with ``struct`` from bytes only; nothing here maps, loads or runs a file.
"""

from malvision.pe.headers import (
    DIRECTORIES,
    HEAD_BYTES,
    PEError,
    PEHeaders,
    Section,
    parse,
    parse_or_none,
    problem,
    type_kind,
)
from malvision.pe.imports import MAX_SECTIONS, WINDOW, Imports, api_name, import_window, read_imports

__all__ = [
    "DIRECTORIES",
    "HEAD_BYTES",
    "MAX_SECTIONS",
    "WINDOW",
    "Imports",
    "PEError",
    "PEHeaders",
    "Section",
    "api_name",
    "import_window",
    "parse",
    "parse_or_none",
    "problem",
    "read_imports",
    "type_kind",
]
