"""Opcode-model inference, run on demand (not in CI): samples/s and peak RSS of whole-sample scoring.

Scores BIG2015 opcode files through the public ``Scanner`` (read, convert, score: what ``malvision scan``
does), each measurement in a fresh child process: ``--n`` files picked with a seed (``--repeat`` times: the
median, and the range, since a shared machine's rate moves by a tenth from run to run), then the longest
file alone (the memory bound). Peak RSS is the child's ``VmHWM`` (the highest of the runs). Prints a Markdown table and writes it to
benchmarks/results/opcode-infer.md.

    .venv/bin/python benchmarks/opcode_infer.py                              # the bundled big2015-opcodes
    .venv/bin/python benchmarks/opcode_infer.py --model RUN/best.pt --n 2000
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from _corpus import CACHE
from _machine import command_line, cpu_model, write_report  # benchmarks/ is on sys.path when a script runs

ROOT = Path(__file__).resolve().parent.parent
DATA = CACHE / "big2015_opcodes"


def _peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child(model: str, files: list[str], threads: int) -> dict[str, float]:
    """Score ``files`` with a fresh scanner; time from the first read to the last verdict."""
    import torch

    from malvision.scan import Scanner

    torch.set_num_threads(threads)
    scanner = Scanner(model)
    t0 = time.perf_counter()
    verdicts = list(scanner.scan(files))
    seconds = time.perf_counter() - t0
    refused = sum(not hasattr(v, "verdict") for v in verdicts)  # e.g. the lists of sample ids
    return {"files": len(files), "refused": refused, "seconds": seconds, "peak_rss_mib": _peak_rss_mib()}


def measure(model: str, files: list[str], threads: int) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", model, "--threads", str(threads), *files],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode:
        raise SystemExit(f"child failed: {out.stderr.strip().splitlines()[-1:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="big2015-opcodes", help="bundled name, run folder or .pt")
    ap.add_argument("--data", type=Path, default=DATA, help="unpacked big2015_opcodes folder")
    ap.add_argument("--n", type=int, default=1000, help="files scored in the throughput run")
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (one is fastest: the readers use the other core)",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=3, help="throughput runs, each in a fresh process")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("files", nargs="*", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.files, args.threads)))
        return
    manifest = args.data / "manifest.csv"
    if not manifest.is_file():
        raise SystemExit(f"{manifest}: missing; unpack ../shared/data/big2015_opcodes.tar.xz first")
    rows = list(csv.DictReader(manifest.open()))
    path = {r["sample_id"]: str(args.data / r["family"] / f"{r['sample_id']}.txt") for r in rows}
    n_ops = {r["sample_id"]: int(r["n_opcodes"]) for r in rows}
    picked = random.Random(args.seed).sample(sorted(path), min(args.n, len(path)))
    longest = max(n_ops, key=n_ops.__getitem__)
    if args.repeat < 1:
        raise SystemExit("--repeat: at least 1")
    runs = [measure(args.model, [path[s] for s in picked], args.threads) for _ in range(args.repeat)]
    bulk = sorted(runs, key=lambda r: r["seconds"])[len(runs) // 2]
    rates = sorted(r["files"] / r["seconds"] for r in runs)
    alone = measure(args.model, [path[longest]], args.threads)
    ops = sum(n_ops[s] for s in picked)
    rate = bulk["files"] / bulk["seconds"]
    text = "\n".join(
        [
            "# Opcode-model inference: whole samples through the Scanner",
            "",
            f"`{command_line()}`",
            "",
            f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {cpu_model()}, {os.cpu_count()} cores, "
            f"load average {os.getloadavg()[0]:.2f}, torch threads {args.threads}, model `{args.model}`",
            "",
            "| run | files | opcodes | seconds | samples/s | range of runs | ms/sample | peak RSS |",
            "|---|---|---|---|---|---|---|---|",
            f"| {args.n} files (seed {args.seed}), median of {len(runs)} | {bulk['files']:,} | {ops:,} "
            f"| {bulk['seconds']:.1f} | {rate:.0f} | {rates[0]:.0f}-{rates[-1]:.0f} | {1000 / rate:.2f} "
            f"| {max(r['peak_rss_mib'] for r in runs):.0f} MiB |",
            f"| the longest sample alone | 1 | {n_ops[longest]:,} | {alone['seconds']:.2f} | - | - | - "
            f"| {alone['peak_rss_mib']:.0f} MiB |",
            "",
            "Seconds run from the first read to the last verdict (reading, conversion and scoring), after the",
            f"model is loaded; {bulk['refused']} of the files were refused as not opcode text (the lists of",
            "sample ids beside the opcode files). Goals (issue 16): >= 100 samples/s and peak RSS < 1 GB.",
            "",
        ]
    )
    write_report(text, ROOT / "benchmarks" / "results" / "opcode-infer.md")


if __name__ == "__main__":
    main()
