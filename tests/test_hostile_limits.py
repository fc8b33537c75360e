"""Huge and endless inputs: memory stays flat, limits hold, and an interrupted run leaves nothing half done.

Peak memory is the child's own ``VmHWM`` from /proc/self/status, read at exit: ``ru_maxrss`` would carry
the parent's (pytest's) high-water mark across fork and exec.
"""

# ruff: noqa: F811  (pytest fixtures imported from corpus.harness are redefined as arguments)
from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import time
import tracemalloc
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from corpus import make_checkpoint, make_sparse, make_zip_bomb, make_zips, minimal_pe
from corpus.harness import MALVISION, call_main, check_run, cli_env, detector, error_lines  # noqa: F401
from malvision.convert.spec import MAX_IMAGE_SIZE, ConvertSpec
from malvision.data.zips import ZipDataset
from malvision.errors import ConversionError, DatasetError
from malvision.io import MemorySource
from malvision.scan import Scanner

GiB = 1024**3
MiB = 1024**2
PEAK_LIMIT_KB = 500 * 1024

# Runs the real CLI and reports the process's own peak resident memory on stderr at exit.
_PEAK_WRAPPER = """
import atexit, sys
def _peak():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                sys.stderr.write(f"VmHWM {line.split()[1]}\\n")
atexit.register(_peak)
from malvision.cli import main
sys.argv = ["malvision", *sys.argv[1:]]
main()
"""


def run_measured(*args: str | Path, env: dict[str, str], timeout: float = 300) -> tuple[int, str, str, int]:
    """(exit code, stdout, stderr, peak RSS in kB) of ``malvision ARGS`` in a fresh process."""
    proc = subprocess.run(
        [sys.executable, "-c", _PEAK_WRAPPER, *map(str, args)],
        capture_output=True,
        timeout=timeout,
        env={**os.environ, **env},
        check=False,
    )
    stderr = proc.stderr.decode(errors="backslashreplace")
    peaks = [int(line.split()[1]) for line in stderr.splitlines() if line.startswith("VmHWM ")]
    assert peaks, stderr
    return proc.returncode, proc.stdout.decode(errors="backslashreplace"), stderr, peaks[-1]


def png_is_complete(path: Path, width: int, height: int) -> bool:
    """Every chunk's CRC holds, IEND ends it, and the image data inflates to exactly height rows."""
    inflate = zlib.decompressobj()
    raw = 0
    with open(path, "rb") as f:
        if f.read(8) != b"\x89PNG\r\n\x1a\n":
            return False
        while True:
            head = f.read(8)
            if len(head) < 8:
                return False
            n, kind = struct.unpack(">I4s", head)
            payload = f.read(n)
            (crc,) = struct.unpack(">I", f.read(4) or b"\0\0\0\0")
            if len(payload) != n or zlib.crc32(payload, zlib.crc32(kind)) != crc:
                return False
            if kind == b"IHDR" and struct.unpack(">II", payload[:8]) != (width, height):
                return False
            if kind == b"IDAT":
                raw += len(inflate.decompress(payload))
            if kind == b"IEND":
                raw += len(inflate.flush())
                return inflate.eof and raw == height * (width + 1) and f.read(1) == b""


# ------------------------------------------------------------------------------------- a 4 GB file


