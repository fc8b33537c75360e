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
import os
import platform
import random
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _machine import command_line, cpu_model, write_report  # benchmarks/ is on sys.path when a script runs
from threadpoolctl import threadpool_limits

import malvision
from malvision.errors import MalvisionError
from malvision.io import human_size
from malvision.scan import ScanError, Scanner, Verdict

ROOT = Path(__file__).resolve().parent.parent
PE_DIR = Path.home() / ".cache" / "malvision" / "benign" / "pe"
MALVISION = Path(sys.executable).with_name("malvision")
DRIVER = Path(__file__).resolve().with_name("_malvizv1_driver.py")
PEER_PYTHON = Path("/tmp/mz/venv/bin/python")
PEER_RECIPE = "python3 -m venv /tmp/mz/venv && /tmp/mz/venv/bin/pip install malvizv1==0.1.0"
GOAL_RATIO = 10.0
GOAL_RSS_MB = 500.0
MB = 1e6  # throughput in 10^6 bytes per second; sizes in KiB/MiB/GiB
SMALL_TARGET = 100_000  # the latency file: the corpus file closest to this size
TIMEOUT = 600.0
DISK = "benign PE, on disk"
MEMORY = "malware zip entries, in memory"
POOLS = ("default", "1 thread")  # thread-pool settings every tool is run with
READERS = (("thread", 1), ("thread", 2), ("process", 2))  # how our files are read and converted
ONE_THREAD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


@dataclass
class Run:
    """One throughput measurement: who, how, over what, and what each file got."""

    tool: str
    config: str
    pools: str
    inputs: str
    files: int
    size: int
    seconds: float
    load: float
    verdicts: dict[str, str] = field(default_factory=dict)  # name -> malware / benign / unknown / error
    sha256: dict[str, str] = field(default_factory=dict)
    note: str = ""


# -- environment ---------------------------------------------------------------------------------------


def load1() -> float:
    return os.getloadavg()[0]


def loadavg() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def peer_python(arg: Path | None) -> Path | None:
    """The malvizv1 venv's Python if it imports malvizv1, else None (and how to make it, on stderr)."""
    py = arg or PEER_PYTHON
    ok = (
        py.exists()
        and subprocess.run(
            [str(py), "-c", "import malvizv1.scanner"], capture_output=True, check=False
        ).returncode
        == 0
    )
    if ok:
        return py
    print(
        f"malvizv1 not usable with {py}: skipping the peer column.\n"
        f"  create its venv:  {PEER_RECIPE}\n"
        f"  then pass:        --malvizv1-python /tmp/mz/venv/bin/python",
        file=sys.stderr,
    )
    return None


@contextmanager
def thread_pools(pools: str) -> Iterator[None]:
    """``default`` leaves every pool alone; ``1 thread`` caps torch, OpenMP and OpenBLAS at one thread."""
    if pools == "default":
        yield
        return
    n = torch.get_num_threads()
    with threadpool_limits(limits=1):
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(n)


# -- inputs ----------------------------------------------------------------------------------------------


def pick_benign(folder: Path, limit: int, seed: int) -> tuple[list[Path], int]:
    """A seeded subsample of the non-empty files in ``folder`` (all when ``limit`` is 0), and the total."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.stat().st_size > 0)
    if limit and limit < len(files):
        return sorted(random.Random(seed).sample(files, limit)), len(files)
    return files, len(files)


def warm(paths: list[Path]) -> int:
    """Read every file once so both tools find them in the page cache; the bytes read."""
    n = 0
    for p in paths:
        with open(p, "rb") as f:
            while chunk := f.read(1 << 20):
                n += len(chunk)
    return n


def small_file(folder: Path) -> Path:
    """The file in ``folder`` closest to SMALL_TARGET bytes (ties: by name)."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.stat().st_size > 0)
    return min(files, key=lambda p: (abs(p.stat().st_size - SMALL_TARGET), p.name))


def zip_entries(path: Path, limit: int, seed: int) -> tuple[list[tuple[str, bytes]], int]:
    """(name, bytes) of the sample zip's entries read into memory, seeded subsample; and the total count."""
    from malvision.data.zips import ZipDataset

    zd = ZipDataset(path, label="malware", password="infected")
    try:
        idx = list(range(len(zd.records)))
        if limit and limit < len(idx):
            idx = sorted(random.Random(seed).sample(idx, limit))
        return [(zd.records[i].source, bytes(zd.open(i).read())) for i in idx], len(zd.records)
    finally:
        zd.close()


