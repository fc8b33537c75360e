"""Conversion speed and memory, run on demand (not in CI).

Measures (a) byte plot -> fixed image (``model_input``, kind image), (b) PNG writing (what
``malvision convert`` does: stream rows, zlib, fsync, rename), (c) byte sequences, (e) the PE feature
vector and the byte histogram under it (against ``np.bincount`` on single bytes), all in MB/s on a
large real file (the biggest benign PE in ~/.cache/malvision/benign/pe, else a generated random
file), and (d) peak RSS of a fresh child process converting a >= 2 GiB sparse file to a 224x224 image
and to a PNG (VmHWM). Prints a Markdown table and writes it to benchmarks/results/convert.md.

    .venv/bin/python benchmarks/convert.py [--repeat 3] [--sparse-gib 2] [--out benchmarks/results/convert.md]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from _corpus import BENIGN_PE
from _machine import command_line, cpu_model, write_report  # benchmarks/ is on sys.path when a script runs

from malvision.convert import ConvertSpec, model_input
from malvision.convert.image import iter_plot_rows, plot_shape, write_png
from malvision.io import CHUNK, atomic_writer, human_size, open_source
from malvision.triage import byte_histogram

ROOT = Path(__file__).resolve().parent.parent
GOAL_MBS = 200.0
GOAL_RSS_MB = 300.0
MB = 1e6  # throughput in 10^6 bytes per second; sizes in KiB/MiB/GiB

# Run in a fresh interpreter so its peak RSS is this conversion's alone.
# ru_maxrss is no good here: Linux carries the parent's high-water mark over fork and exec, so the
# child reads VmHWM, the peak of its own address space.
CHILD = """
import json, resource, sys, time
from pathlib import Path
from malvision.convert import ConvertSpec, model_input
from malvision.convert.image import iter_plot_rows, plot_shape, write_png
from malvision.io import atomic_writer, open_source

def peak_kib():
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

path, what, out = sys.argv[1], sys.argv[2], sys.argv[3]
base = peak_kib()
src = open_source(path, max_size=1 << 50)
t = time.perf_counter()
if what == "image":
    img = model_input(src, ConvertSpec(kind="image", image_size=224))
    assert img.shape == (224, 224) and not img.any()
else:
    h, w = plot_shape(src.size)
    with atomic_writer(out) as f:
        write_png(f, iter_plot_rows(src.chunks(), src.size), h, w)
