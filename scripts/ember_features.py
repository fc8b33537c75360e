"""EMBER v3 feature vectors of every sample of a detection cache, for the EMBER + LightGBM baseline.

The extractor runs in its own environment (``bash scripts/ember_env.sh``): this script reads each
sample's bytes with malvision's readers (zip entries in memory, never written out) and hands them to a
worker process in that environment over a pipe; the vectors come back the same way. Output: an
``.npz`` with ``sha256`` (N,) and ``x`` (N, 2568) float32, in the cache's order, which
``malvision benchmark-detectors --ember NPZ`` joins to the cache by sha256.

    .venv/bin/python scripts/ember_features.py CACHE --out ~/.cache/malvision/caches/ember-v2.npz \\
        [--ember-python ~/.cache/malvision/ember-venv/bin/python]
    .venv/bin/python scripts/ember_features.py --files ~/.cache/malvision/benign-heldout/pe --out HELDOUT.npz

CACHE is any detection cache (``malvision data build``); its samples are read again from the sources
its manifest names (files, or ``zip!entry`` of the sample zip, password ``infected``). ``--files``
takes every file below a folder instead.
"""

from __future__ import annotations

import argparse
import hashlib
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
from rich.progress import Progress

from malvision.data.cache import CachedDataset
from malvision.data.zips import ZipDataset
from malvision.errors import MalvisionError
from malvision.io import atomic_writer, expand_inputs, open_source

DEFAULT_PYTHON = Path.home() / ".cache" / "malvision" / "ember-venv" / "bin" / "python"
WORKER = r"""
import os, struct, sys
out = os.fdopen(os.dup(1), "wb")  # the framed answers; whatever the extractor prints goes to stderr
os.dup2(2, 1)
import numpy as np, ember
ex = ember.PEFeatureExtractor()
inp = sys.stdin.buffer
while True:
    head = inp.read(8)
    if len(head) < 8:
        break
    data = inp.read(struct.unpack("<Q", head)[0])
    try:
        v = ex.feature_vector(data).astype(np.float32)
    except Exception:  # EMBER's own extractor failing on a damaged file: a zero row, as EMBER does
        v = np.zeros(ex.dim, np.float32)
    out.write(struct.pack("<Q", v.nbytes) + v.tobytes())
    out.flush()
"""


class _Reader:
    """A sample's bytes from where its manifest row says it came from: a file, or a zip entry."""

    def __init__(self) -> None:
        self.zips: dict[str, tuple[ZipDataset, dict[str, int]]] = {}

    def read(self, source: str) -> bytes:
        if "!" not in source:
            return open_source(source).read()
        zpath, name = source.split("!", 1)
        if zpath not in self.zips:
            z = ZipDataset(zpath)
            self.zips[zpath] = (z, {r.id: k for k, r in enumerate(z.records)})
        z, index = self.zips[zpath]
        return z.open(index[name]).read()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cache", type=Path, nargs="?")
    ap.add_argument("--files", type=Path, help="every file below this folder instead of a cache")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--ember-python", type=Path, default=DEFAULT_PYTHON)
    args = ap.parse_args()
    if not args.ember_python.is_file():
        sys.exit(
            f"error: {args.ember_python}: no EMBER environment; make it with `bash scripts/ember_env.sh`"
        )
    if (args.cache is None) == (args.files is None):
        sys.exit("error: give a cache or --files DIR")
    try:
        if args.files is not None:
            sources = [(str(p), None) for p, _ in expand_inputs([args.files])]
        else:
            sources = [(r.source, r.sha256) for r in CachedDataset(args.cache).records]
    except MalvisionError as e:
        sys.exit(f"error: {e}")
    worker = subprocess.Popen(
        [str(args.ember_python), "-c", WORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert worker.stdin is not None and worker.stdout is not None
    shas, rows = [], []
    reader = _Reader()
    with Progress() as bar:
        task = bar.add_task("EMBER features", total=len(sources))
        for source, sha in sources:
            data = reader.read(source)
            worker.stdin.write(struct.pack("<Q", len(data)) + data)
            worker.stdin.flush()
            n = struct.unpack("<Q", worker.stdout.read(8))[0]
            rows.append(np.frombuffer(worker.stdout.read(n), np.float32))
            shas.append(sha or hashlib.sha256(data).hexdigest())
            bar.advance(task)
    worker.stdin.close()
    worker.wait()
    with atomic_writer(args.out) as f:
        np.savez(f, sha256=np.asarray(shas), x=np.stack(rows))
    print(f"wrote {len(rows)} EMBER vectors ({rows[0].size} features) to {args.out}")


if __name__ == "__main__":
    main()