# -- ours --------------------------------------------------------------------------------------------------


def record(run: Run, results: list[Verdict | ScanError]) -> Run:
    for r in results:
        if isinstance(r, ScanError):
            run.verdicts[r.path] = "error"
        else:
            run.verdicts[r.path] = r.verdict
            if r.sha256:
                run.sha256[r.path] = r.sha256
    return run


def best_of(
    fn: Callable[[], list[Verdict | ScanError]], repeat: int
) -> tuple[float, list[Verdict | ScanError]]:
    best, results = float("inf"), []
    for _ in range(repeat):
        t = time.perf_counter()
        results = fn()
        best = min(best, time.perf_counter() - t)
    return best, results


def ours_scan(scanner: Scanner, paths: list[Path], size: int, config: str, pools: str, repeat: int) -> Run:
    """``Scanner.scan`` over the file list, fastest of ``repeat`` runs (the model is already loaded)."""
    with thread_pools(pools):
        seconds, results = best_of(lambda: list(scanner.scan([str(p) for p in paths])), repeat)
    return record(Run("malvision", config, pools, DISK, len(paths), size, seconds, load1()), results)


def ours_bytes(scanner: Scanner, entries: list[tuple[str, bytes]], pools: str, repeat: int) -> Run:
    """``Scanner.scan_bytes`` per in-memory entry (one file per batch), fastest of ``repeat`` runs."""
    with thread_pools(pools):
        seconds, results = best_of(lambda: [scanner.scan_bytes(n, d) for n, d in entries], repeat)
    size = sum(len(d) for _, d in entries)
    config = f"`Scanner.scan_bytes` per entry, {scanner.backend}, batch 1"
    return record(Run("malvision", config, pools, MEMORY, len(entries), size, seconds, load1()), results)


def median_time(fn: Callable[[], object], n: int) -> float:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def run_cli(cmd: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=TIMEOUT, check=False, env={**os.environ, **(env or {})}
    )
    if proc.returncode not in (0, 1):  # 0 clean, 1 malware found; 2 is an error
        raise SystemExit(f"{shlex.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return proc


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants (worker processes), from /proc."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def _status_kib(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def peak_rss(cmd: list[str], tmp: Path) -> tuple[float, float, float, str]:
    """Run ``cmd``: its own peak RSS and the peak of its process tree's summed RSS (MiB), wall seconds,
    stdout. Polled every 10 ms: the process's VmHWM, and VmRSS summed over it and its workers.

    ``Popen`` returns once the child has exec'd, so every reading is the fresh process's own memory.
    ``ru_maxrss`` would not do: Linux carries the parent's high-water mark into it across fork and exec.
    """
    out_path, err_path = tmp / "rss.out", tmp / "rss.err"
    peak_kib = tree_kib = 0
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        t = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err)
        while proc.poll() is None:
            peak_kib = max(peak_kib, _status_kib(proc.pid, "VmHWM:"))
            tree_kib = max(tree_kib, sum(_status_kib(p, "VmRSS:") for p in _tree(proc.pid)))
            if time.perf_counter() - t > TIMEOUT:
                proc.kill()
            time.sleep(0.01)
        seconds = time.perf_counter() - t
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{shlex.join(cmd)} failed ({proc.returncode}):\n{err_path.read_text()[-2000:]}")
    return peak_kib / 1024, max(tree_kib, peak_kib) / 1024, seconds, out_path.read_text()


# -- the peer ----------------------------------------------------------------------------------------------


def peer_driver(
    py: Path,
    tmp: Path,
    pools: str,
    paths: list[Path] | None = None,
    entries: list[tuple[str, bytes]] | None = None,
) -> dict[str, Any]:
    """Run the malvizv1 driver (one held session) over files on disk or in-memory entries; its JSON."""
    threads = ["--threads", "1"] if pools == "1 thread" else []
    if paths is not None:
        listing = tmp / "peer-paths.txt"
        listing.write_text("".join(f"{p}\n" for p in paths))
        cmd, stdin = [str(py), str(DRIVER), "--paths-file", str(listing), *threads], None
    else:
        assert entries is not None
        frames = bytearray()
        for name, data in entries:
            frames += f"{len(data)} {name}\n".encode() + data
        cmd, stdin = [str(py), str(DRIVER), "--frames", *threads], bytes(frames)
    env = {**os.environ, **(ONE_THREAD_ENV if pools == "1 thread" else {})}
    proc = subprocess.run(cmd, input=stdin, capture_output=True, timeout=TIMEOUT, check=False, env=env)
    if proc.returncode:
        raise SystemExit(f"malvizv1 driver failed:\n{proc.stderr.decode(errors='replace')[-2000:]}")
    return json.loads(proc.stdout)


