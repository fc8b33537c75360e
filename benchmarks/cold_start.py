"""Cold start of ``malvision scan`` on one file (or a folder): a fresh process, everything included (not in CI).

    .venv/bin/python benchmarks/cold_start.py [FILE|FOLDER] [--runs 9] [--model default] [--against DIR]

Runs ``malvision scan FILE --json`` ``--runs`` times (after one warm-up run that fills the page cache)
and reports the median and spread of the wall time, the load average while it ran, and where the
start goes: the imports by top-level package (``python -X importtime``, summed self time). FILE
defaults to pip's ``w32.exe`` (a real 90 KiB PE launcher). ``--against DIR`` alternates every run with
one whose ``PYTHONPATH`` puts DIR first (e.g. another version of a dependency installed there with
``pip install --target DIR typer==0.29.2``), so both see the same load. Runs without
``PYTHONDONTWRITEBYTECODE`` (set on some machines, this one included): an installed package has its
bytecode cached, and recompiling the source tree at every start added about 0.1 s. Reports CPU time
(user + system) beside wall time: a shared machine's load inflates it least. Writes
benchmarks/results/cold-start.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import resource
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from _machine import command_line, cpu_model, write_report  # benchmarks/ is on sys.path when a script runs

ROOT = Path(__file__).resolve().parent.parent
EXE = Path(sys.executable).with_name("malvision")
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}  # as an installed package


def _default_file() -> Path:
    import pip._vendor.distlib as distlib

    return Path(distlib.__file__).with_name("w32.exe")


def _imports(file: Path, model: str) -> Counter[str]:
    """Self time (ms) of every import of one ``scan`` run, summed by top-level package."""
    code = "import sys; from malvision.cli import main; sys.argv = sys.argv[1:]; main()"
    args = [
        sys.executable,
        "-X",
        "importtime",
        "-c",
        code,
        "malvision",
        "scan",
        str(file),
        "--json",
        "-m",
        model,
    ]
    done = subprocess.run(args, capture_output=True, text=True, env=ENV)
    total: Counter[str] = Counter()
    for line in done.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+\d+ \|\s*(\S+)", line)
        if m:
            total[m.group(2).split(".")[0]] += int(m.group(1)) / 1000
    return total


def _children_cpu() -> float:
    """User + system CPU seconds of every finished child process so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("file", nargs="?", type=Path, default=None)
    ap.add_argument("--runs", type=int, default=9)
    ap.add_argument("--model", default="default")
    ap.add_argument("--against", type=Path, default=None, help="alternate with PYTHONPATH=DIR runs")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "cold-start.md")
    args = ap.parse_args()
    file = args.file or _default_file()
    if not file.exists():
        raise SystemExit(f"cold_start: no such file or folder: {file}")
    files = sorted(p for p in file.rglob("*") if p.is_file()) if file.is_dir() else [file]
    what = f"Folder: `{file.name}`, {len(files):,} files" if file.is_dir() else f"File: `{file.name}`"
    cmd = [str(EXE), "scan", str(file), "--json", "-m", args.model]
    other_env = {**ENV, "PYTHONPATH": str(args.against)} if args.against else None
    for env in (ENV, other_env) if other_env else (ENV,):  # warm-up: page cache, .pyc files
        subprocess.run(cmd, capture_output=True, check=True, env=env)
    times, others, cpu, other_cpu, loads = [], [], [], [], []
    for _ in range(args.runs):
        for env, into, into_cpu in ((ENV, times, cpu), (other_env, others, other_cpu)):
            if env is None:
                continue
            before, start = _children_cpu(), time.perf_counter()
            subprocess.run(cmd, capture_output=True, check=True, env=env)
            into.append(time.perf_counter() - start)
            into_cpu.append(_children_cpu() - before)
        loads.append(os.getloadavg()[0])
    imports = _imports(file, args.model)
    q = statistics.quantiles(times, n=4)
    lines = [
        f"# Cold start: `malvision scan {'FOLDER' if file.is_dir() else 'FILE'} --json` in a fresh process",
        "",
        f"{dt.date.today()}, {os.cpu_count()} cores ({cpu_model()}), load average {min(loads):.2f} to "
        f"{max(loads):.2f} while it ran. Command: `{command_line()}`.",
        "",
        f"{what} ({sum(p.stat().st_size for p in files):,} bytes), model `{args.model}`. {args.runs} runs after one "
        f"warm-up: median **{statistics.median(times):.3f} s** (quartiles {q[0]:.3f} to {q[2]:.3f} s, "
        f"min {min(times):.3f} s); CPU time median {statistics.median(cpu):.3f} s."
        + (
            f" Alternated with `PYTHONPATH={args.against}`: median {statistics.median(others):.3f} s "
            f"(min {min(others):.3f} s), CPU time median {statistics.median(other_cpu):.3f} s."
            if others
            else ""
        )
        + " CPU time counts the command and the processes it waits for: reader processes forked by"
        " multiprocessing's forkserver are the server's, which no one waits for, so it leaves theirs out.",
        "",
        f"Imports of one run, self time summed by package ({sum(imports.values()):.0f} ms in all, "
        "`python -X importtime`; the figures include the tool's overhead):",
        "",
        "| package | ms |",
        "|---|---|",
        *(f"| {k} | {v:.0f} |" for k, v in imports.most_common(12)),
        "",
    ]
    write_report("\n".join(lines), args.out)


if __name__ == "__main__":
    main()
