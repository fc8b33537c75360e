"""The mix of a features cache by file type, benign next to malware, as Markdown.

    .venv/bin/python scripts/pe_mix.py ~/.cache/malvision/caches/pe-features-v4 [OUT.md]

Rows: the PE type of each file (32/64-bit, GUI, console, DLL, from the headers), then two traits read
from its features: .NET (a CLR data directory) and executables whose overlay is most of the file
(installers and self-extracting archives carry their payload there).
"""

from __future__ import annotations

import datetime as dt
import sys
from collections import Counter
from pathlib import Path

import numpy as np

from malvision.convert.pefeatures import FEATURE_NAMES
from malvision.data.cache import CachedDataset
from malvision.errors import MalvisionError

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from _machine import command_line, write_report  # noqa: E402


def main(path: Path, out: Path | None) -> None:
    try:
        ds = CachedDataset(path)
    except MalvisionError as e:
        sys.exit(f"error: {e}")
    if ds.spec.kind != "features":
        sys.exit(f"error: {path} holds {ds.spec.kind} inputs; the traits are read from a features cache")
    x = np.stack([ds[i][0] for i in range(len(ds))])
    mal = ds.labels == ds.classes.index("malware")
    types = np.array([r.pe_type or "not a PE" for r in ds.records], dtype=object)
    clr = x[:, FEATURE_NAMES.index("dir_clr")] > 0
    exe = np.array(["DLL" not in t for t in types])
    overlay = exe & (x[:, FEATURE_NAMES.index("overlay_share")] > 0.5)
    n_b, n_m = int((~mal).sum()), int(mal.sum())
    cell = lambda k, n: f"{k:,} ({k / n:.1%})"  # noqa: E731
    lines = [f"# File types in `{path.name}`: {n_b:,} benign, {n_m:,} malware\n"]
    made = f"{dt.date.today():%Y-%m-%d}, by `{command_line()}`"
    lines.append(f"Made on {made}.\n\n| type | benign | malware |\n|---|---|---|")
    b, m = Counter(types[~mal]), Counter(types[mal])
    for t in sorted(set(b) | set(m)):
        lines.append(f"| {t} | {cell(b[t], n_b)} | {cell(m[t], n_m)} |")
    for name, f in ((".NET (CLR header)", clr), ("executable, overlay > half the file", overlay)):
        lines.append(f"| {name} | {cell(int(f[~mal].sum()), n_b)} | {cell(int(f[mal].sum()), n_m)} |")
    text = "\n".join(lines) + "\n"
    if out is not None:
        write_report(text, out)
    else:
        print(text)


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit("usage: pe_mix.py FEATURES_CACHE [OUT.md]")
    main(Path(sys.argv[1]).expanduser(), Path(sys.argv[2]) if len(sys.argv) == 3 else None)
