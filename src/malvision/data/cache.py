"""The dataset cache: converted samples in memory-mappable ``.npy`` arrays that training reads fast.

A cache is a folder::

    meta.json      format version, ConvertSpec, classes, counts, creation info, manifest_hash
    manifest.csv   id,sha256,size,label,group,source (one row per sample, in array order)
    x.npy          kind image: (N, S, S) uint8
    tokens.npy     kind bytes / opcodes: all sequences end to end (uint16; uint32 if the codebook
    offsets.npy    outgrows it) and int64 (N + 1,) offsets: sample i is tokens[offsets[i]:offsets[i+1]]

Byte tokens are byte + 1 (0 is padding), as ``convert.sequence.byte_sequence``. Opcode tokens are ids
under a corpus-wide codebook (every token kept, in ``meta.json``); a model vocabulary is built from
training rows only with ``CachedDataset.fit_vocab``, which remaps the rest to ``UNK``.

A cache is built in a temporary folder next to ``out_dir`` and renamed into place: an interrupted
build leaves no half cache.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import operator
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

from malvision.convert import convert_source, resize_plot
from malvision.convert.pefeatures import N_FEATURES
from malvision.convert.sequence import DEFAULT_MAX_LEN, PAD, UNK, Vocabulary
from malvision.convert.spec import ConvertSpec
from malvision.data.records import RawDataset, Record
from malvision.errors import ConversionError, DatasetError, MalvisionError
from malvision.io import DEFAULT_MAX_SIZE, Source

__all__ = [
    "CACHE_FORMAT",
    "CACHE_VERSION",
    "CachedDataset",
    "write_cache",
    "build_cache_from_paths",
    "is_cache",
]

CACHE_FORMAT = "malvision-cache"
CACHE_VERSION = 1
MANIFEST_FIELDS = ("id", "sha256", "size", "label", "group", "source")
_HEADER_BYTES = 128  # fixed .npy header, rewritten once the row count is known


def is_cache(path: Path | str) -> bool:
    """True for a folder holding a cache's ``meta.json``."""
    return Path(path, "meta.json").is_file()


# --------------------------------------------------------------------------------------------- writing


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


def _opcode_tokens(data: bytes, name: str, max_len: int) -> list[str]:
    """``parse_opcodes(data)[:max_len]`` without splitting more than the kept prefix of a long file."""
    from malvision.convert.opcodes import parse_opcodes

    if not data.isascii():  # the same refusal parse_opcodes makes for the whole file
        return parse_opcodes(data, name)
    cut = max_len * 24
    if len(data) > cut:
        end = data.rfind(b"\n", 0, cut) + 1
        if end and b"\x00" not in data[:4096]:
            with contextlib.suppress(ConversionError):  # too few tokens in the prefix: parse it all
                tokens = parse_opcodes(data[:end], name)
                if len(tokens) >= max_len:
                    return tokens[:max_len]
    return parse_opcodes(data, name)[:max_len]


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


