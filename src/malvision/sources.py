"""What a command's inputs expand to: files, folders (recursive), stdin and sample-zip entries.

Each input becomes (display name, relative output path, opener). Openers run later, on worker threads
or processes, and raise ``MalvisionError`` for what cannot be read, so a batch reports it and goes on.
Files on disk get a ``FileOpener``, which pickles, so a worker process can open the file itself;
stdin and zip entries are read in this process.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from malvision.errors import InputError, MalvisionError
from malvision.io import CHUNK, DEFAULT_MAX_SIZE, MemorySource, Source, expand_inputs, is_zip, open_source

__all__ = ["Opener", "FileOpener", "iter_sources"]

Opener = Callable[[], Source]


@dataclass(frozen=True)
class FileOpener:
    """Opens (checks) one file on disk when called; picklable, unlike a closure."""

    path: Path
    max_size: int = DEFAULT_MAX_SIZE

    def __call__(self) -> Source:
        return open_source(self.path, self.max_size)


def _failing(error: str | MalvisionError) -> Opener:
    """An opener that raises ``error`` (a message, or the error itself to keep its kind)."""

    def opener() -> Source:
        raise error if isinstance(error, MalvisionError) else MalvisionError(error)

    return opener


def _stdin(max_size: int) -> Source:
    data = bytearray()  # in chunks: read(max_size + 1) allocates the whole limit (8 GiB) up front
    while len(data) <= max_size and (chunk := sys.stdin.buffer.read(CHUNK)):
        data += chunk
    if len(data) > max_size:
        raise InputError(f"-: standard input is over the {max_size}-byte size limit")
    return MemorySource.of("-", data)  # type: ignore[arg-type]  # bytes-like, never resized


def _zip_entries(
    path: Path, rel: Path, password: str, max_size: int, data: bytes | None = None
) -> Iterator[tuple[str, Path, Opener]]:
    """The entries of the zip at ``path`` (or in ``data``, which ``path`` then names)."""
    from malvision.data.zips import MAX_ENTRY_SIZE, ZipDataset

    try:
        zd = ZipDataset(
            path, label="sample", password=password, max_entry_size=min(max_size, MAX_ENTRY_SIZE), data=data
        )
    except MalvisionError as e:
        yield str(path), rel, _failing(str(e))
        return
    for name, msg in zd.skipped:
        yield name, rel, _failing(msg)
    for i, rec in enumerate(zd.records):
        entry = PurePosixPath(rec.id.replace("\\", "/"))
        yield rec.source, rel / Path(*entry.parts), (lambda i=i: zd.open(i))


def iter_sources(
    paths: str | Path | Iterable[str | Path],
    *,
    zip_password: str | None = None,
    max_size: int = DEFAULT_MAX_SIZE,
) -> Iterator[tuple[str, Path, Opener]]:
    """Expand inputs (one ``str`` or ``Path`` is one input, not a sequence of characters); with
    ``zip_password``, zip files yield their entries (read in memory, never extracted)."""
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    for raw in paths:
        if str(raw) == "-":
            yield from _stdin_sources(zip_password, max_size)
            continue
        for path, rel in expand_inputs([raw]):
            if zip_password is not None and is_zip(path):
                yield from _zip_entries(path, rel, zip_password, max_size)
            else:
                yield str(path), rel, FileOpener(path, max_size)


def _stdin_sources(zip_password: str | None, max_size: int) -> Iterator[tuple[str, Path, Opener]]:
    """Standard input as one source; with ``zip_password``, read here, and a zip yields its entries."""
    if zip_password is None:
        yield "-", Path("stdin"), lambda: _stdin(max_size)
        return
    try:
        src = _stdin(max_size)
    except MalvisionError as e:  # over the size limit, or empty (a verdict: the reader knows)
        yield "-", Path("stdin"), _failing(e)
        return
    if is_zip(src.data):
        yield from _zip_entries(Path("-"), Path("stdin"), zip_password, max_size, data=src.data)
    else:
        yield "-", Path("stdin"), lambda: src
