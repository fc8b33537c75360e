"""Safe reads: size limits, chunked streaming, sha256, atomic writes. Never parses or runs content.

Samples are opened read-only as bytes; nothing here imports, executes or unpickles what it reads.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import stat
import tempfile
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from malvision.errors import EmptyFileError, InputError, MalvisionError

__all__ = [
    "DEFAULT_MAX_SIZE",
    "CHUNK",
    "Source",
    "FileSource",
    "MemorySource",
    "check_file",
    "open_source",
    "expand_inputs",
    "is_dir",
    "is_zip",
    "atomic_writer",
    "deferred_interrupts",
    "WriteError",
    "make_dirs",
    "human_size",
]

DEFAULT_MAX_SIZE = 8 * 1024**3  # 8 GiB: larger inputs are refused unless the limit is raised
# Bytes read at a time. Each chunk goes through several passes (sha256, the byte histogram, the printable
# runs, ...): at 1 MiB it is still in the core's cache for the later ones, and the default's conversion of
# 400 benign files took 0.83 s against 1.02 s at 4 MiB (benchmarks/results/scan.md).
CHUNK = 1024 * 1024


def human_size(n: float) -> str:
    """1536 -> '1.5 KiB'."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError  # unreachable


def check_file(path: Path | str, max_size: int = DEFAULT_MAX_SIZE) -> int:
    """Size of a readable, non-empty regular file within ``max_size``; else an ``InputError``."""
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        if p.is_symlink():
            raise InputError(f"{p}: broken symbolic link") from None
        raise InputError(f"{p}: no such file") from None
    except OSError as e:  # symlink loop, name too long, permission on a parent
        raise InputError(f"{p}: cannot open ({e.strerror or e})") from None
    except ValueError:  # a NUL byte in the name
        raise InputError(f"{str(p)!r}: not a file name (it holds a NUL byte)") from None
    if stat.S_ISDIR(st.st_mode):
        raise InputError(f"{p}: is a directory, expected a file")
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"{p}: not a regular file (device, FIFO or socket)")
    if st.st_size == 0:
        raise EmptyFileError(f"{p}: empty file")
    if st.st_size > max_size:
        raise InputError(
            f"{p}: {human_size(st.st_size)} is over the {human_size(max_size)} size limit "
            "(raise it with --max-size)"
        )
    if not os.access(p, os.R_OK):
        raise InputError(f"{p}: permission denied")
    return st.st_size


@dataclass
class Source:
    """A named run of bytes read in chunks; ``sha256`` is filled by a full read.

    ``plot_width`` is set when the bytes already are the rows of a byte plot (a Malimg PNG's pixels),
    so conversion keeps that width instead of choosing one from the size.
    """

    name: str
    size: int
    plot_width: int | None = field(default=None, kw_only=True)
    _digest: str | None = field(default=None, init=False, repr=False)

    def _raw_chunks(self, limit: int | None) -> Iterator[memoryview]:
        raise NotImplementedError

    def chunks(self, limit: int | None = None) -> Iterator[memoryview]:
        """Yield the bytes (at most ``limit``) in chunks; hash them when the whole file is read."""
        whole = limit is None or limit >= self.size
        h = hashlib.sha256() if whole and self._digest is None else None
        got = 0
        for chunk in self._raw_chunks(limit):
            if h is not None:
                h.update(chunk)
            got += len(chunk)
            yield chunk
        if whole and got != self.size:
            raise InputError(f"{self.name}: file changed while reading ({got} of {self.size} bytes)")
        if h is not None:
            self._digest = h.hexdigest()

    def read(self, limit: int | None = None) -> bytes:
        """The first ``limit`` bytes (all by default) as one ``bytes``."""
        return b"".join(bytes(c) for c in self.chunks(limit))

    @property
    def sha256(self) -> str:
        if self._digest is None:
            for _ in self.chunks():
                pass
        assert self._digest is not None
        return self._digest


@dataclass
class FileSource(Source):
    """Bytes of a file on disk, read in fixed chunks so memory stays flat for any size."""

    path: Path = Path()

    def _raw_chunks(self, limit: int | None) -> Iterator[memoryview]:
        remaining = self.size if limit is None else min(limit, self.size)
        buf = bytearray(min(CHUNK, max(remaining, 1)))
        view = memoryview(buf)
        try:
            with open(self.path, "rb", buffering=0) as f:
                while remaining > 0:
                    n = f.readinto(view[: min(len(buf), remaining)])
                    if not n:
                        break
                    remaining -= n
                    yield view[:n]
        except OSError as e:
            raise InputError(f"{self.name}: read failed ({e.strerror or e})") from None


@dataclass
class MemorySource(Source):
    """Bytes already in memory: a zip entry, stdin or an upload."""

    data: bytes = b""

    def _raw_chunks(self, limit: int | None) -> Iterator[memoryview]:
        view = memoryview(self.data)[: limit if limit is not None else len(self.data)]
        for i in range(0, len(view), CHUNK):
            yield view[i : i + CHUNK]

    @classmethod
    def of(cls, name: str, data: bytes, plot_width: int | None = None) -> MemorySource:
        """``data``: bytes, a bytearray or memoryview (kept, never copied), or another buffer of bytes
        (a numpy uint8 array), copied to bytes."""
        if not isinstance(data, bytes | bytearray | memoryview):
            data = memoryview(data).cast("B").tobytes()
        if len(data) == 0:
            raise EmptyFileError(f"{name}: empty file")
        return cls(name=name, size=len(data), data=data, plot_width=plot_width)


