"""Password-protected sample zips (``infected``), read entry by entry into memory, never extracted."""

from __future__ import annotations

import contextlib
import csv
import io
import re
import struct
import threading
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import Any

import pyzipper

from malvision.data.records import RawDataset, Record
from malvision.errors import DatasetError
from malvision.io import CHUNK, MemorySource, Source, human_size

__all__ = [
    "DEFAULT_PASSWORD",
    "MAX_ENTRY_SIZE",
    "MAX_TOTAL_SIZE",
    "MAX_RATIO",
    "MAX_ENTRIES",
    "ZipDataset",
    "unsafe_entry_name",
]

DEFAULT_PASSWORD = "infected"
MAX_ENTRY_SIZE = 1024**3  # 1 GiB: one sample is read whole into memory
MAX_TOTAL_SIZE = 64 * 1024**3  # sum of the declared sizes of the listed entries
MAX_RATIO = 1100  # declared / compressed size; DEFLATE tops out near 1032:1, zero-padded malware nears it
RATIO_MIN_SIZE = 1024**2
MAX_ENTRIES = 1_000_000  # listing costs ~1 KB of memory per entry; VirusShare zips hold 65,536-131,072
_LOCAL_HEADER = 30
MANIFEST = "manifest.csv"
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_READ_ERRORS = (
    RuntimeError,
    zipfile.BadZipFile,
    pyzipper.BadZipFile,
    zlib.error,
    NotImplementedError,
    EOFError,
    OSError,
    ValueError,
    # pyzipper on damaged AES entries (found by fuzzing): an unknown key strength, an AES entry
    # without the encrypted flag
    KeyError,
    IndexError,
    AttributeError,
    TypeError,
    struct.error,
)


def unsafe_entry_name(name: str) -> bool:
    """True for empty or absolute names, drive letters and ``..`` parts (zip slip), in / or \\ form."""
    norm = name.replace("\\", "/")
    return (
        not norm.strip("/")
        or norm.startswith("/")
        or bool(re.match(r"[A-Za-z]:", norm))
        or ".." in norm.split("/")
    )


def _overlapping(infos: list[zipfile.ZipInfo]) -> set[int]:
    """ids of entries whose compressed bytes start inside an earlier entry's (overlapping entries)."""
    bad: set[int] = set()
    end = -1
    for info in sorted(infos, key=lambda i: i.header_offset):
        if info.header_offset < end:
            bad.add(id(info))
        end = max(end, info.header_offset + _LOCAL_HEADER + info.compress_size)
    return bad


def _is_password_error(e: BaseException) -> bool:
    return isinstance(e, RuntimeError) and "password" in str(e).lower()


def _libarchive() -> Any:
    """libarchive-c, or None where the system's libarchive does not load (ctypes fails several ways)."""
    try:
        import libarchive
    except Exception:  # noqa: BLE001 (OSError, AttributeError, ImportError: all mean "not here")
        return None
    return libarchive


def _zipcrypto(info: zipfile.ZipInfo) -> bool:
    """Encrypted with the traditional PKWARE cipher, which pyzipper decrypts in Python (~8 MB/s of plaintext)."""
    return bool(info.flag_bits & 1) and info.compress_type != 99  # 99: AES, decrypted in C already


class _ZipCryptoStream:
    """ZipCrypto entries decrypted by libarchive (in C, some 20 times faster than pyzipper), read
    forward through the archive. Each entry is checked against the central directory (name, size,
    CRC-32) before use; whatever this cannot give (an entry passed, a mismatch, an error), ``get``
    returns None for and pyzipper reads. Entries read on the way to the one asked for are kept, up to
    ``CACHE`` bytes, for the reader threads that ask out of order."""

    CACHE = 256 * 1024**2

    def __init__(
        self, libarchive: Any, path: Path, password: bytes, wanted: dict[int, zipfile.ZipInfo]
    ) -> None:
        self._wanted = wanted
        self._by_name: dict[str, list[int]] = {}
        for i, info in sorted(wanted.items(), key=lambda kv: kv[1].header_offset):
            self._by_name.setdefault(info.filename, []).append(i)
        self._cache: dict[int, bytearray] = {}
        self._cached = 0
        self._ctx = libarchive.file_reader(str(path), passphrase=password, block_size=CHUNK)
        self._entries = iter(self._ctx.__enter__())
        self._done = False

    def get(self, i: int, limit: int) -> bytearray | None:
        """Entry ``i`` (at most ``limit`` bytes), or None."""
        if i in self._cache:
            data = self._cache.pop(i)
            self._cached -= len(data)
            return data
        if i not in self._wanted:
            return None
        while not self._done:
            try:
                entry = next(self._entries, None)
                if entry is None:
                    self.close()
                    return None
                queue = self._by_name.get(entry.pathname)
                if not queue:
                    continue
                j = queue.pop(0)
                if j == i:
                    return self._read(entry, j, limit)
                if self._cached + self._wanted[j].file_size <= self.CACHE:
                    data = self._read(entry, j, limit)
                    if data is not None:
                        self._cache[j] = data
                        self._cached += len(data)
            except Exception:  # noqa: BLE001 (libarchive's errors, a damaged archive): pyzipper reads the rest
                self.close()
        return None

    def _read(self, entry: Any, j: int, limit: int) -> bytearray | None:
        info = self._wanted.pop(j)
        data = bytearray()
        for block in entry.get_blocks(CHUNK):
            data += block
            if len(data) > limit:
                return None
        return data if len(data) == info.file_size and zlib.crc32(data) == info.CRC else None

    def close(self) -> None:
        if not self._done:
            self._done = True
            self._cache.clear()
            with contextlib.suppress(Exception):
                self._ctx.__exit__(None, None, None)


