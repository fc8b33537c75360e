"""How benchmarks/scan.py measures: thread pools, timing, our ``Scanner`` runs, commands and peak RSS."""

from __future__ import annotations

import os
import shlex
import statistics
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from _scan_common import DISK, MEMORY, TIMEOUT, Run, load1  # benchmarks/ is on sys.path when a script runs
from threadpoolctl import threadpool_limits

from malvision.scan import ScanError, Scanner, Verdict


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


def record(run: Run, results: list[Verdict | ScanError]) -> Run:
    """Note each result's verdict (or ``error``) and sha256 in ``run``; the run."""
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
    """The fastest of ``repeat`` calls of ``fn`` in seconds, and the last call's results."""
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
    """The median wall time of ``n`` calls of ``fn``, in seconds."""
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def run_cli(cmd: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run a scanner's command line with ``env`` added; exit on anything but clean (0) or malware (1)."""
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
    """The KiB value of ``key`` (``VmHWM:``, ``VmRSS:``) in /proc/<pid>/status; 0 when gone."""
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
