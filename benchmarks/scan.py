"""Scanner speed, latency and memory against the peer tool malvizv1, side by side in one run (not in CI).

Measures, on the same real PE files (a seeded subsample of the benign corpus at
~/.cache/malvision/benign/pe, page cache warmed first for both tools):
(1) throughput, files/s and MB/s: ``Scanner(model).scan(paths)`` (one model load, batched; torch,
    and ONNX when an .onnx sits beside the model or with ``--export-onnx``; 1 and 2 reader threads,
    and 2 reader processes started before timing), and a fresh ``malvision scan FILES`` process with
    everything included, against malvizv1 with one held ONNX Runtime session (benchmarks/_malvizv1_driver.py, run
    with the malvizv1 venv's Python); ratio ours/peer, goal >= 10x. Both tools run twice: with their
    default thread pools, and with every pool at one thread (torch, OpenBLAS, ONNX Runtime), which is
    what counts on a loaded machine, where spinning pools fight over the cores;
(2) latency for one small file: cold (a fresh ``malvision scan FILE --json`` process, median of 3)
    and warm (``Scanner.scan_bytes``, model loaded, median of 20), and the same for the peer;
(3) peak RSS (VmHWM polled from /proc/<pid>/status, and VmRSS summed over the process and its
    workers) of a fresh ``malvision scan`` of a folder with a 2 GiB sparse file and a few real PE
    files, with reader threads and with reader processes, goal < 500 MB for the whole tree;
(4) agreement: how many files each tool calls malware (ours at the model card's threshold, the peer
    when its result is "malware").
With ``--malware-zip`` the sample zip's entries are read into memory (never written to disk) and
scanned by both tools too: ours with ``scan_bytes``, the peer through an anonymous memfd.
Prints Markdown and writes it to benchmarks/results/scan.md.

    .venv/bin/python benchmarks/scan.py --model /tmp/det1/model.pt [--limit 400] [--malware-zip ZIP]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from _corpus import BENIGN_PE
from _machine import command_line, write_report  # benchmarks/ is on sys.path when a script runs
from _scan_common import (
    DISK,
    GOAL_RSS_MB,
    MALVISION,
    MB,
    MEMORY,
    ONE_THREAD_ENV,
    PEER_PYTHON,
    PEER_RECIPE,
    POOLS,
    Run,
    load1,
    loadavg,
)
from _scan_inputs import pick_benign, small_file, warm, zip_entries
from _scan_measure import median_time, ours_bytes, ours_scan, peak_rss, run_cli, thread_pools
from _scan_peer import peer_driver, peer_python, peer_run
from _scan_report import Results, Setup, render

from malvision.errors import MalvisionError
from malvision.io import human_size
from malvision.scan import Scanner

ROOT = Path(__file__).resolve().parent.parent
READERS = (("thread", 1), ("thread", 2), ("process", 2))  # how our files are read and converted


def parse_args() -> argparse.Namespace:
    """The command line."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--model", default="default", help="bundled model name, run folder or .pt (default: default)"
    )
    ap.add_argument(
        "--malvizv1-python",
        type=Path,
        default=None,
        help=f"Python of a venv with malvizv1==0.1.0 (default: {PEER_PYTHON}; made by: {PEER_RECIPE})",
    )
    ap.add_argument(
        "--files", type=Path, default=BENIGN_PE, help="folder of real PE files (default: the benign corpus)"
    )
    ap.add_argument("--limit", type=int, default=400, help="seeded subsample of that many files; 0 for all")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--repeat", type=int, default=1, help="throughput runs per configuration; the fastest counts"
    )
    ap.add_argument(
        "--malware-zip",
        type=Path,
        default=None,
        help="also scan this sample zip's entries (password infected), in memory, with both tools",
    )
    ap.add_argument(
        "--export-onnx",
        action="store_true",
        help="without an .onnx beside the model, export one into a temporary copy to time it too",
    )
    ap.add_argument("--sparse-gib", type=float, default=2.0, help="size of the sparse file for peak RSS")
    ap.add_argument("--tmp", type=Path, default=None, help="scratch folder (default: system temp)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "scan.md")
    return ap.parse_args()  # fmt: skip


def load_scanner(model: str) -> tuple[Scanner, float]:
    """Our torch scanner, which every in-process measurement shares, and its load time in seconds."""
    try:
        t = time.perf_counter()
        base = Scanner(model, backend="torch", workers=2, threads=None)
        return base, time.perf_counter() - t
    except MalvisionError as e:
        raise SystemExit(
            f"error: {e}\n  (no shipped model yet? pass --model PATH, e.g. --model /tmp/det1/model.pt)"
        ) from None


def auto_backend_of(model_path: Path) -> str:
    """What `auto` picks in a fresh process (this one has torch loaded, which changes the choice)."""
    return subprocess.run(
        [sys.executable, "-c", f"from malvision.scan import Scanner; print(Scanner({str(model_path)!r}).backend)"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip


def pick_inputs(args: argparse.Namespace) -> tuple[list[Path], int, int]:
    """The seeded subsample of benign files, read once to warm the page cache; the total and their size."""
    paths, n_total = pick_benign(args.files, args.limit, args.seed)
    size = sum(p.stat().st_size for p in paths)
    print(f"{len(paths)} of {n_total} files, {human_size(size)}; warming the page cache", file=sys.stderr)
    warm(paths)
    return paths, n_total, size


def backends(model_path: Path, export: bool, tmp: Path) -> list[tuple[str, Path]]:
    """Our backends to time: torch, and ONNX when an .onnx sits beside the model or ``export`` makes one
    (and numpy, for a tree model's export)."""
    from malvision.export import onnx_report, tree_arrays

    found: list[tuple[str, Path]] = [("torch", model_path)]
    if model_path.with_suffix(".onnx").is_file():
        found.append(("onnx", model_path))
        report = onnx_report(model_path)
        if report and tree_arrays(model_path, report):
            found.append(("numpy", model_path))
    elif export:
        from malvision.export import export_onnx

        copy = tmp / "onnx" / model_path.name
        copy.parent.mkdir()
        shutil.copyfile(model_path, copy)
        print("exporting a temporary ONNX copy", file=sys.stderr)
        export_onnx(copy)
        found.append(("onnx", copy))
    return found


def make_scanner(model_path: Path, backend: str, pools: str, readers: str, workers: int) -> Scanner:
    """A scanner for one throughput configuration; its ONNX session at one thread for ``1 thread``."""
    # threads=None: this script sets the pools itself (thread_pools), so that `default`
    # really is every library's default; `malvision scan` runs as `1 thread`.
    scanner = Scanner(
        model_path,
        backend=backend,
        workers=workers,
        processes=readers == "process",
        threads=None,
    )
    if backend == "onnx" and pools == "1 thread":
        from malvision.export import OnnxModel

        scanner._runner = OnnxModel(model_path.with_suffix(".onnx"), threads=1)
    return scanner


def ours_throughput(
    args: argparse.Namespace, base: Scanner, tmp: Path, paths: list[Path], size: int
) -> list[Run]:
    """(1) Our ``Scanner.scan`` per backend, pools and readers over the files, fastest of ``--repeat``."""
    runs = []
    for backend, model_path in backends(base.model_path, args.export_onnx, tmp):
        for pools in POOLS:
            for readers, workers in READERS:
                scanner = make_scanner(model_path, backend, pools, readers, workers)
                noun = readers if workers == 1 else {"thread": "threads", "process": "processes"}[readers]
                config = f"`Scanner.scan`, {backend}, {workers} reader {noun}, batch 32"
                note = ""
                if readers == "process":  # start the workers first, as the peer's session is loaded first
                    t = time.perf_counter()
                    list(scanner.scan([str(p) for p in paths[: 2 * workers]]))
                    while scanner._procs.started < workers:  # a scan reads on threads until one is up
                        time.sleep(0.01)
                    note = f"worker processes started before timing, in {time.perf_counter() - t:.2f} s"
                print(f"ours: {config}, {pools}", file=sys.stderr)
                runs.append(ours_scan(scanner, paths, size, config, pools, args.repeat))
                runs[-1].note = note
                scanner.close()
    return runs  # fmt: skip


def fresh_run(model: str, paths: list[Path], size: int, repeat: int) -> Run:
    """(1) What an analyst sees: a fresh process, imports, model load and worker start included; the
    fastest of ``repeat``, as for every other row, with their median in the note."""
    print("ours: fresh `malvision scan` process over the same files", file=sys.stderr)
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fresh = run_cli([str(MALVISION), "scan", "--json", "--model", str(model), *map(str, paths)])
        times.append(time.perf_counter() - t)
    run = Run("malvision", "fresh `malvision scan FILES --json` process, defaults", "1 thread", DISK,
              len(paths), size, min(times), load1())  # fmt: skip
    for rec in json.loads(fresh.stdout):
        run.verdicts[rec["path"]] = rec["verdict"]
    run.note = "everything included: imports, model load, worker start, output" + (
        f"; median of {repeat} runs {statistics.median(times):.2f} s" if repeat > 1 else ""
    )
    return run


def peer_throughput(py: Path, tmp: Path, paths: list[Path], repeat: int) -> tuple[list[Run], dict[str, str]]:
    """(1) The malvizv1 driver per pools over the same files; its runs and its versions."""
    runs, versions = [], {}
    for pools in POOLS:
        print(f"peer: malvizv1 driver, {pools}", file=sys.stderr)
        outs = [peer_driver(py, tmp, pools, paths=paths) for _ in range(repeat)]
        versions = outs[0]["versions"]
        runs.append(peer_run(outs, DISK, pools))
    return runs, versions


def zip_runs(args: argparse.Namespace, base: Scanner, py: Path | None, tmp: Path) -> list[Run]:
    """(1) Ours and the peer, per pools, on the sample zip's entries read into memory."""
    print(f"reading {args.malware_zip} into memory", file=sys.stderr)
    entries, _ = zip_entries(args.malware_zip, args.limit, args.seed)
    runs = []
    for pools in POOLS:
        print(f"ours and peer on the zip entries, {pools}", file=sys.stderr)
        runs.append(ours_bytes(base, entries, pools, args.repeat))
        if py is not None:
            outs = [peer_driver(py, tmp, pools, entries=entries) for _ in range(args.repeat)]
            runs.append(peer_run(outs, MEMORY, pools))
    return runs


def ours_latency(base: Scanner, small: Path, model: str, auto_backend: str) -> list[list[str]]:
    """(2) Our latency rows for one small file: a fresh process (median of 3) and ``scan_bytes`` (of 20)."""
    data = small.read_bytes()
    print("latency: cold and warm", file=sys.stderr)
    rows = []
    cold_cmd = [str(MALVISION), "scan", str(small), "--json", "--model", str(model)]
    for pools in POOLS:
        env = ONE_THREAD_ENV if pools == "1 thread" else None
        cold = median_time(lambda env=env: run_cli(cold_cmd, env), 3)
        how = f"backend auto (= {auto_backend})" + (", OMP/OPENBLAS_NUM_THREADS=1" if env else "")
        rows.append(["malvision", "cold: fresh `malvision scan FILE --json` process", pools,
                     f"{cold * 1000:,.0f} ms", "3", f"imports + model load + scan; {how}"])  # fmt: skip
    for pools in POOLS:
        with thread_pools(pools):
            base.scan_bytes(small.name, data)  # warm-up
            warm_s = median_time(lambda: base.scan_bytes(small.name, data), 20)
        rows.append(["malvision", "warm: `Scanner.scan_bytes`, model loaded", pools,
                     f"{warm_s * 1000:,.1f} ms", "20", "torch; bytes already in memory"])  # fmt: skip
    return rows


def peer_latency(py: Path, tmp: Path, small: Path) -> list[list[str]]:
    """(2) The peer's latency rows: its own CLI (median of 3) and the held-session driver (of 20)."""
    rows = []
    peer_cli = py.with_name("malvizv1")
    cmd = [str(peer_cli), str(small)] if peer_cli.exists() else [str(py), "-m", "malvizv1.cli", str(small)]
    cold_p = median_time(lambda: run_cli(cmd), 3)
    rows.append(["malvizv1", "cold: fresh `malvizv1 FILE` process", "default", f"{cold_p * 1000:,.0f} ms",
                 "3", "its own CLI: imports + new session + scan (no thread option)"])  # fmt: skip
    for pools in POOLS:
        out = peer_driver(py, tmp, pools, paths=[small] * 21)
        warm_p = statistics.median(r["seconds"] for r in out["per_file"][1:])
        rows.append(["malvizv1", "warm: held session, one file", pools, f"{warm_p * 1000:,.1f} ms",
                     "20", "reads the file (page cache) each time; first call dropped"])  # fmt: skip
    return rows


def rss_rows(args: argparse.Namespace, tmp: Path, paths: list[Path]) -> list[list[str]]:
    """(3) Peak RSS of a fresh `malvision scan` on a folder with a sparse file and a few real PEs."""
    folder = tmp / "rss"
    folder.mkdir()
    sparse = folder / "sparse.bin"
    with open(sparse, "wb") as f:
        f.truncate(int(args.sparse_gib * 1024**3))
    by_size = sorted(paths, key=lambda p: p.stat().st_size)
    for p in by_size[len(by_size) // 2 : len(by_size) // 2 + 3]:
        shutil.copyfile(p, folder / p.name)
    folder_size = sum(p.stat().st_size for p in folder.iterdir())
    print("peak RSS", file=sys.stderr)
    rows = []
    for pool in ("--no-processes", "--processes"):
        rss_cmd = [str(MALVISION), "scan", str(folder), "--json", "--model", str(args.model), pool]
        peak_mb, tree_mb, rss_seconds, rss_out = peak_rss(rss_cmd, tmp)
        sv = next((r for r in json.loads(rss_out) if r["path"].endswith("sparse.bin")), {})
        met = "yes" if tree_mb * 1024**2 / MB < GOAL_RSS_MB else "**no**"
        rows.append([
            "malvision", f"fresh `malvision scan DIR --json {pool}`: {human_size(sparse.stat().st_size)} "
            f"sparse file + {len(list(folder.iterdir())) - 1} real PEs", human_size(folder_size),
            f"{peak_mb:,.0f} MiB", f"{tree_mb:,.0f} MiB", f"{rss_seconds:.1f}", f"< {GOAL_RSS_MB:.0f} MB", met,
            f"sparse file: {sv.get('verdict')} ({sv.get('reason')}); default pools",
        ])  # fmt: skip
    rows.append([
        "malvizv1", "not run on the sparse file", "", "", "", "", "", "",
        "by its code it reads the whole file, then makes a PIL image and an RGB copy: ~5x the file in RAM",
    ])  # fmt: skip
    return rows


def main() -> None:
    args = parse_args()
    command = command_line()
    if not args.files.is_dir():
        raise SystemExit(f"error: {args.files}: no such folder; build the benign corpus with "
                         "`bash ../shared/tools/build_benign_corpus.sh` or pass --files DIR")  # fmt: skip
    load_start = loadavg()
    default_threads = torch.get_num_threads()
    base, load_seconds = load_scanner(args.model)
    auto_backend = auto_backend_of(base.model_path)
    py = peer_python(args.malvizv1_python)

    peer_versions: dict[str, str] = {}
    with tempfile.TemporaryDirectory(dir=args.tmp, prefix="malvision-scanbench-") as tmp_name:
        tmp = Path(tmp_name)
        paths, n_total, size = pick_inputs(args)
        runs = ours_throughput(args, base, tmp, paths, size)
        runs.append(fresh_run(args.model, paths, size, args.repeat))
        if py is not None:
            peer_runs, peer_versions = peer_throughput(py, tmp, paths, args.repeat)
            runs += peer_runs
        if args.malware_zip is not None:
            runs += zip_runs(args, base, py, tmp)
        small = small_file(args.files)
        lat_rows = ours_latency(base, small, args.model, auto_backend)
        if py is not None:
            lat_rows += peer_latency(py, tmp, small)
        rss = rss_rows(args, tmp, paths)

    setup = Setup(args, command, load_start, default_threads, base, load_seconds, py)
    results = Results(paths, n_total, size, small, runs, lat_rows, rss, peer_versions)
    write_report(render(setup, results), args.out)


if __name__ == "__main__":
    main()