class ZipDataset(RawDataset):
    """Samples in a (possibly encrypted: ZipCrypto or AES) zip, entries ``<family>/<name>``.

    label = ``label`` (e.g. "malware") or, when None, the family; group = family (the top folder, or
    the ``family`` column of a top-level ``manifest.csv`` with sha256,family,kind,size,original_name).
    ``kinds`` keeps only entries whose manifest kind is listed (e.g. ``("pe",)``). Entries over
    ``max_entry_size``, compressed more than ``max_ratio``:1 (zip bombs) or with unsafe names
    (``../``, absolute) or overlapping another entry's bytes (a non-recursive zip bomb) are skipped and
    reported; more than ``max_entries`` entries or a wrong password is a ``DatasetError``. ``data``:
    the zip's bytes, already in memory (an upload; ``path`` then only names it).
    """

    format = "zip"

    def __init__(
        self,
        path: Path | str,
        label: str | None = None,
        password: str | bytes | None = DEFAULT_PASSWORD,
        kinds: tuple[str, ...] | None = None,
        max_entry_size: int = MAX_ENTRY_SIZE,
        max_total_size: int = MAX_TOTAL_SIZE,
        max_ratio: float = MAX_RATIO,
        strict: bool = False,
        max_entries: int = MAX_ENTRIES,
        collection: str | None = None,
        data: bytes | None = None,
    ) -> None:
        self.path = Path(path)
        self.collection = collection
        super().__init__(self.path.name)
        self.strict = strict
        self.max_entry_size = max_entry_size
        if data is None and not self.path.is_file():
            raise DatasetError(f"{self.path}: no such zip file")
        # One reader at a time: concurrent reads of one archive (scan's worker threads) corrupted
        # entries now and then ("Bad CRC-32"); decryption holds the GIL anyway.
        self._lock = threading.Lock()
        try:
            self._zf = pyzipper.AESZipFile(self.path if data is None else io.BytesIO(data))
        except _READ_ERRORS as e:
            raise DatasetError(f"{self.path}: not a zip file or corrupt ({e})") from None
        if len(self._zf.filelist) > max_entries:
            self._zf.close()
            raise DatasetError(
                f"{self.path}: {len(self._zf.filelist):,} entries, over the {max_entries:,} entry limit"
            )
        self._password = password.encode() if isinstance(password, str) else password
        self._stream: _ZipCryptoStream | None = None
        self._streamed = data is not None  # libarchive reads a path: a zip in memory goes through pyzipper
        try:
            if self._password:
                self._zf.setpassword(self._password)
            self._list(label, kinds, max_total_size, max_ratio)
        except BaseException:
            self._zf.close()
            raise

    def _list(
        self, label: str | None, kinds: tuple[str, ...] | None, max_total: int, max_ratio: float
    ) -> None:
        infos = [i for i in self._zf.infolist() if not i.filename.endswith("/")]  # is_dir() fails on ""
        self._infos: list[zipfile.ZipInfo] = []
        manifest_info = next((i for i in infos if i.filename == MANIFEST), None)
        encrypted = [i for i in infos if i.flag_bits & 1 and i.file_size]
        self._check_password(min(encrypted, key=lambda i: i.file_size, default=None))
        manifest = self._read_manifest(manifest_info) if manifest_info is not None else None
        total = 0
        overlapping = _overlapping(infos)
        for info in infos:
            name = info.filename
            where = f"{self.path}!{name}"
            if info is manifest_info:
                continue
            if unsafe_entry_name(name):
                self._skip(where, f"{where}: unsafe entry name (empty, absolute or '..'), skipped")
                continue
            if id(info) in overlapping:
                self._skip(where, f"{where}: shares its bytes with another entry (a zip bomb?), skipped")
                continue
            parts = PurePosixPath(name.replace("\\", "/")).parts
            if info.file_size > self.max_entry_size:
                self._skip(
                    where,
                    f"{where}: {human_size(info.file_size)} is over the "
                    f"{human_size(self.max_entry_size)} entry size limit",
                )
                continue
            if info.file_size > RATIO_MIN_SIZE and info.file_size > max_ratio * max(info.compress_size, 1):
                ratio = info.file_size / max(info.compress_size, 1)
                self._skip(where, f"{where}: compression ratio {ratio:.0f}:1 looks like a zip bomb, skipped")
                continue
            family = parts[0] if len(parts) > 1 else None
            sha = None
            if manifest is not None:
                row = manifest.get(parts[-1].lower())
                if row is None:
                    self._skip(where, f"{where}: not listed in {MANIFEST}")
                    continue
                if kinds is not None and row.get("kind", "") not in kinds:
                    continue
                family = row.get("family") or family
                sha = parts[-1].lower()
            elif kinds is not None:
                raise DatasetError(
                    f"{self.path}: no {MANIFEST} to select entry kinds from; keep all (--all-kinds)"
                )
            lab = label if label is not None else family
            if lab is None:
                self._skip(where, f"{where}: no family folder and no label given")
                continue
            total += info.file_size
            self._infos.append(info)
            self.records.append(
                Record(name, lab, family, where, info.file_size, sha, collection=self.collection)
            )
        if total > max_total:
            raise DatasetError(
                f"{self.path}: entries declare {human_size(total)} in total, over the "
                f"{human_size(max_total)} limit (a zip bomb?)"
            )
        self._require_records(str(self.path))

    def _check_password(self, info: zipfile.ZipInfo | None) -> None:
        """Open one encrypted entry: that checks the password (ZipCrypto check byte, AES verifier).

        Other read errors are left for ``open`` to report for that entry alone.
        """
        if info is None:
            return
        try:
            with self._zf.open(info) as f:
                f.read(1)
        except RuntimeError as e:
            if _is_password_error(e):
                what = "a password is needed" if "require" in str(e).lower() else "wrong zip password"
                raise DatasetError(
                    f"{self.path}: {what} (tried the default 'infected' or the one given; pass the right one)"
                ) from None
        except _READ_ERRORS:
            pass

    def _read_manifest(self, info: zipfile.ZipInfo) -> dict[str, dict[str, str]]:
        where = f"{self.path}!{info.filename}"
        if info.file_size > 256 * 1024**2:
            raise DatasetError(f"{where}: manifest too large")
        try:
            text = self._zf.read(info).decode("utf-8-sig")
        except (UnicodeDecodeError, *_READ_ERRORS) as e:
            raise DatasetError(f"{where}: cannot read, corrupt or wrong password ({e})") from None
        rows = list(csv.DictReader(io.StringIO(text)))
        if not rows or "sha256" not in rows[0]:
            raise DatasetError(f"{where}: expected columns sha256,family,kind,size,original_name")
        out: dict[str, dict[str, str]] = {}
        for row in rows:
            sha = (row.get("sha256") or "").strip().lower()
            if _HEX64.fullmatch(sha):
                out[sha] = {k: (v or "").strip() for k, v in row.items() if k}
        return out

    def open(self, i: int) -> Source:
        rec = self.records[i]
        # In chunks into one growing buffer: one read of it all briefly holds two copies, and a buffer
        # of the declared size would let a lying header make us allocate it.
        want = min(rec.size, self.max_entry_size) + 1
        with self._lock:
            fast = self._fast(i, want - 1)
        if fast is not None:
            return MemorySource.of(rec.source, fast)  # type: ignore[arg-type]  # checked: size and CRC-32
        data = bytearray()
        try:
            with self._lock, self._zf.open(self._infos[i]) as f:
                while len(data) < want and (chunk := f.read(min(CHUNK, want - len(data)))):
                    data += chunk
        except RuntimeError as e:
            if _is_password_error(e):
                raise DatasetError(f"{rec.source}: wrong zip password") from None
            raise DatasetError(f"{rec.source}: cannot read zip entry ({e})") from None
        except _READ_ERRORS as e:
            raise DatasetError(
                f"{rec.source}: cannot read zip entry, corrupt or wrong password ({e})"
            ) from None
        if len(data) > self.max_entry_size or len(data) != rec.size:
            raise DatasetError(f"{rec.source}: entry holds {len(data)} bytes, header says {rec.size}")
        return MemorySource.of(rec.source, data)  # type: ignore[arg-type]  # bytes-like, never resized

    def _fast(self, i: int, limit: int) -> bytearray | None:
        """Entry ``i`` through libarchive when it is ZipCrypto and libarchive is here (lock held)."""
        if not self._password or not _zipcrypto(self._infos[i]):
            return None
        if not self._streamed:
            self._streamed = True  # one try: a stream that fails to start is not started again
            libarchive = _libarchive()
            wanted = {k: info for k, info in enumerate(self._infos) if _zipcrypto(info)}
            if libarchive is not None:
                with contextlib.suppress(Exception):
                    self._stream = _ZipCryptoStream(libarchive, self.path, self._password, wanted)
        return None if self._stream is None else self._stream.get(i, limit)

    def close(self) -> None:
        with self._lock:
            if self._stream is not None:
                self._stream.close()
        self._zf.close()
