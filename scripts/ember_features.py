"""EMBER v3 feature vectors of every sample of a detection cache, for the EMBER + LightGBM baseline.

The extractor runs in its own environment (``bash scripts/ember_env.sh``): this script reads each
sample's bytes with malvision's readers (zip entries in memory, never written out) and hands them to a
worker process in that environment over a pipe; the vectors come back the same way. Output: an
``.npz`` with ``sha256`` (N,) and ``x`` (N, 2568) float32, in the cache's order, which
``malvision benchmark-detectors --ember NPZ`` joins to the cache by sha256.

    .venv/bin/python scripts/ember_features.py CACHE --out ~/.cache/malvision/caches/ember-v2.npz \\
        [--workers 2] [--ember-python ~/.cache/malvision/ember-venv/bin/python]
    .venv/bin/python scripts/ember_features.py --files ~/.cache/malvision/benign-heldout/pe --out HELDOUT.npz

CACHE is any detection cache (``malvision data build``); its samples are read again from the sources
its manifest names (files, or ``zip!entry`` of the sample zip, password ``infected``). ``--files``
takes every file below a folder instead.

EMBER's extractor is slow (about 0.6 MB/s a core, most of it its string regexes): ``--workers`` runs that
many extractor processes, and every few hundred files the vectors so far go to ``OUT.partial.npz``, which
a rerun with the same arguments resumes from. Its string features run one pass of each regex over all
of a file's strings instead of one call per string and regex: the same vectors (check on any folder:
run once with ``MALVISION_EMBER_ORIGINAL=1`` set and once without, and compare the two ``x`` arrays),
faster where files hold many strings.
"""

from __future__ import annotations

import argparse
import hashlib
import queue
import struct
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import numpy as np
from rich.progress import Progress

from malvision.data.cache import CachedDataset
from malvision.errors import MalvisionError
from malvision.io import atomic_writer, expand_inputs

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from _corpus import SampleReader  # noqa: E402

DEFAULT_PYTHON = Path.home() / ".cache" / "malvision" / "ember-venv" / "bin" / "python"
WORKER = r"""
import bisect, os, struct, sys
out = os.fdopen(os.dup(1), "wb")  # the framed answers; whatever the extractor prints goes to stderr
os.dup2(2, 1)
import numpy as np, ember
ex = ember.PEFeatureExtractor()
if not os.environ.get("MALVISION_EMBER_ORIGINAL"):
    strings = next(f for f in ex.features if type(f).__name__ == "StringExtractor")
    regexes, plain = strings._regexes, strings.raw_features

    def raw_features(bytez, pe):
        # EMBER's own string features with its per-string loop (77 regexes x every string) replaced by
        # one pass of each regex over the strings joined by newlines, which no string holds and no
        # pattern matches: the same counts of strings with a match, several times faster on files with many strings.
        strings._regexes = {}
        try:
            raw = plain(bytez, pe)
        finally:
            strings._regexes = regexes
        found = [s.decode() for s in strings._allstrings.findall(bytez)]
        starts, at = [], 0
        for s in found:
            starts.append(at)
            at += len(s) + 1
        text, counts = "\n".join(found), {}
        for k, r in regexes.items():
            n = len({bisect.bisect_right(starts, m.start()) - 1 for m in r.finditer(text)})
            if n:
                counts[k] = n
        raw["string_counts"] = dict(sorted(counts.items()))
        return raw

    strings.raw_features = raw_features
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


class _Workers:
    """Extractor processes in the EMBER environment, each lent to one thread at a time."""

    def __init__(self, python: Path, n: int) -> None:
        self.procs = [
            subprocess.Popen([str(python), "-c", WORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            for _ in range(n)
        ]
        self.free: queue.Queue[subprocess.Popen] = queue.Queue()
        for p in self.procs:
            self.free.put(p)

    def vector(self, data: bytes) -> np.ndarray:
        proc = self.free.get()
        try:
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write(struct.pack("<Q", len(data)) + data)
            proc.stdin.flush()
            n = struct.unpack("<Q", proc.stdout.read(8))[0]
            return np.frombuffer(proc.stdout.read(n), np.float32)
        finally:
            self.free.put(proc)

    def close(self) -> None:
        for p in self.procs:
            assert p.stdin is not None
            p.stdin.close()
            p.wait()


def _save(path: Path, done: dict[str, tuple[str, np.ndarray]], order: list[str]) -> int:
    """The vectors of ``order``'s files that are done, in that order; returns how many."""
    keys = [k for k in order if k in done]
    with atomic_writer(path) as f:
        np.savez(
            f,
            source=np.asarray(keys),
            sha256=np.asarray([done[k][0] for k in keys]),
            x=np.stack([done[k][1] for k in keys]),
        )
    return len(keys)


def _resume(path: Path) -> dict[str, tuple[str, np.ndarray]]:
    if not path.is_file():
        return {}
    with np.load(path) as z:  # our own plain arrays: no pickles
        return {str(k): (str(s), v) for k, s, v in zip(z["source"], z["sha256"], z["x"], strict=True)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cache", type=Path, nargs="?")
    ap.add_argument("--files", type=Path, help="every file below this folder instead of a cache")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--ember-python", type=Path, default=DEFAULT_PYTHON)
    ap.add_argument("--workers", type=int, default=1, help="extractor processes (one a core)")
    ap.add_argument(
        "--max-mb", type=float, help="leave out files larger than this (a subset, named in the output)"
    )
    args = ap.parse_args()
    if not args.ember_python.is_file():
        sys.exit(
            f"error: {args.ember_python}: no EMBER environment; make it with `bash scripts/ember_env.sh`"
        )
    if (args.cache is None) == (args.files is None):
        sys.exit("error: give a cache or --files DIR")
    try:
        if args.files is not None:
            items = [
                (str(p), None, p.stat().st_size if p.is_file() else 0) for p, _ in expand_inputs([args.files])
            ]
        else:
            items = [(r.source, r.sha256, r.size) for r in CachedDataset(args.cache).records]
    except MalvisionError as e:
        sys.exit(f"error: {e}")
    cap = None if args.max_mb is None else args.max_mb * 2**20
    sources = [(source, sha, size) for source, sha, size in items if cap is None or size <= cap]
    if len(sources) < len(items):
        print(f"{len(items) - len(sources)} of {len(items)} files over {args.max_mb} MiB left out")
    partial = args.out.with_name(args.out.name.removesuffix(".npz") + ".partial.npz")
    done = _resume(partial)
    order = [source for source, _, _ in sources]
    # small files first: a partial file then covers the most samples
    todo = sorted((t for t in sources if t[0] not in done), key=lambda t: t[2])
    reader, workers = SampleReader(), _Workers(args.ember_python, args.workers)

    def one(source: str, sha: str | None) -> tuple[str, str, np.ndarray]:
        data = reader.read(source)
        return source, sha or hashlib.sha256(data).hexdigest(), workers.vector(data)

    with Progress() as bar, ThreadPoolExecutor(args.workers) as pool:
        task = bar.add_task("EMBER features", total=len(sources), completed=len(sources) - len(todo))
        jobs = [pool.submit(one, source, sha) for source, sha, _ in todo]
        for k, job in enumerate(as_completed(jobs), 1):
            source, sha, v = job.result()
            done[source] = (sha, v)
            bar.advance(task)
            if k % 200 == 0:
                _save(partial, done, order)
    workers.close()
    n = _save(args.out, done, order)
    partial.unlink(missing_ok=True)
    print(f"wrote {n} EMBER vectors ({next(iter(done.values()))[1].size} features) to {args.out}")


if __name__ == "__main__":
    main()
