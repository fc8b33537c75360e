"""Recompute every model input of a features cache with the current code and compare it with the stored one.

    .venv/bin/python scripts/check_vectors.py ~/.cache/malvision/caches/pe-features-v10

For a change meant to make the vectors faster, not different: each sample is read again from the source
its manifest names (a file, or a ``zip!entry`` of the sample zip, read in memory) and goes through the
same ``prepare`` as ``malvision data build``, with the cache's spec. Prints how many of the cache's
vectors differ and the first few; exit status 0 when none does, 1 otherwise.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from ember_features import SampleReader  # scripts/ is on sys.path when a script runs
from rich.progress import track

from malvision.convert.prepare import prepare
from malvision.data.cache import CachedDataset
from malvision.errors import MalvisionError
from malvision.io import MemorySource


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cache", type=Path)
    ap.add_argument("--show", type=int, default=10, help="differing samples to list (default 10)")
    args = ap.parse_args()
    try:
        ds = CachedDataset(args.cache)
        x = np.load(args.cache / "x.npy", mmap_mode="r")
    except (MalvisionError, OSError, ValueError) as e:
        sys.exit(f"error: {e}")
    reader, differ = SampleReader(), []
    for i, rec in enumerate(track(ds.records, description="vectors", transient=True)):
        try:
            got = prepare(MemorySource.of(rec.source, reader.read(rec.source)), ds.spec).x
        except MalvisionError as e:  # a source moved or changed since the cache was built (names it)
            sys.exit(f"error: {e}")
        if got is None or not np.array_equal(np.asarray(got, dtype=x.dtype), x[i]):
            differ.append(rec.source)
    print(f"{len(differ)} of {len(ds.records)} vectors differ from {args.cache}")
    for source in differ[: args.show]:
        print(f"  {source}")
    sys.exit(1 if differ else 0)


if __name__ == "__main__":
    main()
