"""Running ``malvision`` on the corpus: real child processes, or ``main()`` in-process, and the checks
every run must pass (one-line errors, no traceback, documented exit codes).

Fixtures here are imported by the hostile and fuzz tests (``from corpus.harness import ...``).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from corpus import make_checkpoint, write_files

__all__ = [
    "MALVISION",
    "Run",
    "run_cli",
    "call_main",
    "check_run",
    "error_lines",
    "detector",
    "corpus_files",
    "cli_env",
    "serve_model",
]


def _find_malvision() -> Path | None:
    beside = Path(sys.executable).with_name("malvision")  # the venv running the tests comes first
    if beside.exists():
        return beside
    found = shutil.which("malvision")
    return Path(found) if found else None


MALVISION = _find_malvision()


@dataclass
class Run:
    """The outcome of one ``malvision`` run: exit code, stdout, stderr (decoded, \\udcXX kept)."""

    args: list[str]
    code: int
    stdout: str
    stderr: str

    def __str__(self) -> str:
        return f"malvision {' '.join(self.args)} -> {self.code}\n--- stderr\n{self.stderr[-3000:]}"


def _decode(b: bytes) -> str:
    return b.decode("utf-8", "surrogateescape")


def run_cli(
    *args: str | Path,
    env: dict[str, str] | None = None,
    timeout: float = 120,
    cwd: Path | None = None,
    stdin: bytes | None = None,
) -> Run:
    """``malvision ARGS`` in a child process (real exit codes, real stderr); never hangs past ``timeout``."""
    if MALVISION is None:
        pytest.skip("the malvision command is not installed (pip install -e .)")
    argv = [os.fsencode(a) if isinstance(a, Path) else a for a in args]
    proc = subprocess.run(
        [MALVISION, *argv],
        input=stdin,
        capture_output=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        check=False,
    )
    return Run([os.fsdecode(a) for a in argv], proc.returncode, _decode(proc.stdout), _decode(proc.stderr))


def call_main(args: Sequence[str | Path], capsys: pytest.CaptureFixture[str]) -> Run:
    """``malvision.cli.main()`` in this process (fast: torch is already imported).

    Any exception other than ``SystemExit`` escapes: that is the traceback a user would have seen.
    """
    from malvision.cli import main

    argv = [os.fsdecode(a) if isinstance(a, Path) else a for a in args]
    old_argv, old_term = sys.argv, signal.getsignal(signal.SIGTERM)
    sys.argv = ["malvision", *argv]
    code: int | str | None = 0
    capsys.readouterr()
    try:
        main()
    except SystemExit as e:
        code = e.code
    finally:
        sys.argv = old_argv
        signal.signal(signal.SIGTERM, old_term)
    out, err = capsys.readouterr()
    return Run(argv, code if isinstance(code, int) else (0 if code is None else 1), out, err)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error: ")]


def check_run(run: Run, codes: Sequence[int], errors: int | None = None) -> list[str]:
    """Assert the promises every run keeps; returns its ``error:`` lines.

    The exit code is one of ``codes``; no traceback; a failed run explains itself in ``error:`` lines
    (exactly ``errors`` of them when given), each a single line.
    """
    assert run.code in codes, str(run)
    assert "Traceback" not in run.stderr and "Traceback" not in run.stdout, str(run)
    lines = error_lines(run.stderr)
    if errors is not None:
        assert len(lines) == errors, str(run)
    if run.code == 2:
        assert lines or "Usage:" in run.stderr, str(run)
    for line in run.stderr.splitlines():  # nothing but error lines, the failure count and warnings
        assert (
            line.startswith(("error: ", "warning: ", "  ", "Usage:", "Try ", "Error: "))
            or "input(s) failed" in line
            or "skipped while listing" in line
            or not line.strip()
        ), f"unexpected stderr line {line!r}\n{run}"
    return lines


@pytest.fixture(scope="session")
def detector(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny, valid benign/malware image checkpoint (cnn, 32x32) for scan, evaluate, info, export."""
    return make_checkpoint(tmp_path_factory.mktemp("model") / "detector.pt")


@pytest.fixture(scope="session")
def corpus_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The regular-file corpus, written once per session (read-only for tests)."""
    return write_files(tmp_path_factory.mktemp("corpus"))


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """Environment for runs: caches under tmp_path, a narrow terminal, a strict UTF-8 stdout."""
    env = {
        "MALVISION_CACHE": str(tmp_path / "cache"),
        "COLUMNS": "70",
        "PYTHONIOENCODING": "utf-8:strict",  # as a desktop en_US.UTF-8 locale: surrogates would crash
    }
    monkeypatch.setenv("MALVISION_CACHE", env["MALVISION_CACHE"])
    yield env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_model(model: Path | str, tmp_path: Path) -> Iterator[str]:
    """``malvision serve --model MODEL`` on a free loopback port: its URL once /healthz answers;
    the server stops when the generator is closed (its log in ``tmp_path/server.log``)."""
    port = _free_port()
    log = (tmp_path / "server.log").open("wb")
    proc = subprocess.Popen(
        [str(MALVISION), "serve", "--port", str(port), "--model", str(model), "--timeout", "60"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (tmp_path / "server.log").read_text()
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "server did not start in 60 s"
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()
