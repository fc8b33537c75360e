"""The inputs of benchmarks/scan.py: the benign files, the latency file and the sample zip's entries."""

from __future__ import annotations

import random
from pathlib import Path

SMALL_TARGET = 100_000  # the latency file: the corpus file closest to this size


def pick_benign(folder: Path, limit: int, seed: int) -> tuple[list[Path], int]:
    """A seeded subsample of the non-empty files in ``folder`` (all when ``limit`` is 0), and the total."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.stat().st_size > 0)
    if limit and limit < len(files):
        return sorted(random.Random(seed).sample(files, limit)), len(files)
    return files, len(files)


def warm(paths: list[Path]) -> int:
    """Read every file once so both tools find them in the page cache; the bytes read."""
    n = 0
    for p in paths:
        with open(p, "rb") as f:
            while chunk := f.read(1 << 20):
                n += len(chunk)
    return n


def small_file(folder: Path) -> Path:
    """The file in ``folder`` closest to SMALL_TARGET bytes (ties: by name)."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.stat().st_size > 0)
    return min(files, key=lambda p: (abs(p.stat().st_size - SMALL_TARGET), p.name))


def zip_entries(path: Path, limit: int, seed: int) -> tuple[list[tuple[str, bytes]], int]:
    """(name, bytes) of the sample zip's entries read into memory, seeded subsample; and the total count."""
    from malvision.data.zips import ZipDataset

    zd = ZipDataset(path, label="malware", password="infected")
    try:
        idx = list(range(len(zd.records)))
        if limit and limit < len(idx):
            idx = sorted(random.Random(seed).sample(idx, limit))
        return [(zd.records[i].source, bytes(zd.open(i).read())) for i in idx], len(zd.records)
    finally:
        zd.close()
