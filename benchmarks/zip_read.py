"""Reading a password-protected sample zip: entries decrypted into memory, and a whole `malvision scan`.

ZipCrypto, the cipher most sample zips use, is decrypted by libarchive (C) where the system has it,
else by pyzipper (Python). This times both readers over every entry of the zip (`ZipDataset.open`,
entries in order, nothing written to disk), checks they give the same bytes, and times a fresh
`malvision scan ZIP --zip-password infected --csv` process end to end.

    .venv/bin/python benchmarks/zip_read.py [--zip ../shared/data/thezoo_pe_malware.zip] [--repeat 3]

Prints Markdown and writes it to benchmarks/results/zip-read.md.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from _machine import command_line, cpu_model, write_report  # benchmarks/ is on sys.path when a script runs

import malvision
from malvision.data import zips
from malvision.errors import MalvisionError

ROOT = Path(__file__).resolve().parent.parent
ZIP = ROOT.parent / "shared" / "data" / "thezoo_pe_malware.zip"
MALVISION = Path(sys.executable).with_name("malvision")


def read_all(path: Path, fast: bool) -> tuple[float, int, str]:
    """(seconds, bytes, digest of every entry in order) for one pass over the zip's entries."""
    real = zips._libarchive
    if not fast:
        zips._libarchive = lambda: None  # type: ignore[assignment]
    try:
        t = time.perf_counter()
        zd = zips.ZipDataset(path, label="malware")
        h, n = hashlib.sha256(), 0
        try:
            for i in range(len(zd)):
                data = zd.open(i).read()
                h.update(data)
                n += len(data)
            if fast and not any(zips._zipcrypto(info) for info in zd._infos):
                raise SystemExit(f"error: {path}: no ZipCrypto entries, so both readers are pyzipper")
            if fast and zd._stream is None:
                raise SystemExit(
                    "error: libarchive did not load; install the system's libarchive (libarchive13)"
                )
        finally:
            zd.close()
        return time.perf_counter() - t, n, h.hexdigest()
    finally:
        zips._libarchive = real  # type: ignore[assignment]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--zip", type=Path, default=ZIP, help="a sample zip, password 'infected'")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    if not args.zip.is_file():
        raise SystemExit(f"error: {args.zip}: no such file")
    try:
        n_entries = len(zips.ZipDataset(args.zip, label="malware"))
    except MalvisionError as e:
        raise SystemExit(f"error: {e}") from None
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    rows = []
    digests = set()
    for fast, name in ((True, "libarchive (C)"), (False, "pyzipper (Python)")):
        runs = [read_all(args.zip, fast) for _ in range(args.repeat)]
        best, size = min(r[0] for r in runs), runs[0][1]
        digests |= {r[2] for r in runs}
        rows.append(f"| {name} | {best:.2f} s | {size / best / 1e6:.1f} MB/s | {n_entries / best:,.0f} |")
    if len(digests) != 1:
        raise SystemExit("error: the two readers gave different bytes")
    cmd = [str(MALVISION), "scan", str(args.zip), "--zip-password", "infected", "--csv"]
    walls = []
    for _ in range(args.repeat):
        t = time.perf_counter()
        p = subprocess.run(cmd, capture_output=True, text=True, check=False)
        walls.append(time.perf_counter() - t)
        if p.returncode not in (0, 1):
            raise SystemExit(f"error: malvision scan exited {p.returncode}: {p.stderr.strip()[-300:]}")
    text = "\n".join(
        [
            "# Reading a sample zip",
            "",
            f"- Command: `{command_line()}`",
            f"- Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; malvision {malvision.__version__}",
            f"- Machine: {cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"load average at the start {load}",
            f"- Zip: `{args.zip.name}`, {args.zip.stat().st_size / 1e6:.1f} MB, {n_entries} entries "
            f"({size / 1e6:.1f} MB decrypted), ZipCrypto; best of {args.repeat}",
            "",
            "| reader | every entry into memory | decrypted MB/s | entries/s |",
            "|---|---|---|---|",
            *rows,
            "",
            "Both readers gave the same bytes (one sha256 over all entries in order).",
            "",
            f"A fresh `malvision scan {args.zip.name} --zip-password infected --csv` process, start-up and "
            f"model load included: {statistics.median(walls):.2f} s (median of {args.repeat}).",
            "",
        ]
    )
    write_report(text, ROOT / "benchmarks" / "results" / "zip-read.md")


if __name__ == "__main__":
    main()
