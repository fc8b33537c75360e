"""The dataset cache: converted samples in memory-mappable ``.npy`` arrays that training reads fast.

A cache is a folder::

    meta.json      format version, ConvertSpec, classes, counts, creation info, manifest_hash,
                   data_hash (``data_hash``) and the ``data build`` command that made it
    manifest.csv   id,sha256,size,label,group,source,collection,pe_type,unknown (one row per sample, in
                   array order; ``unknown``: why a scan calls the file unknown, empty when it scores it;
                   format 1 had the first six columns, format 2 the first eight)
    x.npy          kind image: (N, S, S) uint8
    tokens.npy     kind bytes / opcodes: all sequences end to end (uint16; uint32 if the codebook
    offsets.npy    outgrows it) and int64 (N + 1,) offsets: sample i is tokens[offsets[i]:offsets[i+1]]

Byte tokens are byte + 1 (0 is padding), as ``convert.sequence.byte_sequence``. Opcode tokens are ids
under a corpus-wide codebook (every token kept, in ``meta.json``); a model vocabulary is built from
training rows only with ``CachedDataset.fit_vocab``, which remaps the rest to ``UNK``.

``data.cache_write`` builds caches; this module reads them.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import operator
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from malvision.convert.sequence import PAD, UNK, Vocabulary
from malvision.convert.spec import ConvertSpec
from malvision.data.records import Closing, Record
from malvision.errors import ConversionError, DatasetError

__all__ = ["CACHE_FORMAT", "CACHE_VERSION", "MANIFEST_FIELDS", "CachedDataset", "data_hash", "is_cache"]

CACHE_FORMAT = "malvision-cache"
CACHE_VERSION = 3
READS = (1, 2, 3)  # format 1: no collection and pe_type columns; format 2: no unknown column
MANIFEST_FIELDS = ("id", "sha256", "size", "label", "group", "source", "collection", "pe_type", "unknown")
N_FIELDS = {1: 6, 2: 8, 3: 9}  # the manifest's columns in each format


def data_hash(records: Iterable[Record]) -> str:
    """What a data set is, wherever it sits: sha256 of its sorted ``<sha256>,<label>`` lines (the id
    stands in for a file without a sha256). ``manifest_hash`` checks one cache's manifest, paths and
    order included; this one is the same for the same files and labels on any machine."""
    lines = sorted(f"{r.sha256 or r.id},{r.label}\n" for r in records)
    return hashlib.sha256("".join(lines).encode("utf-8")).hexdigest()


def is_cache(path: Path | str) -> bool:
    """True for a folder holding a cache's ``meta.json``."""
    return Path(path, "meta.json").is_file()


class CachedDataset(Closing):
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
        if meta.get("format_version") not in READS:
            raise DatasetError(
                f"{self.path}: cache format {meta.get('format_version')} is not supported "
                f"(this malvision reads {', '.join(map(str, READS))}); rebuild the cache"
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
        self.data_hash: str = data_hash(self.records)
        self.groups: list[str | None] = [r.group for r in self.records]
        self.collections: list[str | None] = [r.collection for r in self.records]
        index = {c: k for k, c in enumerate(self.classes)}
        try:
            self.labels = np.asarray([index[r.label] for r in self.records], dtype=np.int64)
        except KeyError as e:
            raise DatasetError(f"{self.path}: manifest label {e} is not in meta.json classes") from None
        n = len(self.records)
        self._x: np.ndarray | None = None
        self._tokens: np.ndarray | None = None
        self._offsets: np.ndarray | None = None
        if self.spec.fixed_shape is not None:
            self._x = self._load("x.npy")
            shape, dtype = (n, *self.spec.fixed_shape), self.spec.dtype
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
        fields = MANIFEST_FIELDS[: N_FIELDS[self.meta["format_version"]]]
        if not rows or tuple(rows[0]) != fields:
            raise DatasetError(f"{p}: expected header {','.join(fields)}")
        try:
            return [
                Record(
                    r[0],
                    r[3],
                    r[4] or None,
                    r[5],
                    int(r[2]),
                    r[1] or None,
                    None,
                    *(c or None for c in r[6:9]),
                )
                for r in rows[1:]
            ]
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
    def triaged(self) -> bool:
        """Whether the manifest records which files a scan calls unknown (format 3 on)."""
        return self.meta["format_version"] >= 3

    @property
    def conversion(self) -> dict[str, Any]:
        """How this cache converted its files (kind, size, cut, version, tiles; not a model's vocabulary):
        with ``manifest_hash``, what results made on it depend on. Caches of the same files share a manifest.
        The stored spec without its vocabulary, so an untiled cache reads as before tiles existed."""
        return {k: v for k, v in self._base_spec.to_dict().items() if k != "vocab"}

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

    def read_as(self, model_spec: dict[str, Any] | ConvertSpec) -> None:
        """Read rows as the model of ``model_spec`` (a checkpoint's spec) reads them: an opcode cache
        takes the model's vocabulary (``set_vocab``); other caches read as they are."""
        if self.spec.kind == "opcodes":
            vocab = model_spec["vocab"] if isinstance(model_spec, dict) else model_spec.vocab
            self.set_vocab(Vocabulary(vocab))

    def __repr__(self) -> str:
        return f"CachedDataset({str(self.path)!r}, {len(self)} samples, kind={self.spec.kind})"
