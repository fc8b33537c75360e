"""``open_dataset``: one door to every dataset format, chosen from what is on disk."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from malvision.data.big2015 import Big2015Dataset, OpcodeTreeDataset
from malvision.data.cache import CachedDataset, is_cache
from malvision.data.readers import (
    BinaryTreeDataset,
    CsvDataset,
    MalimgDataset,
    walk_files,
)
from malvision.data.records import RawDataset
from malvision.data.zips import MAX_ENTRY_SIZE, ZipDataset
from malvision.errors import DatasetError
from malvision.io import is_zip

__all__ = ["FORMATS", "detect_format", "open_dataset"]

FORMATS: tuple[str, ...] = ("zip", "cache", "big2015", "malimg", "opcodes", "csv", "binary")
LABELS_CSV = "labels.csv"
BIG2015_LABELS = "trainLabels.csv"


def detect_format(path: Path | str) -> str:
    """The format of ``path``, tried in order: zip file, cache (meta.json), BIG2015 (trainLabels.csv),
    tree of .png (Malimg), tree of .txt (opcodes), labels CSV, else a binary tree."""
    p = Path(path)
    if not p.exists():
        raise DatasetError(f"{p}: no such file or folder")
    if p.is_file():
        if p.suffix.lower() == ".zip" or is_zip(p):
            return "zip"
        if p.name.lower() == BIG2015_LABELS.lower():
            return "big2015"
        if p.suffix.lower() == ".csv":
            return "csv"
        raise DatasetError(
            f"{p}: not a dataset; give a folder (root/<label>/<files>), a sample .zip or a labels .csv"
        )
    if is_cache(p):
        return "cache"
    if (p / BIG2015_LABELS).is_file():
        return "big2015"
    suffixes: Counter[str] = Counter()
    for path, rel in walk_files(p):
        if len(rel.parts) >= 2:
            suffixes[path.suffix.lower()] += 1
    # Malimg: PNGs in family folders; a few other files (a README, Thumbs.db) are skipped by the reader
    # with a line each, not taken as a tree of raw files (whose bytes would be the PNGs' compressed data)
    if suffixes and suffixes[".png"] >= 0.9 * sum(suffixes.values()):
        return "malimg"
    if suffixes and set(suffixes) == {".txt"}:
        return "opcodes"
    if (p / LABELS_CSV).is_file():
        return "csv"
    if not suffixes:
        raise DatasetError(
            f"{p}: no samples found; expected one folder per label (root/<label>/<files>), "
            f"a {LABELS_CSV}, a {BIG2015_LABELS} with .bytes files, or a cache"
        )
    return "binary"


def open_dataset(path: Path | str, format: str | None = None, **opts: Any) -> RawDataset | CachedDataset:
    """Open a dataset of any supported format (detected unless ``format`` names one of ``FORMATS``).

    ``opts`` go to the reader: ``label``, ``password``, ``kinds`` (zip); ``unknown`` (BIG2015 ``??``);
    ``root``, ``label_column``, ``group_column`` (CSV); ``max_size`` and ``strict`` (all raw readers).
    Options a reader does not take are ignored.
    """
    p = Path(path)
    fmt = format or detect_format(p)
    if fmt not in FORMATS:
        raise DatasetError(f"unknown dataset format {fmt!r}; use one of {', '.join(FORMATS)}")
    if not p.exists():
        raise DatasetError(f"{p}: no such file or folder")
    opts = {k: v for k, v in opts.items() if v is not None}

    def take(*names: str) -> dict[str, Any]:
        return {k: opts[k] for k in names if k in opts}

    if fmt == "cache":
        return CachedDataset(p)
    if fmt == "zip":
        max_size = opts.get("max_size")
        extra = {"max_entry_size": min(max_size, MAX_ENTRY_SIZE)} if max_size else {}
        return ZipDataset(p, **take("label", "password", "kinds", "strict"), **extra)
    if fmt == "big2015":
        return Big2015Dataset(p, **take("unknown", "max_size", "strict"))
    if fmt == "malimg":
        return MalimgDataset(p, **take("strict"))
    if fmt == "opcodes":
        return OpcodeTreeDataset(p, **take("max_size", "strict"))
    if fmt == "csv":
        csv_path = p / LABELS_CSV if p.is_dir() else p
        return CsvDataset(
            csv_path, **take("root", "label", "label_column", "group_column", "max_size", "strict")
        )
    return BinaryTreeDataset(p, **take("max_size", "strict"))
