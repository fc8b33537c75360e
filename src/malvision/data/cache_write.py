"""Writing the dataset cache (the format is in ``data.cache``): every sample through the one
``convert.prepare``, appended to ``.npy`` files without holding them in memory.

A cache is built in a temporary folder next to ``out_dir`` and renamed into place: an interrupted
build leaves no half cache.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import platform
import shutil
import struct
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from threadpoolctl import threadpool_limits

from malvision.convert.prepare import prepare
from malvision.convert.sequence import DEFAULT_MAX_LEN
from malvision.convert.spec import ConvertSpec
from malvision.data.cache import (
    CACHE_FORMAT,
    CACHE_VERSION,
    MANIFEST_FIELDS,
    CachedDataset,
    data_hash,
    is_cache,
)
from malvision.data.records import RawDataset, Record
from malvision.errors import ConversionError, DatasetError, MalvisionError, NotASampleError
from malvision.io import DEFAULT_MAX_SIZE

__all__ = ["write_cache", "build_cache_from_paths"]

_HEADER_BYTES = 128  # fixed .npy header, rewritten once the row count is known


def _npy_header(dtype: np.dtype, shape: tuple[int, ...]) -> bytes:
    """A version 1.0 .npy header padded to ``_HEADER_BYTES`` (a multiple of 64, as numpy aligns)."""
    d = f"{{'descr': {dtype.str!r}, 'fortran_order': False, 'shape': {shape!r}, }}"
    body = d.ljust(_HEADER_BYTES - 11) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(body)) + body.encode("latin1")


class _NpyAppender:
    """Append rows of one dtype and trailing shape to a .npy file without holding them in memory."""

    def __init__(self, path: Path, dtype: np.dtype | type, tail: tuple[int, ...] = ()) -> None:
        self.path, self.dtype, self.tail, self.rows = path, np.dtype(dtype), tail, 0
        self._f: BinaryIO = open(path, "wb")  # noqa: SIM115 - closed in finish()
        self._f.write(b"\0" * _HEADER_BYTES)

    def append(self, arr: np.ndarray) -> None:
        arr = np.ascontiguousarray(arr, dtype=self.dtype)
        if arr.shape[1:] != self.tail:
            raise ConversionError(f"row shape {arr.shape[1:]} does not match {self.tail}")
        self._f.write(arr.tobytes())
        self.rows += arr.shape[0]

    def finish(self) -> None:
        self._f.seek(0)
        self._f.write(_npy_header(self.dtype, (self.rows, *self.tail)))
        self._f.close()

    def close(self) -> None:
        self._f.close()


class _Codebook:
    """Token -> id: 2, 3, ... in order of first appearance (0 is padding, 1 unknown)."""

    def __init__(self) -> None:
        self.index: dict[str, int] = {}
        self.tokens: list[str] = []

    def encode(self, tokens: list[str]) -> np.ndarray:
        index = self.index
        ids = []
        for t in tokens:
            j = index.get(t)
            if j is None:
                j = index[t] = len(self.tokens) + 2
                self.tokens.append(t)
            ids.append(j)
        return np.asarray(ids, dtype=np.uint32)


def _prepare_out(out: Path, overwrite: bool) -> None:
    if out.exists() and not (out.is_dir() and not any(out.iterdir())):
        if not overwrite:
            raise DatasetError(f"{out}: already exists; choose another --out or pass --overwrite")
        if not is_cache(out):
            raise DatasetError(f"{out}: exists and is not a dataset cache; will not replace it")


def _swap_in(tmp: Path, out: Path) -> None:
    """Rename the finished ``tmp`` folder to ``out``, replacing an old cache there."""
    if out.exists() and (out.is_file() or any(out.iterdir())):
        trash = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        os.replace(out, trash / "old")
        os.replace(tmp, out)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)


def _manifest_bytes(rows: Iterable[Record]) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(MANIFEST_FIELDS)
    for r in rows:
        w.writerow(
            [
                r.id,
                r.sha256 or "",
                r.size,
                r.label,
                r.group or "",
                r.source,
                r.collection or "",
                r.pe_type or "",
                r.unknown or "",
            ]
        )
    return buf.getvalue().encode("utf-8")


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("malvision")
    except Exception:  # noqa: BLE001 - an uninstalled tree still builds caches
        return "unknown"


def write_cache(
    raw: RawDataset,
    out_dir: Path | str,
    spec: ConvertSpec,
    progress: Any | None = None,
    overwrite: bool = False,
    dedupe: bool = True,
    command: list[str] | None = None,
) -> tuple[int, list[tuple[str, str]]]:
    """Convert every sample of ``raw`` under ``spec`` into a cache at ``out_dir``.

    Samples that fail (unreadable, too short, sha256 mismatch) are skipped and returned with the
    reader's own ``skipped`` list as (name, message). With ``dedupe`` an exact copy of an earlier
    sample (same sha256 of what ``open`` returns) is left out too, since copies split between train
    and test inflate scores; these are not failures but listed in meta.json ``duplicates`` as
    [id, label, kept id, kept label] (two labels flag a labelling conflict).
    ``progress`` is a rich ``Progress`` or None. ``command``: the ``data build`` arguments that made
    it, kept in meta.json so a model card can say how to build its data again.

    Returns:
        (samples written, failures).
    """
    if spec.kind == "opcodes" and spec.vocab:
        raise DatasetError("an opcode cache keeps every token; build it with a spec without a vocabulary")
    out = Path(out_dir)
    _prepare_out(out, overwrite)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
        umask = os.umask(0o022)
        os.umask(umask)
        tmp.chmod(0o777 & ~umask)  # mkdtemp makes it 0o700; a cache is an ordinary folder
    except OSError as e:
        raise DatasetError(f"{out}: cannot create the cache here ({e.strerror or e})") from None
    try:
        return _write(raw, tmp, out, spec, progress, overwrite, dedupe, command)
    except OSError as e:  # disk full, folder made read-only mid-build
        raise DatasetError(f"{out}: cannot write the cache ({e.strerror or e})") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone after the rename; else the half-built cache


def _write(
    raw: RawDataset,
    tmp: Path,
    out: Path,
    spec: ConvertSpec,
    progress: Any | None,
    overwrite: bool,
    dedupe: bool,
    command: list[str] | None = None,
) -> tuple[int, list[tuple[str, str]]]:
    failures: list[tuple[str, str]] = list(raw.skipped)
    not_samples: list[tuple[str, str]] = []
    codebook = _Codebook() if spec.kind == "opcodes" else None
    rows = _Rows(tmp, spec, dedupe)
    ctx = progress if progress is not None else contextlib.nullcontext()
    # The image resize ends in a small matrix product: BLAS threads cost far more than they save
    # there (10x slower on a busy 2-core machine), so the build runs them single-threaded.
    with ctx, contextlib.closing(rows.arrays), threadpool_limits(limits=1, user_api="blas"):
        task = progress.add_task(f"caching {raw.name}", total=len(raw)) if progress is not None else None
        for i, rec in enumerate(raw.records):
            try:
                if rec.id in rows.ids:
                    raise DatasetError(f"{rec.source}: duplicate id {rec.id!r}")
                p = prepare(raw.open(i), spec, vocab=codebook)
                if p.x is None:
                    raise p.error()
                if rec.sha256 is not None and rec.sha256 != p.sha256:
                    raise DatasetError(f"{rec.source}: sha256 is {p.sha256}, listed as {rec.sha256}")
            except NotASampleError as e:  # e.g. BIG2015's <family>/<family>.txt lists of sample ids
                not_samples.append((rec.source, str(e)))
            except MalvisionError as e:
                failures.append((rec.source, str(e)))
            else:
                pe_type = p.headers.file_type if p.headers else None
                rows.add(replace(rec, pe_type=pe_type, unknown=p.triage(spec)), p.x, p.sha256, p.size)
            if task is not None:
                progress.advance(task)
        rows.arrays.finish()
    if not rows.records:
        first = f"; first error: {failures[0][1]}" if failures else ""
        raise DatasetError(f"{raw.name}: no sample could be converted{first}")
    if codebook is not None:
        _narrow_tokens(tmp / "tokens.npy", len(codebook.tokens) + 2)
    if spec.fixed_shape is None:
        np.save(tmp / "offsets.npy", np.asarray(rows.offsets, dtype=np.int64))  # in the folder renamed whole
    manifest = _manifest_bytes(rows.records)
    (tmp / "manifest.csv").write_bytes(manifest)
    meta = _meta(raw, spec, rows, len(failures), manifest)
    meta["not_samples"] = not_samples
    if command is not None:
        meta["command"] = list(command)
    if codebook is not None:
        meta["codebook"] = codebook.tokens
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    _prepare_out(out, overwrite)
    _swap_in(tmp, out)
    return len(rows.records), failures


class _Rows:
    """The samples of a cache being written: their arrays, sequence offsets, manifest rows, and the
    exact copies left out (same sha256 as an earlier sample)."""

    def __init__(self, tmp: Path, spec: ConvertSpec, dedupe: bool) -> None:
        self.spec, self.dedupe = spec, dedupe
        if spec.fixed_shape is not None:
            self.arrays = _NpyAppender(tmp / "x.npy", spec.dtype, spec.fixed_shape)
        else:
            self.arrays = _NpyAppender(tmp / "tokens.npy", spec.dtype)
        self.offsets = [0]
        self.records: list[Record] = []
        self.ids: set[str] = set()
        self.by_sha: dict[str, tuple[str, str]] = {}
        self.duplicates: list[list[str]] = []

    def add(self, rec: Record, x: np.ndarray, sha256: str, size: int) -> None:
        if self.dedupe and sha256 in self.by_sha:
            self.duplicates.append([rec.id, rec.label, *self.by_sha[sha256]])
            return
        self.ids.add(rec.id)
        self.by_sha[sha256] = (rec.id, rec.label)
        if self.spec.fixed_shape is not None:
            self.arrays.append(x[None])
        else:
            self.arrays.append(x)
            self.offsets.append(self.offsets[-1] + len(x))
        self.records.append(replace(rec, size=size, sha256=sha256, plot_width=None))


def _meta(raw: RawDataset, spec: ConvertSpec, rows: _Rows, n_failed: int, manifest: bytes) -> dict[str, Any]:
    counts: dict[str, int] = {}
    for r in rows.records:
        counts[r.label] = counts.get(r.label, 0) + 1
    return {
        "format": CACHE_FORMAT,
        "format_version": CACHE_VERSION,
        "spec": spec.to_dict(),
        "classes": sorted(counts),
        "counts": dict(sorted(counts.items())),
        "n": len(rows.records),
        "n_failed": n_failed,
        "duplicates": rows.duplicates,
        "manifest_hash": hashlib.sha256(manifest).hexdigest(),
        "data_hash": data_hash(rows.records),
        "created": {
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
            "malvision": _version(),
            "python": platform.python_version(),
            "numpy": np.__version__,
            "source": raw.name,
            "source_format": raw.format,
        },
    }


def _narrow_tokens(path: Path, n_ids: int) -> None:
    """Store opcode ids as uint16 when the codebook fits (it nearly always does)."""
    if n_ids > 65536:
        return
    wide = np.load(path, mmap_mode="r")
    narrow_path = path.with_suffix(".u16")
    out = _NpyAppender(narrow_path, np.uint16)
    step = 1 << 24
    for s in range(0, len(wide), step):
        out.append(wide[s : s + step])
    out.finish()
    del wide
    os.replace(narrow_path, path)


def build_cache_from_paths(
    inputs: Sequence[Path | str],
    out_dir: Path | str,
    kind: str = "image",
    image_size: int = 64,
    max_len: int = DEFAULT_MAX_LEN,
    label: str | None = None,
    max_size: int = DEFAULT_MAX_SIZE,
    progress: Any | None = None,
    overwrite: bool = False,
) -> tuple[int, list[tuple[str, str]]]:
    """A cache from files and folders (``malvision convert INPUT... --format dataset``).

    With ``label`` every file below the inputs is one sample with that label (group: the first folder
    below an input folder). Without it each input must be a labelled dataset ``open_dataset`` reads
    (a label-folder tree, a sample zip, a labels CSV, BIG2015, ...); several are read as one.
    """
    from malvision.data.detect import open_dataset
    from malvision.data.readers import FileListDataset
    from malvision.data.records import ConcatDataset

    spec = ConvertSpec(kind=kind, image_size=image_size, max_len=max_len)  # type: ignore[arg-type]
    if not inputs:
        raise DatasetError("no inputs given")
    if label is not None:
        raw: RawDataset = FileListDataset(inputs, label, max_size=max_size)
    else:
        parts = []
        for p in inputs:
            ds = open_dataset(p, max_size=max_size)
            if isinstance(ds, CachedDataset):
                raise DatasetError(f"{p}: already a dataset cache; give the original data")
            parts.append(ds)
        raw = parts[0] if len(parts) == 1 else ConcatDataset(parts)
    try:
        return write_cache(raw, out_dir, spec, progress=progress, overwrite=overwrite)
    finally:
        raw.close()