def open_source(path: Path | str, max_size: int = DEFAULT_MAX_SIZE) -> FileSource:
    """A checked ``FileSource`` for ``path`` (see ``check_file`` for what is refused)."""
    size = check_file(path, max_size)
    return FileSource(name=str(path), size=size, path=Path(path))


def expand_inputs(paths: Iterable[Path | str]) -> Iterator[tuple[Path, Path]]:
    """Yield (path, path relative to its input root) for files and, recursively, folders.

    Folder entries come sorted; a folder named in ``paths`` is walked even through a symlink, but
    symlinked folders inside it are not followed (no loops). Entries that are not files (broken
    links, FIFOs, symlinked folders) are still yielded so the caller reports them.
    """
    for raw in paths:
        root = Path(raw)
        if is_dir(root):
            for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
                dirnames.sort()
                for name in sorted(filenames + [d for d in dirnames if Path(dirpath, d).is_symlink()]):
                    p = Path(dirpath, name)
                    yield p, p.relative_to(root)
        else:
            yield root, Path(root.name)


_ZIP_STARTS = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")  # an entry, an empty archive, a split one


def is_zip(src: Path | bytes | bytearray | memoryview) -> bool:
    """Whether a file (or bytes) is a zip archive: it *starts* as one and its central directory is found.

    ``zipfile.is_zipfile`` alone finds an end-of-directory record anywhere near the end, so it takes a
    self-extractor (a program with a zip appended) or a program holding a stray record for a zip, and
    scanning its entries would skip the program itself. False where asking fails (the file check that
    follows names the reason).
    """
    import io
    import zipfile

    try:
        if isinstance(src, Path):
            if not src.is_file():
                return False
            with open(src, "rb") as f:
                head = f.read(4)
            return head.startswith(_ZIP_STARTS) and zipfile.is_zipfile(src)
        return bytes(src[:4]).startswith(_ZIP_STARTS) and zipfile.is_zipfile(io.BytesIO(src))
    except OSError:
        return False


def is_dir(path: Path) -> bool:
    """Whether ``path`` is a folder; False where asking fails (a name too long, no permission on a
    parent), so the file check that follows names the reason."""
    try:
        return path.is_dir()
    except OSError:
        return False


@contextlib.contextmanager
def atomic_writer(path: Path | str) -> Iterator[BinaryIO]:
    """Write ``path`` through a temporary file in the same folder, renamed into place on success.

    On any error (or interrupt) the temporary file is removed: readers see the old file or the whole
    new one, never a half-written one. The file gets the usual mode (0o666 less the umask), and an
    ``OSError`` (folder not writable, disk full) becomes a ``WriteError``: a one-line
    ``MalvisionError`` that is still an ``OSError``.
    """
    dest = Path(path)
    tmp: str | None = None
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        with deferred_interrupts():  # an interrupt inside mkstemp would leave a file with no name to remove
            fd, tmp = tempfile.mkstemp(prefix=f".{dest.name[:100]}.", suffix=".part", dir=dest.parent)
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o666 & ~_umask())  # mkstemp makes it 0o600
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, dest)
    except BaseException as e:
        if tmp is not None:
            with deferred_interrupts(), contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        if isinstance(e, OSError) and not isinstance(e, WriteError):
            raise WriteError(dest, e) from None
        raise


@contextlib.contextmanager
def deferred_interrupts() -> Iterator[None]:
    """Hold SIGINT and SIGTERM until the block ends, then deliver them to the handlers in place before.

    For short writes that must not be cut: an interrupt inside ``torch.save`` makes its zip writer
    fail on the way out, and that error would replace the interrupt. Outside the main thread, where
    handlers cannot be set, the block runs as it is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    held = (signal.SIGINT, signal.SIGTERM)
    previous = {s: signal.signal(s, lambda signum, _frame: caught.append(signum)) for s in held}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, signal.SIG_DFL if handler is None else handler)
        for s in dict.fromkeys(caught):
            signal.raise_signal(s)


class WriteError(MalvisionError, OSError):
    """A failed write: one line for the CLI, still an ``OSError`` (same errno, strerror) for callers."""

    def __init__(self, dest: Path, cause: OSError) -> None:
        super().__init__(cause.errno, cause.strerror)
        where = f": {cause.filename}" if cause.filename and str(cause.filename) != str(dest) else ""
        self.message = f"{dest}: cannot write ({cause.strerror or cause}{where})"

    def __str__(self) -> str:
        return self.message


def make_dirs(path: Path | str) -> Path:
    """``path`` and its parents as folders; a ``WriteError`` (one line) when one cannot be made."""
    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise WriteError(p, e) from None
    return p


def _umask() -> int:
    """The process umask (read by setting and restoring it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
