"""Where the benchmarks find real files: the corpora the data commands build in malvision's cache."""

from __future__ import annotations

from malvision.data.build import cache_home

CACHE = cache_home()  # $MALVISION_CACHE or ~/.cache/malvision
BENIGN_PE = CACHE / "benign" / "pe"  # the benign corpus's files (scripts/get_benign.sh)
