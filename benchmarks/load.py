"""HTTP load, run on demand (not in CI): N concurrent clients against ``malvision serve`` for T seconds.

Starts the server on 127.0.0.1 (a subprocess, ``malvision serve``), lets ``--clients`` threads POST
files to ``/v1/scan`` (or ``/v1/explain``) back to back for ``--duration`` seconds, and reports
requests/s, p50/p99 latency, errors by status and the server's RSS at start, peak and end (psutil).
Prints a Markdown table and writes it to benchmarks/results/load.md.

Files: ``--files DIR`` (every file up to ``--max-file-size``), else up to 64 benign PEs of the corpus at
~/.cache/malvision/benign/pe (seeded pick), else generated PE-shaped files. Model: ``--model``, else the
bundled default, else a fresh untrained ``cnn`` on 64x64 images (same compute as a trained one).

    .venv/bin/python benchmarks/load.py --clients 8 --duration 20
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shlex
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
import psutil
from _corpus import BENIGN_PE
from _machine import cpu_model, write_report  # benchmarks/ is on sys.path when a script runs

ROOT = Path(__file__).resolve().parent.parent
MALVISION = Path(sys.executable).with_name("malvision")
MAX_DURATION = 600.0


def synthetic_pe(size: int, seed: int) -> bytes:
    """A PE32 with one .text section of code-like bytes, ``size`` bytes long (rounded to 0x200)."""
    rng = random.Random(seed)
    n = max(0x200, (size - 0x400) // 0x200 * 0x200)
    ops = [0x55, 0x89, 0xE5, 0x8B, 0x45, 0x08, 0x83, 0xEC, 0x50, 0x6A, 0x00, 0xE8, 0xC3, 0x90, 0x31, 0xC0]
    text = bytes(rng.choice(ops) for _ in range(n))
    dos = bytearray(0x40)
    dos[0:2] = b"MZ"
    struct.pack_into("<I", dos, 0x3C, 0x40)
    coff = struct.pack("<HHIIIHH", 0x14C, 1, 0, 0, 0, 224, 0x0102)
    opt = struct.pack(
        "<HBBIIIIIIIIIHHHHHHIIIIHHIIIIII",
        0x10B, 14, 0, n, 0, 0, 0x1000, 0x1000, 0, 0x400000, 0x1000, 0x200,
        6, 0, 0, 0, 6, 0, 0, 0x1000 + n, 0x400, 0, 2, 0, 0x100000, 0x1000, 0x100000, 0x1000, 0, 16,
    ) + bytes(16 * 8)  # fmt: skip
    sec = struct.pack("<8sIIIIIIHHI", b".text", n, 0x1000, n, 0x400, 0, 0, 0, 0, 0x60000020)
    return (bytes(dos) + b"PE\0\0" + coff + opt + sec).ljust(0x400, b"\0") + text


def pick_files(folder: Path | None, max_size: int, seed: int) -> tuple[list[tuple[str, bytes]], str]:
    """(name, bytes) of the inputs and a description of where they came from."""
    if folder is None and BENIGN_PE.is_dir():
        folder = BENIGN_PE
    if folder is not None:
        paths = sorted(p for p in folder.iterdir() if p.is_file() and 0 < p.stat().st_size <= max_size)
        random.Random(seed).shuffle(paths)
        paths = paths[:64]
        if paths:
            where = "benign PE corpus" if folder == BENIGN_PE else str(folder)
            return [(p.name[:16], p.read_bytes()) for p in paths], f"{len(paths)} files from {where}"
    files = [(f"synthetic-{i}.exe", synthetic_pe(64 * 1024 * (1 + i % 8), i)) for i in range(32)]
    return files, "32 generated PE files (64-512 KiB)"


def make_model(out: Path) -> tuple[str, str]:
    """The bundled default model if installed, else a fresh untrained cnn (64x64 images)."""
    from malvision.bundled import resolve_checkpoint
    from malvision.errors import CheckpointError

    try:
        return str(resolve_checkpoint("default")), "bundled default"
    except CheckpointError:
        pass
    import torch

    from malvision.checkpoint import save_checkpoint
    from malvision.convert.spec import ConvertSpec
    from malvision.models import create_model

    torch.manual_seed(0)
    model = create_model("cnn", in_kind="image", n_classes=2)
    path = save_checkpoint(
        out / "untrained-cnn.pt", model, model_name="cnn", model_kwargs={}, in_kind="image", n_classes=2,
        vocab_size=None, spec=ConvertSpec(kind="image", image_size=64).to_dict(), classes=["benign", "malware"],
        seed=0, manifest_hash=None,
    )  # fmt: skip
    return str(path), "untrained cnn, 64x64 image input (no bundled model installed)"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(args: argparse.Namespace) -> dict:
    files, files_desc = pick_files(args.files, args.max_file_size, args.seed)
    tmp = Path(tempfile.mkdtemp(prefix="malvision-load-"))
    model, model_desc = (args.model, args.model) if args.model else make_model(tmp)
    port = free_port()
    cmd = [
        str(MALVISION), "serve", "--port", str(port), "--model", model, "--max-concurrent", str(args.max_concurrent),
        "--queue", str(args.queue), "--timeout", str(args.timeout),
    ]  # fmt: skip
    log = (tmp / "server.log").open("wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"server exited: {(tmp / 'server.log').read_text()[-2000:]}")
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("server did not start in 120 s")
            time.sleep(0.2)
        server = psutil.Process(proc.pid)
        rss_start = server.memory_info().rss
        cpu_start = server.cpu_times()
        latencies: list[float] = []
        statuses: Counter[str] = Counter()
        lock = threading.Lock()
        duration = min(args.duration, MAX_DURATION)
        start = time.monotonic()
        stop_at = start + duration
        peak = [rss_start]

        def client(k: int) -> None:
            i = k
            with httpx.Client(base_url=url, timeout=args.timeout + 10) as c:
                while time.monotonic() < stop_at:
                    name, data = files[i % len(files)]
                    i += args.clients
                    field = "file" if args.endpoint == "explain" else "files"
                    t0 = time.perf_counter()
                    try:
                        r = c.post(f"/v1/{args.endpoint}", files={field: (name, data)})
                        status = str(r.status_code)
                    except httpx.HTTPError as e:
                        status = type(e).__name__
                    dt = time.perf_counter() - t0
                    with lock:
                        statuses[status] += 1
                        if status == "200":
                            latencies.append(dt)

        def sample_rss() -> None:
            while time.monotonic() < stop_at:
                peak[0] = max(peak[0], server.memory_info().rss)
                time.sleep(0.25)

        threads = [threading.Thread(target=client, args=(k,)) for k in range(args.clients)]
        threads.append(threading.Thread(target=sample_rss))
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - start
        rss_end = server.memory_info().rss
        cpu_end = server.cpu_times()
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)  # the generated model and the server's log
    lat = np.array(latencies) * 1000
    ok = statuses.get("200", 0)
    sizes = [len(d) for _, d in files]
    return {
        "elapsed": elapsed,
        "ok": ok,
        "rps": ok / elapsed,
        "p50": float(np.percentile(lat, 50)) if ok else float("nan"),
        "p99": float(np.percentile(lat, 99)) if ok else float("nan"),
        "mean_mb": np.mean(sizes) / 1e6,
        "errors": {k: v for k, v in statuses.items() if k != "200"},
        "rss": (rss_start, peak[0], rss_end),
        "cpu_s": (cpu_end.user + cpu_end.system) - (cpu_start.user + cpu_start.system),
        "files": files_desc,
        "model": model_desc,
        "cmd": cmd,
    }


def report(args: argparse.Namespace, r: dict) -> str:
    mib = 1024**2
    errors = ", ".join(f"{k}: {v}" for k, v in sorted(r["errors"].items())) or "none"
    try:
        import torch

        torch_v = torch.__version__
    except ImportError:
        torch_v = "?"
    lines = [
        "# HTTP load benchmark",
        "",
        f"- command: `{shlex.join([sys.executable.replace(str(ROOT) + '/', ''), *sys.argv])}` (from the repository root)",
        f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"- machine: {cpu_model()}, {os.cpu_count()} cores; load average at the end: "
        + ", ".join(f"{x:.2f}" for x in os.getloadavg()),
        f"- Python {platform.python_version()}, torch {torch_v}",
        f"- server: `malvision serve --max-concurrent {args.max_concurrent} --queue {args.queue} "
        f"--timeout {args.timeout:g}` on 127.0.0.1; model: {r['model']}",
        f"- inputs: {r['files']}, mean {r['mean_mb']:.2f} MB; endpoint `POST /v1/{args.endpoint}`, one file a request",
        "",
        "| clients | seconds | requests ok | requests/s | p50 latency | p99 latency | errors | server CPU | RSS start | RSS peak | RSS end |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        f"| {args.clients} | {r['elapsed']:.1f} | {r['ok']} | {r['rps']:.1f} | {r['p50']:.0f} ms | {r['p99']:.0f} ms "
        f"| {errors} | {r['cpu_s']:.1f} s | {r['rss'][0] / mib:.0f} MiB | {r['rss'][1] / mib:.0f} MiB "
        f"| {r['rss'][2] / mib:.0f} MiB |",
        "",
        "Latency is per request as the client saw it (upload + queue + read + convert + inference), "
        "successful requests only; 503 means the queue was full (shed load), not a failure. "
        "Server CPU is user + system seconds of the server process over the run.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--duration", type=float, default=20.0, help=f"seconds (at most {MAX_DURATION:g})")
    ap.add_argument("--endpoint", choices=("scan", "explain"), default="scan")
    ap.add_argument("--model", help="model reference (default: bundled default, else an untrained cnn)")
    ap.add_argument("--files", type=Path, help="folder of input files (default: the benign PE corpus)")
    ap.add_argument("--max-file-size", type=int, default=2 * 1024**2)
    ap.add_argument("--max-concurrent", type=int, default=2)
    ap.add_argument("--queue", type=int, default=8)
    ap.add_argument("--timeout", type=float, default=30.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "load.md")
    args = ap.parse_args()
    text = report(args, run(args))
    write_report(text, args.out)


if __name__ == "__main__":
    main()
