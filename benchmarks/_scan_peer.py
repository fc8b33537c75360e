"""The peer tool malvizv1 in benchmarks/scan.py: finding its venv and running its driver."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from _scan_common import (  # benchmarks/ is on sys.path when a script runs
    ONE_THREAD_ENV,
    PEER_PYTHON,
    PEER_RECIPE,
    TIMEOUT,
    Run,
    load1,
)

DRIVER = Path(__file__).resolve().with_name("_malvizv1_driver.py")


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
    """The fastest of the driver's outputs as a ``Run``, with its session-load and import times."""
    best = min(outs, key=lambda o: o["seconds"])
    config = "one held ORT session, resnet18 224x224 RGB, batch 1"
    run = Run("malvizv1", config, pools, inputs, best["files"], best["bytes"], best["seconds"], load1())
    run.note = f"session load {best['session_seconds']:.2f} s, imports {best['import_seconds']:.2f} s"
    for rec in best["per_file"]:
        run.verdicts[rec["name"]] = rec.get("result", "error")
    return run