def _convert(src: Source, rec: Record, spec: ConvertSpec, codebook: _Codebook | None) -> np.ndarray:
    if spec.kind == "image":
        if rec.plot_width:
            flat = np.frombuffer(src.read(), dtype=np.uint8)
            plot = flat[: flat.size - flat.size % rec.plot_width].reshape(-1, rec.plot_width)
            return resize_plot(plot, spec.image_size)
        return convert_source(src, spec)
    if spec.kind in ("bytes", "features"):
        return convert_source(src, spec)
    assert codebook is not None
    return codebook.encode(_opcode_tokens(src.read(), src.name, spec.max_len))


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
        w.writerow([r.id, r.sha256 or "", r.size, r.label, r.group or "", r.source])
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
) -> tuple[int, list[tuple[str, str]]]:
    """Convert every sample of ``raw`` under ``spec`` into a cache at ``out_dir``.

    Samples that fail (unreadable, too short, sha256 mismatch) are skipped and returned with the
    reader's own ``skipped`` list as (name, message). With ``dedupe`` an exact copy of an earlier
    sample (same sha256 of what ``open`` returns) is left out too, since copies split between train
    and test inflate scores; these are not failures but listed in meta.json ``duplicates`` as
    [id, label, kept id, kept label] (two labels flag a labelling conflict).
    ``progress`` is a rich ``Progress`` or None.

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
        return _write(raw, tmp, out, spec, progress, overwrite, dedupe)
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
) -> tuple[int, list[tuple[str, str]]]:
    failures: list[tuple[str, str]] = list(raw.skipped)
    codebook = _Codebook() if spec.kind == "opcodes" else None
    if spec.kind == "image":
        arrays = _NpyAppender(tmp / "x.npy", np.uint8, (spec.image_size, spec.image_size))
    elif spec.kind == "features":
        arrays = _NpyAppender(tmp / "x.npy", np.float32, (N_FEATURES,))
    else:
        arrays = _NpyAppender(tmp / "tokens.npy", np.uint16 if spec.kind == "bytes" else np.uint32)
    offsets = [0]
    rows: list[Record] = []
    seen_ids: set[str] = set()
    seen_sha: dict[str, tuple[str, str]] = {}
    duplicates: list[list[str]] = []
    ctx = progress if progress is not None else contextlib.nullcontext()
    # The image resize ends in a small matrix product: BLAS threads cost far more than they save
    # there (10x slower on a busy 2-core machine), so the build runs them single-threaded.
    with ctx, contextlib.closing(arrays), threadpool_limits(limits=1, user_api="blas"):
        task = progress.add_task(f"caching {raw.name}", total=len(raw)) if progress is not None else None
        for i, rec in enumerate(raw.records):
            try:
                if rec.id in seen_ids:
                    raise DatasetError(f"{rec.source}: duplicate id {rec.id!r}")
                src = raw.open(i)
                arr = _convert(src, rec, spec, codebook)
                digest = src.sha256
                if rec.sha256 is not None and rec.sha256 != digest:
                    raise DatasetError(f"{rec.source}: sha256 is {digest}, listed as {rec.sha256}")
            except MalvisionError as e:
                failures.append((rec.source, str(e)))
            else:
                if dedupe and digest in seen_sha:
                    duplicates.append([rec.id, rec.label, *seen_sha[digest]])
                else:
                    seen_ids.add(rec.id)
                    seen_sha[digest] = (rec.id, rec.label)
                    if spec.kind in ("image", "features"):
                        arrays.append(arr[None])
                    else:
                        arrays.append(arr)
                        offsets.append(offsets[-1] + len(arr))
                    rows.append(replace(rec, size=src.size, sha256=digest, plot_width=None))
            if task is not None:
                progress.advance(task)
        arrays.finish()
    if not rows:
        first = f"; first error: {failures[0][1]}" if failures else ""
        raise DatasetError(f"{raw.name}: no sample could be converted{first}")
    if codebook is not None:
        _narrow_tokens(tmp / "tokens.npy", len(codebook.tokens) + 2)
    if spec.kind not in ("image", "features"):
        np.save(tmp / "offsets.npy", np.asarray(offsets, dtype=np.int64))
    manifest = _manifest_bytes(rows)
    (tmp / "manifest.csv").write_bytes(manifest)
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.label] = counts.get(r.label, 0) + 1
    meta: dict[str, Any] = {
        "format": CACHE_FORMAT,
        "format_version": CACHE_VERSION,
        "spec": spec.to_dict(),
        "classes": sorted(counts),
        "counts": dict(sorted(counts.items())),
        "n": len(rows),
        "n_failed": len(failures),
        "duplicates": duplicates,
        "manifest_hash": hashlib.sha256(manifest).hexdigest(),
        "created": {
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
            "malvision": _version(),
            "python": platform.python_version(),
            "numpy": np.__version__,
            "source": raw.name,
            "source_format": raw.format,
        },
    }
    if codebook is not None:
        meta["codebook"] = codebook.tokens
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    _prepare_out(out, overwrite)
    _swap_in(tmp, out)
    return len(rows), failures


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


# --------------------------------------------------------------------------------------------- reading


class CachedDataset:
    """A cache opened read-only with memory maps: ``ds[i] -> (array, class id)``.

    Opcode caches need ``fit_vocab(train_indices)`` (or ``set_vocab`` with a trained model's
    vocabulary) before items are read, so ids never carry tokens seen only outside training.
    """

    format = "cache"

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.name = self.path.name
        self.skipped: list[tuple[str, str]] = []
        meta_path = self.path / "meta.json"
        if not meta_path.is_file():
            raise DatasetError(
                f"{self.path}: not a dataset cache (no meta.json); build one with malvision data build"
            )
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise DatasetError(f"{meta_path}: unreadable ({e}); rebuild the cache") from None
        if not isinstance(meta, dict) or meta.get("format") != CACHE_FORMAT:
            raise DatasetError(f"{meta_path}: not a malvision cache")
        if meta.get("format_version") != CACHE_VERSION:
            raise DatasetError(
                f"{self.path}: cache format {meta.get('format_version')} is not supported "
                f"(this malvision reads {CACHE_VERSION}); rebuild the cache"
            )
        self.meta: dict[str, Any] = meta
        try:
            self._base_spec = ConvertSpec.from_dict(meta["spec"])
            self.classes: list[str] = list(meta["classes"])
            self.manifest_hash: str = meta["manifest_hash"]
        except (KeyError, TypeError, ConversionError) as e:
            raise DatasetError(f"{meta_path}: bad metadata ({e}); rebuild the cache") from None
        self.spec = self._base_spec
        self.codebook: list[str] = list(meta.get("codebook", []))
        self.vocab: Vocabulary | None = None
        self._remap: np.ndarray | None = None
        self.records = self._read_manifest()
        self.ids = [r.id for r in self.records]
        self.groups: list[str | None] = [r.group for r in self.records]
        index = {c: k for k, c in enumerate(self.classes)}
        try:
            self.labels = np.asarray([index[r.label] for r in self.records], dtype=np.int64)
        except KeyError as e:
            raise DatasetError(f"{self.path}: manifest label {e} is not in meta.json classes") from None
        n = len(self.records)
        self._x: np.ndarray | None = None
        self._tokens: np.ndarray | None = None
        self._offsets: np.ndarray | None = None
        if self.spec.kind in ("image", "features"):
            self._x = self._load("x.npy")
            s = self.spec.image_size
            shape, dtype = (
                ((n, s, s), np.uint8) if self.spec.kind == "image" else ((n, N_FEATURES), np.float32)
            )
            if self._x.shape != shape or self._x.dtype != dtype:
                raise DatasetError(
                    f"{self.path}/x.npy: {self._x.shape} {self._x.dtype}, expected {shape} {np.dtype(dtype)}"
                )
        else:
            self._tokens = self._load("tokens.npy")
            self._offsets = np.asarray(self._load("offsets.npy"))
            off = self._offsets
            if (
                self._tokens.ndim != 1
                or off.shape != (n + 1,)
                or off[0] != 0
                or off[-1] != len(self._tokens)
                or np.any(np.diff(off) < 0)
            ):
                raise DatasetError(f"{self.path}: tokens.npy and offsets.npy do not match; rebuild the cache")

    def _read_manifest(self) -> list[Record]:
        p = self.path / "manifest.csv"
        try:
            data = p.read_bytes()
        except OSError as e:
            raise DatasetError(f"{p}: unreadable ({e.strerror or e}); rebuild the cache") from None
        if hashlib.sha256(data).hexdigest() != self.manifest_hash:
            raise DatasetError(f"{p}: does not match meta.json manifest_hash (edited?); rebuild the cache")
        rows = list(csv.reader(io.StringIO(data.decode("utf-8"))))
        if not rows or tuple(rows[0]) != MANIFEST_FIELDS:
            raise DatasetError(f"{p}: expected header {','.join(MANIFEST_FIELDS)}")
        try:
            return [Record(r[0], r[3], r[4] or None, r[5], int(r[2]), r[1] or None) for r in rows[1:]]
        except (IndexError, ValueError) as e:
            raise DatasetError(f"{p}: bad row ({e}); rebuild the cache") from None

    def _load(self, name: str) -> np.ndarray:
        try:
            return np.load(self.path / name, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as e:
            raise DatasetError(f"{self.path / name}: unreadable ({e}); rebuild the cache") from None

    def __len__(self) -> int:
        return len(self.records)

    @property
    def lengths(self) -> np.ndarray:
        """Sequence length of every sample (S*S for images, the vector length for features), for
        batching similar sizes together."""
        if self._offsets is not None:
            return np.diff(self._offsets)
        assert self._x is not None
        return np.full(len(self), int(np.prod(self._x.shape[1:])), dtype=np.int64)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        n = len(self)
        i = operator.index(i)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"sample {i} out of range for {n} samples")
        if self._x is not None:
            return np.array(self._x[i]), int(self.labels[i])
        assert self._tokens is not None and self._offsets is not None
        seq = self._tokens[self._offsets[i] : self._offsets[i + 1]]
        if self.spec.kind == "opcodes":
            if self._remap is None:
                raise DatasetError(
                    f"{self.path}: call fit_vocab(train_indices) or set_vocab() before reading"
                )
            return self._remap[seq], int(self.labels[i])
        return np.array(seq), int(self.labels[i])

    def fit_vocab(
        self, train_indices: Iterable[int], max_size: int | None = None, min_count: int = 1
    ) -> Vocabulary:
        """The model vocabulary from training rows only (most frequent first, ties by name); applied.

        Tokens not in it (seen only outside training, rarer than ``min_count`` or cut by ``max_size``)
        read as ``UNK``. ``spec`` then carries the vocabulary, for the checkpoint.
        """
        if self.spec.kind != "opcodes":
            raise DatasetError(f"{self.path}: fit_vocab is for opcode caches, this one is {self.spec.kind}")
        assert self._tokens is not None and self._offsets is not None
        idx = np.unique(np.asarray(list(train_indices), dtype=np.int64))
        if idx.size and (idx[0] < 0 or idx[-1] >= len(self)):
            raise DatasetError(f"{self.path}: training index out of range 0..{len(self) - 1}")
        counts = np.zeros(len(self.codebook) + 2, dtype=np.int64)
        # Consecutive rows are contiguous in tokens.npy: count each run in one pass.
        breaks = np.flatnonzero(np.diff(idx) != 1) + 1
        for run in np.split(idx, breaks) if idx.size else []:
            a, b = self._offsets[run[0]], self._offsets[run[-1] + 1]
            counts += np.bincount(self._tokens[a:b], minlength=counts.size)[: counts.size]
        min_count = max(1, min_count)
        kept = [(self.codebook[j - 2], int(c)) for j, c in enumerate(counts) if j >= 2 and c >= min_count]
        kept.sort(key=lambda tc: (-tc[1], tc[0]))
        vocab = Vocabulary([t for t, _ in kept][:max_size] if max_size else [t for t, _ in kept])
        self.set_vocab(vocab)
        return vocab

    def set_vocab(self, vocab: Vocabulary) -> None:
        """Read opcode tokens under ``vocab`` (e.g. a trained model's); unknown ones become ``UNK``."""
        if self.spec.kind != "opcodes":
            raise DatasetError(f"{self.path}: set_vocab is for opcode caches, this one is {self.spec.kind}")
        dtype = np.uint16 if len(vocab) < 65536 else np.int32
        remap = np.full(len(self.codebook) + 2, UNK, dtype=dtype)
        remap[PAD] = PAD
        for j, tok in enumerate(self.codebook):
            remap[j + 2] = vocab.index.get(tok, UNK)
        self._remap = remap
        self.vocab = vocab
        self.spec = replace(self._base_spec, vocab=vocab.tokens)

    def close(self) -> None:
        """Nothing to release (memory maps go with the object); here so every dataset has it."""

    def __enter__(self) -> CachedDataset:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"CachedDataset({str(self.path)!r}, {len(self)} samples, kind={self.spec.kind})"