@pytest.fixture(scope="module")
def sparse_4g(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 GiB that takes no disk: zeros behind a real PE header."""
    path = make_sparse(tmp_path_factory.mktemp("big") / "huge.exe", 4 * GiB)
    with open(path, "r+b") as f:
        f.write(minimal_pe())
    return path


@pytest.mark.slow
def test_scanning_a_4gb_file_keeps_memory_flat(
    sparse_4g: Path, detector: Path, tmp_path: Path, cli_env: dict[str, str]
) -> None:
    code, out, err, peak = run_measured("scan", "-m", detector, "--csv", sparse_4g, env=cli_env)
    assert code == 0, err
    assert "unknown" in out and "near-constant" in out
    assert peak < PEAK_LIMIT_KB, f"peak RSS {peak / 1024:.0f} MiB"
    print(f"scan 4 GiB: peak RSS {peak / 1024:.0f} MiB")

    opcodes = make_checkpoint(tmp_path / "opcodes.pt", kind="opcodes")  # keeps a prefix, not the file
    code, out, err, peak = run_measured("scan", "-m", opcodes, "--csv", sparse_4g, env=cli_env)
    assert code == 0, err
    assert peak < PEAK_LIMIT_KB, f"opcode model: peak RSS {peak / 1024:.0f} MiB"
    print(f"scan 4 GiB (opcode model): peak RSS {peak / 1024:.0f} MiB")


@pytest.mark.slow
def test_converting_a_4gb_file_keeps_memory_flat(
    sparse_4g: Path, tmp_path: Path, cli_env: dict[str, str]
) -> None:
    out = tmp_path / "out"
    code, _, err, peak = run_measured("convert", sparse_4g, "-o", out, env=cli_env)
    assert code == 0, err
    assert peak < PEAK_LIMIT_KB, f"peak RSS {peak / 1024:.0f} MiB"
    assert png_is_complete(out / "huge.exe.png", 1024, 4 * GiB // 1024)
    print(f"convert 4 GiB: peak RSS {peak / 1024:.0f} MiB")


def test_max_size_refuses_big_inputs_before_reading_them(
    tmp_path: Path, detector: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    big = make_sparse(tmp_path / "big.bin", 3 * GiB)
    t = time.monotonic()
    run = call_main(["scan", "-m", str(detector), "--max-size", "1G", str(big)], capsys)
    assert check_run(run, [2], errors=1) == [
        f"error: {big}: 3.0 GiB is over the 1.0 GiB size limit (raise it with --max-size)"
    ]
    run = call_main(["convert", str(big), "-o", str(tmp_path / "out"), "--max-size", "2G"], capsys)
    assert check_run(run, [2], errors=1)[0].endswith(
        "3.0 GiB is over the 2.0 GiB size limit (raise it with --max-size)"
    )
    assert time.monotonic() - t < 30  # refused from its size: 3 GiB was never read


# ------------------------------------------------------------------------------------- interrupts


@pytest.fixture
def many_big(tmp_path: Path) -> Path:
    """60 sparse files of 128 MiB: seconds of work, none of it on disk."""
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(60):
        make_sparse(folder / f"f{i:02d}.bin", 128 * MiB, tail=os.urandom(64))
    return folder


Ready = Callable[[subprocess.Popen[bytes]], bool]


def _interrupt(args: list[str | Path], sig: int, ready: Ready, env: dict[str, str]) -> tuple[int, str, float]:
    assert MALVISION is not None
    proc = subprocess.Popen(
        [MALVISION, *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, **env, "PYTHONUNBUFFERED": "1"},
    )
    try:
        deadline = time.monotonic() + 60
        while not ready(proc) and time.monotonic() < deadline:
            assert proc.poll() is None, "finished before it could be interrupted"
            time.sleep(0.05)
        proc.send_signal(sig)
        t = time.monotonic()
        _, err = proc.communicate(timeout=30)
        return proc.returncode, err.decode(errors="backslashreplace"), time.monotonic() - t
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.slow
def test_interrupted_convert_leaves_only_whole_pngs(
    many_big: Path, tmp_path: Path, sig: int, cli_env: dict[str, str]
) -> None:
    out = tmp_path / "out"

    def started(_: subprocess.Popen[bytes]) -> bool:
        return out.is_dir() and any(p.suffix == ".png" for p in out.iterdir())

    code, err, took = _interrupt(["convert", many_big, "-o", out], sig, started, cli_env)
    assert code == 130, err
    assert error_lines(err) == ["error: interrupted"], err
    assert "Traceback" not in err
    assert took < 10
    files = list(out.iterdir())
    assert not [p for p in files if not p.name.endswith(".png")], files  # no .part left behind
    assert 1 <= len(files) < 60
    for png in files:
        assert png_is_complete(png, 1024, 128 * MiB // 1024), png


@pytest.mark.parametrize("pool", ["--no-processes", "--processes"])
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.slow
def test_interrupted_scan_stops_promptly_with_one_line(
    many_big: Path, detector: Path, sig: int, pool: str, cli_env: dict[str, str]
) -> None:
    started_at = time.monotonic()
    code, err, took = _interrupt(
        ["scan", "-m", detector, "--csv", "--workers", "2", pool, many_big], sig, _header_seen(0.3), cli_env
    )
    assert code == 130, err
    assert error_lines(err) == ["error: interrupted"], err
    assert "Traceback" not in err
    assert took < 5, f"took {took:.1f} s to stop (queued files must be dropped, readers stopped)"
    assert time.monotonic() - started_at < 60


def _header_seen(delay: float) -> Ready:
    """Ready once the CSV header is out (the model is loaded; stdout is unbuffered), plus ``delay`` s."""
    seen = bytearray()

    def check(proc: subprocess.Popen[bytes]) -> bool:
        assert proc.stdout is not None
        os.set_blocking(proc.stdout.fileno(), False)
        chunk = proc.stdout.read()
        if chunk:
            seen.extend(chunk)
        if b"path,sha256" not in seen:
            return False
        time.sleep(delay)  # let some reads begin
        return True

    return check


# --------------------------------------------------------------------------------------- zip limits


def test_zip_entry_count_ratio_and_size_limits(tmp_path: Path) -> None:
    zips = make_zips(tmp_path / "zips")
    with pytest.raises(DatasetError, match="300 entries, over the 100 entry limit"):
        ZipDataset(zips["many_entries"], label="x", password=None, max_entries=100)
    assert len(ZipDataset(zips["many_entries"], label="x", password=None)) == 300

    bomb = make_zip_bomb(tmp_path / "bomb.zip", size=8 * MiB)  # ~1030:1
    ok = ZipDataset(bomb, label="x", password=None)
    assert len(ok) == 1 and not ok.skipped
    with pytest.raises(
        DatasetError, match="no samples found.*compression ratio 10[0-9][0-9]:1 looks like a zip bomb"
    ):
        ZipDataset(bomb, label="x", password=None, max_ratio=200)
    with pytest.raises(DatasetError, match="8.0 MiB is over the 1.0 MiB entry size limit"):
        ZipDataset(bomb, label="x", password=None, max_entry_size=MiB)
    with pytest.raises(DatasetError, match="over the 4.0 MiB limit \\(a zip bomb\\?\\)"):
        ZipDataset(
            make_zip_bomb(tmp_path / "b3.zip", size=2 * MiB, entries=3),
            label="x",
            password=None,
            max_total_size=4 * MiB,
        )


@pytest.mark.slow
def test_a_1gb_zip_bomb_costs_its_size_once_and_max_size_refuses_it(
    tmp_path: Path, detector: Path, cli_env: dict[str, str]
) -> None:
    """1,000 MiB of zeros in a 1 MB zip: held once in memory (not twice), or refused by --max-size."""
    bomb = make_zip_bomb(tmp_path / "bomb.zip")
    assert bomb.stat().st_size < 1_100_000
    args = ("scan", "-m", detector, "--csv", "--zip-password", "infected")
    code, out, err, peak = run_measured(*args, bomb, env=cli_env)
    assert code == 0 and "near-constant" in out, err
    assert peak < 1000 * 1024 + PEAK_LIMIT_KB, f"peak RSS {peak / 1024:.0f} MiB"
    print(f"scan of a 1000 MiB zip entry: peak RSS {peak / 1024:.0f} MiB")
    code, out, err, peak = run_measured(*args, "--max-size", "100M", bomb, env=cli_env)
    assert code == 2 and "over the 100.0 MiB entry size limit" in err
    assert peak < PEAK_LIMIT_KB


def test_lying_zip_headers_cost_no_memory(tmp_path: Path) -> None:
    """Declared sizes that lie either way: a one-line error, and memory follows the real bytes."""
    small_claim = make_zip_bomb(tmp_path / "small_claim.zip", size=64 * MiB, declared=1000)
    with (
        ZipDataset(small_claim, label="x", password=None) as zd,
        pytest.raises(DatasetError, match="Bad CRC-32"),
    ):
        zd.open(0)
    big_claim = make_zip_bomb(tmp_path / "big_claim.zip", size=2 * MiB, declared=1000 * MiB)
    with pytest.raises(DatasetError, match="compression ratio 5[0-9]{5}:1 looks like a zip bomb"):
        ZipDataset(big_claim, label="x", password=None)
    with ZipDataset(big_claim, label="x", password=None, max_ratio=float("inf")) as zd:
        tracemalloc.start()
        try:
            with pytest.raises(DatasetError, match="header says 1048576000"):
                zd.open(0)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 64 * MiB, f"a header's claim of 1000 MiB cost {peak / MiB:.0f} MiB"


# --------------------------------------------------------------------------- sequence and image size


def test_sequence_models_read_only_max_len(tmp_path: Path) -> None:
    bytes_model = Scanner(make_checkpoint(tmp_path / "bytes.pt", kind="bytes", max_len=4096), backend="torch")
    pe = minimal_pe(text_size=0x20000)
    p = bytes_model.prepare(MemorySource.of("pe", pe))
    assert p.reason is None and p.x is not None and len(p.x) == 4096
    assert np.array_equal(p.x, np.frombuffer(pe[:4096], dtype=np.uint8).astype(np.uint16) + 1)

    opcodes = Scanner(make_checkpoint(tmp_path / "op.pt", kind="opcodes", max_len=100), backend="torch")
    text = b"push\nmov\ncall\n" * 200_000  # 2.6 MB of opcodes for a 100-token model
    p = opcodes.prepare(MemorySource.of("ops", text))
    assert p.reason is None and p.x is not None and len(p.x) == 100
    p = opcodes.prepare(MemorySource.of("ops", text + "caf\u00e9\n".encode()))  # past the kept prefix
    assert p.x is None and "not ASCII" in (p.reason or "")
    assert opcodes.prepare(MemorySource.of("ops", b"mov\n" * 10)).x is not None


def test_image_size_is_bounded() -> None:
    assert ConvertSpec(image_size=MAX_IMAGE_SIZE).image_size == MAX_IMAGE_SIZE
    for bad in (MAX_IMAGE_SIZE + 1, 10**9, 0, -1):
        with pytest.raises(ConversionError, match="image_size"):
            ConvertSpec(image_size=bad)


@pytest.mark.slow
def test_stdin_is_read_in_chunks_under_a_memory_limit(detector: Path, cli_env: dict[str, str]) -> None:
    """read(max_size + 1) would ask for 8 GiB at once: a MemoryError under a ulimit or a strict cgroup."""
    import resource

    assert MALVISION is not None

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (6 * GiB, 6 * GiB))

    proc = subprocess.run(
        [MALVISION, "scan", "-m", detector, "--csv", "-"],
        input=minimal_pe(),
        capture_output=True,
        timeout=120,
        env={**os.environ, **cli_env},
        preexec_fn=limit,
        check=False,
    )
    assert proc.returncode in (0, 1), proc.stderr.decode()
    assert b"Traceback" not in proc.stderr and proc.stdout.count(b"\n-,") == 1