dt = time.perf_counter() - t
print(json.dumps({"seconds": dt, "base_kib": base, "peak_kib": peak_kib()}))
"""


def best_time(fn: Callable[[], object], repeat: int) -> float:
    """Fastest of ``repeat`` runs (the least disturbed by the other users of a shared machine)."""
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def pick_input(tmp: Path, min_size: int) -> tuple[Path, str]:
    """The largest benign PE if the corpus is there, else a generated random file."""
    if BENIGN_PE.is_dir():
        files = sorted((p for p in BENIGN_PE.iterdir() if p.is_file()), key=lambda p: p.stat().st_size)
        if files and files[-1].stat().st_size >= min_size:
            return files[-1], f"benign PE `{files[-1].name[:12]}…`"
    path = tmp / "random.bin"
    rng = np.random.default_rng(0)
    with open(path, "wb") as f:
        for _ in range(128):
            f.write(rng.integers(0, 256, 1 << 20, dtype=np.uint8).tobytes())
    return path, "random bytes (no PE corpus found)"


def row(
    what: str, inp: str, size: int, seconds: float, rss: str = "", goal: str = "", note: str = ""
) -> list[str]:
    mbs = size / MB / seconds
    ok = ""
    if goal == "MB/s":
        ok = "yes" if mbs >= GOAL_MBS else "**no**"
        goal = f">= {GOAL_MBS:.0f} MB/s"
    return [what, inp, human_size(size), f"{seconds:.3f}", f"{mbs:,.0f}", rss, goal, ok, note]


def child_rss(path: Path, what: str, out: Path) -> dict[str, float]:
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), what, str(out)], capture_output=True, text=True, check=False
    )
    if proc.returncode:
        raise SystemExit(f"child failed ({what}):\n{proc.stderr}")
    return json.loads(proc.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3, help="runs per measure; the fastest counts")
    ap.add_argument("--sparse-gib", type=float, default=2.0, help="size of the sparse file for peak RSS")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "convert.md")
    ap.add_argument("--tmp", type=Path, default=None, help="scratch folder (default: system temp)")
    args = ap.parse_args()
    command = command_line()

    rows: list[list[str]] = []
    with tempfile.TemporaryDirectory(dir=args.tmp, prefix="malvision-bench-") as tmp_name:
        tmp = Path(tmp_name)
        path, label = pick_input(tmp, 32 * 1024**2)
        src = open_source(path)
        src.read()  # warm the page cache: the numbers below are CPU cost, not disk
        size = src.size

        # (a) byte plot -> fixed-size image, streamed from the file
        for s in (64, 224):
            spec = ConvertSpec(kind="image", image_size=s)
            t = best_time(lambda spec=spec: model_input(open_source(path), spec), args.repeat)
            rows.append(row(f"image {s}x{s} (`model_input`)", label, size, t, goal="MB/s"))

        # (b) PNG as `malvision convert` writes it (stream, zlib, fsync, rename)
        for level in (1, 6, 0):
            dest = tmp / f"out-{level}.png"

            def png(level: int = level, dest: Path = dest) -> None:
                h, w = plot_shape(size)
                s = open_source(path)
                with atomic_writer(dest) as f:
                    write_png(f, iter_plot_rows(s.chunks(), s.size), h, w, level)

            t = best_time(png, args.repeat)
            ratio = dest.stat().st_size / size
            note = f"PNG is {ratio:.0%} of the input" + (" (default level)" if level == 1 else "")
            rows.append(
                row(
                    f"PNG, level {level} ({'ISA-L' if 1 <= level <= 3 else 'zlib'})",
                    label,
                    size,
                    t,
                    goal="MB/s",
                    note=note,
                )
            )

        # (c) byte sequence of the whole file (the default keeps only the first 2 MiB)
        spec = ConvertSpec(kind="bytes", max_len=size)
        t = best_time(lambda: model_input(open_source(path), spec), args.repeat)
        rows.append(row("byte sequence, whole file", label, size, t, goal="MB/s"))
        spec2 = ConvertSpec(kind="bytes")
        t = best_time(lambda: model_input(open_source(path), spec2), max(args.repeat, 5))
        rows.append(row("byte sequence, first 2 MiB", label, spec2.max_len, t, goal="MB/s"))

        # (e) the PE structure vector (the default model's input) and the byte histogram under it,
        # against np.bincount on single bytes, chunk by chunk as the scanner reads
        spec3 = ConvertSpec(kind="features")
        t = best_time(lambda: model_input(open_source(path), spec3), args.repeat)
        rows.append(row("PE features (`model_input`, kind features)", label, size, t, goal="MB/s"))
        whole = path.read_bytes()  # in the scanner's 4 MiB chunks (FileSource reuses one buffer)
        chunks = [whole[i : i + CHUNK] for i in range(0, len(whole), CHUNK)]
        t = best_time(lambda: [byte_histogram(c) for c in chunks], args.repeat)
        rows.append(row("byte histogram (`triage.byte_histogram`, uint16 pairs)", label, size, t))
        t = best_time(
            lambda: [np.bincount(np.frombuffer(c, dtype=np.uint8), minlength=256) for c in chunks],
            args.repeat,
        )
        rows.append(row("byte histogram, `np.bincount` of single bytes (reference)", label, size, t))

        # (d) peak RSS of a fresh process on a sparse file bigger than any real sample
        sparse = tmp / "sparse.bin"
        with open(sparse, "wb") as f:
            f.truncate(int(args.sparse_gib * 1024**3))
        ssize = sparse.stat().st_size
        for what in ("image", "png"):
            r = child_rss(sparse, what, tmp / "sparse.png")
            peak_mb = r["peak_kib"] * 1024 / 1024**2
            ok = "yes" if peak_mb < GOAL_RSS_MB else "**no**"
            base_mb = r["base_kib"] * 1024 / 1024**2
            name = "image 224x224" if what == "image" else "PNG, level 1"
            cells = row(f"peak RSS: {name}, fresh process", "sparse file (zeros)", ssize, r["seconds"])
            cells[5] = f"{peak_mb:.0f} MiB"
            cells[6], cells[7] = f"< {GOAL_RSS_MB:.0f} MB", ok
            cells[8] = f"{base_mb:.0f} MiB after imports; cold page cache"
            rows.append(cells)
            (tmp / "sparse.png").unlink(missing_ok=True)

    header = ["measure", "input", "size", "seconds", "MB/s", "peak RSS", "goal", "met", "note"]
    table = [f"| {' | '.join(header)} |", f"|{'|'.join('---' for _ in header)}|"]
    table += [f"| {' | '.join(r)} |" for r in rows]
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    env = [
        "# Conversion benchmark",
        "",
        f"- command: `{command}` (from the repository root)",
        f"- date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- CPU: {cpu_model()}, {os.cpu_count()} cores ({affinity} usable)",
        f"- load average at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())} (a shared machine)",
        f"- Python {platform.python_version()}, numpy {np.__version__}, zlib {zlib.ZLIB_RUNTIME_VERSION}",
        f"- MB/s is 10^6 bytes of input per second, fastest of {args.repeat} runs, warm page cache "
        "(except the sparse-file rows: one cold run each).",
        "",
    ]
    text = "\n".join(env + table) + "\n"
    write_report(text, args.out)


if __name__ == "__main__":
    main()
