"""Which PE parser the one PE layer uses: ours (``struct``, ``malvision.pe``) against pefile and LIEF.

Each parser reads, for every file of the benign corpora, the headers, the section table and the
import table (DLLs and function names), from bytes already in memory (page cache warmed, files read
once before timing): ours from the file's first 64 KiB and the range ``import_window`` names (what a
scan keeps in its one streaming read), pefile (``fast_load`` then the import directory) and LIEF
(``lief.PE.parse``) from the whole file. Each parser runs in a fresh process, so its peak RSS is its
own: the table gives its peak RSS above the files held in memory (the parser's own memory, import
included). Also counts how often ours and pefile name the same DLLs and functions.

    .venv/bin/python benchmarks/pe_parse.py [--limit N] [CORPUS_DIR ...]

LIEF is optional (``pip install lief``); without it its row is left out. Results go to
benchmarks/results/pe-parse.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from _corpus import BENIGN_PE, CACHE
from _machine import command_line, cpu_model, write_report  # benchmarks/ is on sys.path when a script runs

DEFAULT_DIRS = [BENIGN_PE, CACHE / "benign-extra" / "pe", CACHE / "benign-tools" / "pe"]
MAX_BYTES = 64 * 1024 * 1024  # files larger than this are left out (LIEF and pefile read them whole)


def _files(dirs: list[Path], limit: int | None) -> list[Path]:
    files = sorted(
        p for d in dirs if d.is_dir() for p in d.iterdir() if p.is_file() and p.stat().st_size <= MAX_BYTES
    )
    return files[:limit] if limit else files


def _ours(data: bytes) -> tuple[list[str], list[str]]:
    from malvision.pe import HEAD_BYTES, import_window, parse_or_none, read_imports

    headers = parse_or_none(data[:HEAD_BYTES])
    if headers is None:
        return [], []
    start, end = import_window(headers) or (0, 0)
    imports = read_imports(headers, data[start:end], start)
    return list(imports.dlls), [f for f in imports.functions if not f.startswith("#")]


def _pefile(data: bytes) -> tuple[list[str], list[str]]:
    import pefile

    from malvision.pe import api_name

    try:
        pe = pefile.PE(data=data, fast_load=True)
        pe.parse_data_directories(directories=[pefile.DIRECTORY_ENTRY["IMAGE_DIRECTORY_ENTRY_IMPORT"]])
    except pefile.PEFormatError:
        return [], []
    entries = getattr(pe, "DIRECTORY_ENTRY_IMPORT", [])
    dlls = [e.dll.decode("latin-1").lower() for e in entries]
    names = [api_name(i.name.decode("latin-1")) for e in entries for i in e.imports if i.name]  # by name
    return dlls, names


def _lief(data: bytes) -> tuple[list[str], list[str]]:
    import io

    import lief

    from malvision.pe import api_name

    lief.logging.disable()
    binary = lief.PE.parse(io.BytesIO(data))
    if binary is None:
        return [], []
    names = [api_name(e.name) for i in binary.imports for e in i.entries if e.name and not e.is_ordinal]
    return [i.name.lower() for i in binary.imports], names


PARSERS = {"ours (struct, malvision.pe)": _ours, "pefile (fast_load + imports)": _pefile, "LIEF": _lief}


def _child(parser: str, listing: Path) -> None:
    """Run one parser over the listed files; print JSON: seconds, peak RSS, and the imports found."""
    files = [Path(line) for line in listing.read_text().splitlines()]
    datas = [f.read_bytes() for f in files]
    fn = PARSERS[parser]
    fn(datas[0])  # imports and first-call set-up outside the timing
    base = _status_mib("VmRSS")
    t = time.perf_counter()
    found = [fn(d) for d in datas]
    seconds = time.perf_counter() - t
    print(json.dumps({"seconds": seconds, "rss_mib": _status_mib("VmHWM") - base, "found": found}))


def _status_mib(key: str) -> float:
    """A /proc/self/status memory figure (VmRSS now, VmHWM the peak) in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {key} in /proc/self/status")


def _run(parser: str, listing: Path) -> dict | None:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", parser, str(listing)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        print(f"{parser}: failed ({proc.stderr.strip().splitlines()[-1:]}); left out", file=sys.stderr)
        return None
    return json.loads(proc.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dirs", nargs="*", type=Path, default=DEFAULT_DIRS)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _child(args.child[0], Path(args.child[1]))
        return
    files = _files(args.dirs, args.limit)
    if not files:
        sys.exit(f"error: no files under {', '.join(map(str, args.dirs))}; build the benign corpus first")
    listing = Path(f"/tmp/malvision-pe-parse-{time.time_ns()}.txt")
    listing.write_text("".join(f"{f}\n" for f in files))
    total = sum(f.stat().st_size for f in files)
    try:
        results = {name: _run(name, listing) for name in PARSERS}
    finally:
        listing.unlink()
    ours = results[next(iter(PARSERS))]
    lines = [
        "# PE parsing: the one PE layer's parser against pefile and LIEF",
        "",
        f"{len(files):,} benign PE files ({total / 2**20:,.0f} MiB) from {', '.join(str(d) for d in args.dirs)}; "
        "headers, section table and import table (DLLs and function names) of every file, from bytes in memory.",
        "",
        "| parser | files/s | µs per file | peak RSS over the files held (MiB) | same DLLs as ours | same functions as ours |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        if r is None:
            continue
        same_dlls = sum(a[0] == b[0] for a, b in zip(r["found"], ours["found"], strict=True))
        same_fns = sum(a[1] == b[1] for a, b in zip(r["found"], ours["found"], strict=True))
        lines.append(
            f"| {name} | {len(files) / r['seconds']:,.0f} | {1e6 * r['seconds'] / len(files):,.0f} | "
            f"{r['rss_mib']:.0f} | {same_dlls / len(files):.1%} | {same_fns / len(files):.1%} |"
        )
    lines += [
        "",
        f"Command: `{command_line()}`. Machine: {cpu_model()}, {platform.machine()}, Python "
        f"{platform.python_version()}; {datetime.now(UTC):%Y-%m-%d}.",
    ]
    write_report("\n".join(lines) + "\n", Path(__file__).parent / "results" / "pe-parse.md")


if __name__ == "__main__":
    main()
