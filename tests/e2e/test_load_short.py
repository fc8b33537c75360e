"""The load benchmark in short: a real `malvision serve` on loopback under concurrent uploads for a few
seconds keeps 0 errors and does not grow without bound (benchmarks/load.py runs the long form)."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import numpy as np
import pytest

LOAD = Path(__file__).resolve().parents[2] / "benchmarks" / "load.py"


def _load_module():
    spec = importlib.util.spec_from_file_location("malvision_load_benchmark", LOAD)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.slow
def test_concurrent_uploads_keep_zero_errors(
    tiny_detector: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(0)
    files = tmp_path / "files"
    files.mkdir()
    for i in range(6):  # PE-looking inputs of a few sizes (only bytes: nothing is run)
        body = rng.integers(0, 256, int(rng.integers(20_000, 200_000)), dtype=np.uint8).tobytes()
        (files / f"f{i}.bin").write_bytes(b"MZ" + body)
    monkeypatch.syspath_prepend(str(LOAD.parent))  # load.py imports benchmarks/_machine.py
    load = _load_module()
    args = argparse.Namespace(
        clients=4, duration=4.0, endpoint="scan", model=str(tiny_detector), files=files,
        max_file_size=2 * 1024**2, max_concurrent=2, queue=8, timeout=30.0, seed=0,
    )  # fmt: skip
    r = load.run(args)
    assert r["ok"] > 0
    assert r["errors"] == {}
    rss_start, rss_peak, rss_end = r["rss"]
    assert rss_end < rss_start + 200 * 1024**2  # bounded: no per-request leak of uploads