def peer_run(outs: list[dict[str, Any]], inputs: str, pools: str) -> Run:
    best = min(outs, key=lambda o: o["seconds"])
    config = "one held ORT session, resnet18 224x224 RGB, batch 1"
    run = Run("malvizv1", config, pools, inputs, best["files"], best["bytes"], best["seconds"], load1())
    run.note = f"session load {best['session_seconds']:.2f} s, imports {best['import_seconds']:.2f} s"
    for rec in best["per_file"]:
        run.verdicts[rec["name"]] = rec.get("result", "error")
    return run


# -- report ------------------------------------------------------------------------------------------------


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    return [f"| {' | '.join(header)} |", f"|{'|'.join('---' for _ in header)}|"] + [
        f"| {' | '.join(r)} |" for r in rows
    ]


def throughput_rows(runs: list[Run]) -> list[list[str]]:
    peers = {(r.inputs, r.pools): r for r in runs if r.tool == "malvizv1"}
    rows = []
    for r in runs:
        peer = peers.get((r.inputs, r.pools))
        ratio, goal, met = "", "", ""
        if r.tool == "malvision" and peer is not None:
            x = peer.seconds / r.seconds
            ratio, goal = f"{x:.1f}x", f">= {GOAL_RATIO:.0f}x"
            met = "yes" if x >= GOAL_RATIO else "**no**"
        elif r.tool == "malvision":
            ratio = "peer skipped"
        rows.append([
            r.tool, r.config, r.pools, r.inputs, str(r.files), human_size(r.size), f"{r.seconds:.2f}",
            f"{r.files / r.seconds:,.1f}", f"{r.size / MB / r.seconds:,.1f}", ratio, goal, met,
            f"{r.load:.1f}", r.note,
        ])  # fmt: skip
    return rows


def agreement_rows(runs: list[Run], training: set[str]) -> list[list[str]]:
    rows = []
    for r in runs:
        c = Counter(r.verdicts.values())
        in_train = sum(1 for s in r.sha256.values() if s in training) if r.tool == "malvision" else None
        rows.append([
            r.inputs, r.tool, str(len(r.verdicts)), str(c["malware"]), str(c["benign"]),
            str(c["unknown"] + c["uncertain"]), str(c["error"]), "" if in_train is None else str(in_train),
        ])  # fmt: skip
    return rows


def overlap(ours: Run, peer: Run) -> str:
    def flagged(r: Run) -> set[str]:
        return {k for k, v in r.verdicts.items() if v == "malware"}

    a, b = flagged(ours), flagged(peer)
    return f"- {ours.inputs}: both flag {len(a & b)}; ours only {len(a - b)}; malvizv1 only {len(b - a)}."


