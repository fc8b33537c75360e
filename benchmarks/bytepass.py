"""A bundled model's input conversion, this code against another checkout of it, alternated (not in CI).

Why ``malvision._bytepass`` is C: every byte of a scanned file goes through a histogram (whole file and
per section), a search for printable runs and a count of marker strings; numpy did these with several
whole-array passes a chunk, holding the GIL. Each side runs in its own process, ``--runs`` times
alternated, over the same seeded subsample of the benign corpus (page cache warmed): ``prepare`` with the
default's spec on one thread, then on two reader threads (what ``malvision scan`` runs before it starts
processes). The digest of every vector shows both sides compute the same ones. ``--model pe-detector``
times the histograms input instead (its nibble counts and transitions in C since 2026-12-02).

    .venv/bin/python benchmarks/bytepass.py --against /tmp/old/src [--model default] [--runs 3] [--limit 400]

(``git worktree add /tmp/old COMMIT`` makes the checkout to compare with; ``--against`` is its ``src``.)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from _corpus import BENIGN_PE
from _machine import command_line, cpu_model, write_report  # benchmarks/ is on sys.path when a script runs
from _scan_inputs import pick_benign, warm

from malvision.io import human_size

ROOT = Path(__file__).resolve().parent.parent

# One side's measurement, in a fresh interpreter whose PYTHONPATH picks the code.
CHILD = """
import hashlib, json, sys, time
from concurrent.futures import ThreadPoolExecutor
import malvision
from malvision.bundled import resolve_checkpoint
from malvision.checkpoint import load_checkpoint
from malvision.convert.prepare import prepare
from malvision.convert.spec import ConvertSpec
from malvision.io import open_source

model, paths = sys.argv[1], sys.argv[2:]
spec = ConvertSpec.from_dict(load_checkpoint(resolve_checkpoint(model)).spec)
one = lambda p: prepare(open_source(p), spec).x
t = time.perf_counter()
vectors = [one(p) for p in paths]
serial = time.perf_counter() - t
with ThreadPoolExecutor(2) as pool:
    t = time.perf_counter()
    again = list(pool.map(one, paths))
    threads = time.perf_counter() - t
digest = hashlib.sha256(b"".join(v.tobytes() for v in vectors)).hexdigest()
assert digest == hashlib.sha256(b"".join(v.tobytes() for v in again)).hexdigest()
print(json.dumps({"code": malvision.__file__, "serial": serial, "threads": threads, "digest": digest}))
"""


def measure(paths: list[Path], pythonpath: str | None, model: str) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    done = subprocess.run(
        [sys.executable, "-c", CHILD, model, *map(str, paths)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def commit(folder: Path) -> str:
    """The git commit a checkout is at (with ``+`` when its files differ from it), or ``unknown``."""
    run = lambda *a: subprocess.run(["git", "-C", str(folder), *a], capture_output=True, text=True)  # noqa: E731
    head = run("rev-parse", "--short", "HEAD")
    if head.returncode:
        return "unknown"
    return head.stdout.strip() + ("+" if run("status", "--porcelain", "--untracked-files=no").stdout else "")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--against", type=Path, required=True, help="the other checkout's src folder")
    ap.add_argument("--model", default="default", help="the bundled model whose input is made")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--limit", type=int, default=400)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--files", type=Path, default=BENIGN_PE)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "bytepass.md")
    args = ap.parse_args()
    paths, n_total = pick_benign(args.files, args.limit, args.seed)
    size = warm(paths)
    load0 = os.getloadavg()
    sides: dict[str, list[dict]] = {"this code": [], "against": []}
    for _ in range(args.runs):
        sides["this code"].append(measure(paths, None, args.model))
        sides["against"].append(measure(paths, str(args.against), args.model))
    load1 = os.getloadavg()
    lines = [
        f"# `{args.model}`'s input, made by this code and by another checkout",
        "",
        f"- command: `{command_line()}` (from the repository root)",
        f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"- CPU: {cpu_model()}, {os.cpu_count()} cores; load average at the start {load0[0]:.2f}, "
        f"at the end {load1[0]:.2f} (a shared machine)",
        f"- inputs: {len(paths)} of the {n_total} files in `{str(args.files).replace(str(Path.home()), '~')}` "
        f"(seeded subsample, seed {args.seed}), {human_size(size)}; page cache warmed",
        f"- `this code`: {sides['this code'][0]['code']} at {commit(ROOT)}; `against`: "
        f"PYTHONPATH={args.against} at {commit(args.against)}",
        f"- each side in its own process, {args.runs} run(s) alternated; median and fastest of the runs; "
        f"`prepare` with the spec of the bundled `{args.model}` (each side's own), one thread, then two reader threads",
        "",
        "| code | readers | median s | fastest s | MB/s (fastest) | vectors (sha256 of all) |",
        "|---|---|---|---|---|---|",
    ]
    for name, runs in sides.items():
        for key, readers in (("serial", "1 thread"), ("threads", "2 threads")):
            times = [r[key] for r in runs]
            lines.append(
                f"| {name} | {readers} | {statistics.median(times):.2f} | {min(times):.2f} | "
                f"{size / min(times) / 1e6:.0f} | `{runs[0]['digest'][:16]}…` |"
            )
    same = len({r["digest"] for runs in sides.values() for r in runs}) == 1
    ratio = statistics.median(r["serial"] for r in sides["against"]) / statistics.median(
        r["serial"] for r in sides["this code"]
    )
    lines += [
        "",
        f"Vectors {'identical' if same else '**differ**'} on both sides. One thread: this code takes "
        f"1/{ratio:.2f} of the time of `against` (medians).",
        "",
    ]
    write_report("\n".join(lines), args.out)


if __name__ == "__main__":
    main()
