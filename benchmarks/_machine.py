"""What the benchmarks share: the machine they ran on, and where their reports go."""

from __future__ import annotations

import os
import platform
import shlex
import sys
from pathlib import Path


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (platform's guess elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def command_line() -> str:
    """The command that is running, to record beside its figures: the interpreter relative to the
    repository when it lives there (``.venv/bin/python``), then the script and its arguments, paths
    below the home folder written from ``~`` (``~/.cache/malvision/...``, not one machine's home)."""
    root = Path(__file__).resolve().parent.parent
    exe = sys.executable
    if Path(exe).is_relative_to(root):
        exe = os.path.relpath(exe, root)
    return shlex.join([exe, *sys.argv]).replace(str(Path.home()), "~")


def write_report(text: str, out: Path) -> None:
    """Print a benchmark's Markdown report and write it to ``out`` (results/<name>.md)."""
    from malvision.io import atomic_writer

    print(text)
    with atomic_writer(out) as f:
        f.write(text.encode())
    print(f"wrote {out}", file=sys.stderr)