def main() -> None:
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
        "--files", type=Path, default=PE_DIR, help="folder of real PE files (default: the benign corpus)"
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
    args = ap.parse_args()  # fmt: skip
    command = command_line()
    if not args.files.is_dir():
        raise SystemExit(f"error: {args.files}: no such folder; build the benign corpus with "
                         "`bash ../shared/tools/build_benign_corpus.sh` or pass --files DIR")  # fmt: skip
    load_start = loadavg()
    default_threads = torch.get_num_threads()

    try:
        t = time.perf_counter()
        base = Scanner(args.model, backend="torch", workers=2, threads=None)
        load_seconds = time.perf_counter() - t
    except MalvisionError as e:
        raise SystemExit(
            f"error: {e}\n  (no shipped model yet? pass --model PATH, e.g. --model /tmp/det1/model.pt)"
        ) from None
    # What `auto` picks in a fresh process (this one has torch loaded, which changes the choice).
    auto_backend = subprocess.run(
        [sys.executable, "-c", f"from malvision.scan import Scanner; print(Scanner({str(base.model_path)!r}).backend)"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    py = peer_python(args.malvizv1_python)
    card = base.card
    training = set(card.get("training_sha256", []))

    runs: list[Run] = []
    lat_rows: list[list[str]] = []
    rss_rows: list[list[str]] = []
    peer_versions: dict[str, str] = {}
    with tempfile.TemporaryDirectory(dir=args.tmp, prefix="malvision-scanbench-") as tmp_name:
        tmp = Path(tmp_name)
        paths, n_total = pick_benign(args.files, args.limit, args.seed)
        size = sum(p.stat().st_size for p in paths)
        print(f"{len(paths)} of {n_total} files, {human_size(size)}; warming the page cache", file=sys.stderr)
        warm(paths)

        # (1) throughput: ours per backend, pools and readers, then the peer per pools, same files
        backends: list[tuple[str, Path]] = [("torch", base.model_path)]
        if base.model_path.with_suffix(".onnx").is_file():
            backends.append(("onnx", base.model_path))
        elif args.export_onnx:
            from malvision.export import export_onnx

            copy = tmp / "onnx" / base.model_path.name
            copy.parent.mkdir()
            shutil.copyfile(base.model_path, copy)
            print("exporting a temporary ONNX copy", file=sys.stderr)
            export_onnx(copy)
            backends.append(("onnx", copy))
        for backend, model_path in backends:
            for pools in POOLS:
                for readers, workers in READERS:
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

                        scanner._onnx = OnnxModel(model_path.with_suffix(".onnx"), threads=1)
                    noun = readers if workers == 1 else {"thread": "threads", "process": "processes"}[readers]
                    config = f"`Scanner.scan`, {backend}, {workers} reader {noun}, batch 32"
                    note = ""
                    if readers == "process":  # start the workers first, as the peer's session is loaded first
                        t = time.perf_counter()
                        list(scanner.scan([str(p) for p in paths[: 2 * workers]]))
                        note = f"worker processes started before timing, in {time.perf_counter() - t:.2f} s"
                    print(f"ours: {config}, {pools}", file=sys.stderr)
                    runs.append(ours_scan(scanner, paths, size, config, pools, args.repeat))
                    runs[-1].note = note
                    scanner.close()
        # what an analyst sees: one fresh process, imports, model load and worker start included
        print("ours: fresh `malvision scan` process over the same files", file=sys.stderr)
        t = time.perf_counter()
        fresh = run_cli([str(MALVISION), "scan", "--json", "--model", str(args.model), *map(str, paths)])
        fresh_run = Run("malvision", "fresh `malvision scan FILES --json` process, defaults", "1 thread", DISK,
                        len(paths), size, time.perf_counter() - t, load1())  # fmt: skip
        for rec in json.loads(fresh.stdout):
            fresh_run.verdicts[rec["path"]] = rec["verdict"]
        fresh_run.note = "everything included: imports, model load, worker start, output"
        runs.append(fresh_run)
        if py is not None:
            for pools in POOLS:
                print(f"peer: malvizv1 driver, {pools}", file=sys.stderr)
                outs = [peer_driver(py, tmp, pools, paths=paths) for _ in range(args.repeat)]
                peer_versions = outs[0]["versions"]
                runs.append(peer_run(outs, DISK, pools))

        if args.malware_zip is not None:
            print(f"reading {args.malware_zip} into memory", file=sys.stderr)
            entries, _ = zip_entries(args.malware_zip, args.limit, args.seed)
            for pools in POOLS:
                print(f"ours and peer on the zip entries, {pools}", file=sys.stderr)
                runs.append(ours_bytes(base, entries, pools, args.repeat))
                if py is not None:
                    outs = [peer_driver(py, tmp, pools, entries=entries) for _ in range(args.repeat)]
                    runs.append(peer_run(outs, MEMORY, pools))
            del entries

        # (2) latency for one small file
        small = small_file(args.files)
        data = small.read_bytes()
        print("latency: cold and warm", file=sys.stderr)
        cold_cmd = [str(MALVISION), "scan", str(small), "--json", "--model", str(args.model)]
        for pools in POOLS:
            env = ONE_THREAD_ENV if pools == "1 thread" else None
            cold = median_time(lambda env=env: run_cli(cold_cmd, env), 3)
            how = f"backend auto (= {auto_backend})" + (", OMP/OPENBLAS_NUM_THREADS=1" if env else "")
            lat_rows.append(["malvision", "cold: fresh `malvision scan FILE --json` process", pools,
                             f"{cold * 1000:,.0f} ms", "3", f"imports + model load + scan; {how}"])  # fmt: skip
        for pools in POOLS:
            with thread_pools(pools):
                base.scan_bytes(small.name, data)  # warm-up
                warm_s = median_time(lambda: base.scan_bytes(small.name, data), 20)
            lat_rows.append(["malvision", "warm: `Scanner.scan_bytes`, model loaded", pools,
                             f"{warm_s * 1000:,.1f} ms", "20", "torch; bytes already in memory"])  # fmt: skip
        if py is not None:
            peer_cli = py.with_name("malvizv1")
            cmd = (
                [str(peer_cli), str(small)]
                if peer_cli.exists()
                else [str(py), "-m", "malvizv1.cli", str(small)]
            )
            cold_p = median_time(lambda: run_cli(cmd), 3)
            lat_rows.append(["malvizv1", "cold: fresh `malvizv1 FILE` process", "default", f"{cold_p * 1000:,.0f} ms",
                             "3", "its own CLI: imports + new session + scan (no thread option)"])  # fmt: skip
            for pools in POOLS:
                out = peer_driver(py, tmp, pools, paths=[small] * 21)
                warm_p = statistics.median(r["seconds"] for r in out["per_file"][1:])
                lat_rows.append(["malvizv1", "warm: held session, one file", pools, f"{warm_p * 1000:,.1f} ms",
                                 "20", "reads the file (page cache) each time; first call dropped"])  # fmt: skip

        # (3) peak RSS of a fresh `malvision scan` on a folder with a sparse file and a few real PEs
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
        for pool in ("--no-processes", "--processes"):
            rss_cmd = [str(MALVISION), "scan", str(folder), "--json", "--model", str(args.model), pool]
            peak_mb, tree_mb, rss_seconds, rss_out = peak_rss(rss_cmd, tmp)
            sv = next((r for r in json.loads(rss_out) if r["path"].endswith("sparse.bin")), {})
            met = "yes" if tree_mb * 1024**2 / MB < GOAL_RSS_MB else "**no**"
            rss_rows.append([
                "malvision", f"fresh `malvision scan DIR --json {pool}`: {human_size(sparse.stat().st_size)} "
                f"sparse file + {len(list(folder.iterdir())) - 1} real PEs", human_size(folder_size),
                f"{peak_mb:,.0f} MiB", f"{tree_mb:,.0f} MiB", f"{rss_seconds:.1f}", f"< {GOAL_RSS_MB:.0f} MB", met,
                f"sparse file: {sv.get('verdict')} ({sv.get('reason')}); default pools",
            ])  # fmt: skip
        rss_rows.append([
            "malvizv1", "not run on the sparse file", "", "", "", "", "", "",
            "by its code it reads the whole file, then makes a PIL image and an RGB copy: ~5x the file in RAM",
        ])  # fmt: skip

    # our configurations on the same files should agree; agreement uses the first of each tool
    ours_disk = [r for r in runs if r.tool == "malvision" and r.inputs == DISK]
    diff = sum(
        1 for k, v in ours_disk[0].verdicts.items() if any(o.verdicts.get(k) != v for o in ours_disk[1:])
    )
    firsts: dict[tuple[str, str], Run] = {}
    for r in runs:
        firsts.setdefault((r.tool, r.inputs), r)
    agree = list(firsts.values())
    both = [
        overlap(firsts[("malvision", inputs)], firsts[("malvizv1", inputs)])
        for inputs in (DISK, MEMORY)
        if ("malvision", inputs) in firsts and ("malvizv1", inputs) in firsts
    ]

    spec = base.spec
    model_input = (
        f"{spec.kind} {spec.image_size}x{spec.image_size}"
        if spec.kind == "image"
        else f"{spec.kind}, max_len {spec.max_len}"
    )
    try:
        import onnxruntime

        ort_version = onnxruntime.__version__
    except ImportError:
        ort_version = "not installed"
    peer_line = (
        f"- peer: malvizv1 {peer_versions.get('malvizv1')} (onnxruntime {peer_versions.get('onnxruntime')}, "
        f"Pillow {peer_versions.get('pillow')}, numpy {peer_versions.get('numpy')}) from `{py}`; "
        "benchmarks/_malvizv1_driver.py holds one ONNX Runtime session and runs its "
        "`pe_file_to_image_dynamic` + `preprocess_image` + `session.run` + softmax per file; "
        "its verdict rule: top class below 0.90 confidence is `uncertain`"
        if py is not None
        else f"- peer: **skipped**, malvizv1 not found (make its venv: `{PEER_RECIPE}`)"
    )
    lines = [
        "# Scan benchmark: malvision vs malvizv1",
        "",
        f"- command: `{command}` (from the repository root)",
        f"- date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- CPU: {cpu_model()}, {os.cpu_count()} cores ({len(os.sched_getaffinity(0))} usable); "
        f"load average at the start: {load_start}, at the end: {loadavg()} (a shared machine)",
        f"- malvision {malvision.__version__}, Python {platform.python_version()}, torch {torch.__version__} "
        f"({default_threads} threads by default), onnxruntime {ort_version}, numpy {np.__version__}",
        peer_line,
        f"- model: `{base.model_path}` ({card.get('architecture', '?')}, input {model_input}, "
        f"classes {', '.join(base.classes)}), threshold {base.threshold:.9g} from its card "
        f"(target FPR {card.get('target_fpr', '?')}); loaded in {load_seconds:.2f} s (not in the timings)",
        f"- inputs: {len(paths)} of the {n_total} files in `{args.files}` (seeded subsample, seed {args.seed}), "
        f"{human_size(size)}; page cache warmed by reading every file once before any timing",
        "- pools: `default` leaves every thread pool as the library sets it; `1 thread` caps torch, OpenMP "
        "and OpenBLAS (threadpoolctl) and ONNX Runtime's intra-op pool at one thread, for both tools "
        "(ours: Scanner(threads=None) with the pools set by this script, and an `OnnxModel(threads=1)` session for ONNX; `malvision scan` itself runs as `1 thread`, its default `--threads 1`)",
        "",
        "## Throughput",
        "",
        "Wall time of the scan loop only (model and session already loaded; reader processes started), "
        "except the fresh-process row, which includes everything; fastest of "
        f"{args.repeat} run(s); MB/s is 10^6 input bytes per second; `vs malvizv1` is its time / ours on the "
        "same files with the same pools; `load` is the 1-minute load average right after the row.",
        "",
        *table(
            [
                "tool",
                "configuration",
                "pools",
                "input",
                "files",
                "size",
                "seconds",
                "files/s",
                "MB/s",
                "vs malvizv1",
                "goal",
                "met",
                "load",
                "note",
            ],
            throughput_rows(runs),
        ),  # fmt: skip
        "",
        f"Our {len(ours_disk)} configurations on the same files gave "
        + ("identical verdicts." if diff == 0 else f"different verdicts on {diff} file(s)."),
        "",
        f"## Latency, one small file (`{small.name[:16]}…`, {human_size(small.stat().st_size)})",
        "",
        *table(["tool", "measure", "pools", "median", "runs", "note"], lat_rows),
        "",
        "## Peak RSS",
        "",
        "`peak RSS`: VmHWM of the fresh process, polled from /proc/<pid>/status every 10 ms (not "
        "`ru_maxrss`, which carries the parent's peak over fork and exec). `tree`: the peak of VmRSS summed "
        "over the process and its worker processes, polled the same way; the goal applies to it.",
        "",
        *table(["tool", "run", "size", "peak RSS", "tree", "seconds", "goal", "met", "note"], rss_rows),
        "",
        "## Agreement",
        "",
        f"Files each tool calls malware: ours at the card threshold ({base.threshold:.9g}; `unknown` is "
        "triage refusing a file), the peer when its result is `malware` (`uncertain` is below 0.90). "
        "`in training set` counts our inputs whose sha256 is in the model card's training list: "
        "verdicts on those are not held-out numbers.",
        "",
        *table(
            [
                "input",
                "tool",
                "files",
                "malware",
                "benign",
                "unknown / uncertain",
                "errors",
                "in training set",
            ],
            agreement_rows(agree, training),
        ),
        "",
        *both,
        "",
        "Not like for like: the two tools use different models (ours: the checkpoint above; malvizv1: "
        "resnet18 on 224x224 RGB ImageNet-normalised images), so the speed ratio is partly a model-size ratio.",
    ]
    text = "\n".join(lines) + "\n"
    write_report(text, args.out)


if __name__ == "__main__":
    main()
