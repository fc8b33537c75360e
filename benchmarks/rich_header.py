"""Does the Rich header add to the default's recipe? An experiment on a features cache, not a product path.

The Rich header (between the DOS stub and the PE header) lists the compiler, assembler and linker builds
that made an MSVC-linked file. The product leaves it out (``convert.pefeatures``); this script measures
what it would add: it appends 40 columns read from each file's first 8 KiB (present, checksum valid,
entry count, total count, lowest and highest product id and build, and 32 buckets of log counts by
product id) to a copy of a features cache under ``--work``, and trains the default's recipe on the copy,
source-disjoint, for each seed, with the feature list widened for that process only.

    .venv/bin/python benchmarks/rich_header.py ~/.cache/malvision/caches/pe-features-v15 \\
        --work ~/.cache/malvision/rich-header --seeds 0 1 2

Each run's card is then in WORK/run-seedS (``malvision info``); the cache's own runs are the baseline.
Reads sample bytes only (files and the shared zip's entries, in memory); writes nothing but the cache copy
and the runs.
"""

from __future__ import annotations

import argparse
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
from _corpus import SampleReader

from malvision.data.cache import CachedDataset

N_BUCKETS = 32
NAMES = (
    "rich_present", "rich_valid", "rich_log_entries", "rich_log_total", "rich_prod_min", "rich_prod_max",
    "rich_build_min", "rich_build_max",
) + tuple(f"rich_prod_bucket_{k:02d}" for k in range(N_BUCKETS))  # fmt: skip
RECIPE = ["--model", "lgbm", "--threads", "1", "--protocols", "source", "--no-class-weighting",
          "--set", "extra_trees=true"]  # fmt: skip


def _rol(v: int, n: int) -> int:
    n %= 32
    return ((v << n) | (v >> (32 - n))) & 0xFFFFFFFF


def rich_columns(head: bytes) -> np.ndarray:
    """The 40 columns of ``NAMES`` for a file whose first bytes are ``head`` (zeros without a Rich header)."""
    v = np.zeros(len(NAMES), np.float32)
    if len(head) < 0x40 or head[:2] != b"MZ":
        return v
    (lfanew,) = struct.unpack_from("<I", head, 0x3C)
    end = head.find(b"Rich", 0x80, min(lfanew, len(head)))
    if end < 0 or end + 8 > len(head):
        return v
    (key,) = struct.unpack_from("<I", head, end + 4)
    start = head.rfind(struct.pack("<I", 0x536E6144 ^ key), 0x40, end)  # "DanS" masked with the key
    if start < 0:
        return v
    entries = []
    for at in range(start + 16, end - 7, 8):
        comp, count = (w ^ key for w in struct.unpack_from("<II", head, at))
        entries.append((comp >> 16, comp & 0xFFFF, count))
    if not entries:
        return v
    check = start  # the linker's checksum: the DOS header (e_lfanew zeroed) and stub, then each entry
    for i in range(start):
        check = (check + _rol(0 if 0x3C <= i < 0x40 else head[i], i)) & 0xFFFFFFFF
    for prod, build, count in entries:
        check = (check + _rol(prod << 16 | build, count)) & 0xFFFFFFFF
    prods, builds = [e[0] for e in entries], [e[1] for e in entries if e[1]] or [0]
    v[:8] = (1, check == key, np.log1p(len(entries)), np.log1p(sum(e[2] for e in entries)), min(prods),
             max(prods), min(builds), max(builds))  # fmt: skip
    for prod, _, count in entries:
        v[8 + (prod * 2654435761 >> 7) % N_BUCKETS] += np.log1p(count)
    return v


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    ap.add_argument("cache", type=Path)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--train", action="store_true", help=argparse.SUPPRESS)  # one run, in this process
    args, rest = ap.parse_known_args()
    if args.train:  # the widened feature list, for this process's train-detector only
        import json

        import malvision.convert.pefeatures as pefeatures

        version = json.loads((args.work / "cache" / "meta.json").read_text())["spec"]["version"]
        width = pefeatures.FEATURE_WIDTHS[version]
        pefeatures.FEATURE_NAMES = pefeatures.FEATURE_NAMES[:width] + NAMES
        pefeatures.N_FEATURES = pefeatures.FEATURE_WIDTHS[version] = len(pefeatures.FEATURE_NAMES)
        from malvision.cli.app import app

        sys.argv = ["malvision", "train-detector", *rest]
        app()
        return
    copy = args.work / "cache"
    if not (copy / "x.npy").exists():
        x = np.load(args.cache / "x.npy")
        reader = SampleReader()
        records = CachedDataset(args.cache).records
        extra = np.stack([rich_columns(reader.read(r.source, 8192)) for r in records])
        print(f"Rich header in {int(extra[:, 0].sum()):,} of {len(extra):,} files", file=sys.stderr)
        tmp = args.work / "cache.partial"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for name in ("manifest.csv", "meta.json"):
            shutil.copy(args.cache / name, tmp / name)
        np.save(tmp / "x.npy", np.concatenate([x, extra.astype(x.dtype)], axis=1))
        tmp.rename(copy)
    for seed in args.seeds:
        out = args.work / f"run-seed{seed}"
        cmd = [sys.executable, __file__, str(args.cache), "--work", str(args.work), "--train",
               "--data", str(copy), "--out", str(out), "--seed", str(seed), *RECIPE]  # fmt: skip
        subprocess.run(cmd, check=True)


if __name__ == "__main__":
    main()
