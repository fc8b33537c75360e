"""Where the benchmarks find real files: the corpora the data commands build in malvision's cache."""

from __future__ import annotations

import threading
from typing import Any

from malvision.data.build import cache_home

CACHE = cache_home()  # $MALVISION_CACHE or ~/.cache/malvision
BENIGN_PE = CACHE / "benign" / "pe"  # the benign corpus's files (scripts/get_benign.sh)


class SampleReader:
    """A sample's bytes from where its cache manifest row says it came from (``source``): a file, or an
    entry of a sample zip (``ZIP!ENTRY``, read in memory with the zip's password)."""

    def __init__(self) -> None:
        self.zips: dict[str, tuple[Any, dict[str, int]]] = {}
        self.lock = threading.Lock()  # one zip handle shared by the caller's threads

    def read(self, source: str, limit: int | None = None) -> bytes:
        """The sample's bytes, or its first ``limit`` (a file is read no further)."""
        from malvision.data.zips import ZipDataset
        from malvision.io import open_source

        if "!" not in source:
            return open_source(source).read(limit)
        zpath, name = source.split("!", 1)
        with self.lock:
            if zpath not in self.zips:
                z = ZipDataset(zpath)
                self.zips[zpath] = (z, {r.id: k for k, r in enumerate(z.records)})
            z, index = self.zips[zpath]
            return z.open(index[name]).read(limit)
