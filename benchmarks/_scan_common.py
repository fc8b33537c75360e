"""What every step of benchmarks/scan.py shares: its settings, the ``Run`` record and the load average."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

MALVISION = Path(sys.executable).with_name("malvision")
PEER_PYTHON = Path("/tmp/mz/venv/bin/python")
PEER_RECIPE = "python3 -m venv /tmp/mz/venv && /tmp/mz/venv/bin/pip install malvizv1==0.1.0"
GOAL_RATIO = 10.0
GOAL_RSS_MB = 500.0
MB = 1e6  # throughput in 10^6 bytes per second; sizes in KiB/MiB/GiB
TIMEOUT = 600.0
DISK = "benign PE, on disk"
MEMORY = "malware zip entries, in memory"
POOLS = ("default", "1 thread")  # thread-pool settings every tool is run with
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


def load1() -> float:
    """The 1-minute load average."""
    return os.getloadavg()[0]


def loadavg() -> str:
    """The 1-, 5- and 15-minute load averages, for the report."""
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())
