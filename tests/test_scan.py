"""The scanner's reader pools: worker processes give the same records, in the same order, as threads."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import numpy as np
import pip
import pytest

import malvision.scan as scan_pkg
import malvision.scan.scanner as scan_mod
from corpus import write_files
from corpus.harness import call_main
from malvision.errors import CheckpointError, MalvisionError
from malvision.scan import ScanError, Scanner, Verdict

PIP_LAUNCHERS = sorted(Path(pip.__file__).parent.joinpath("_vendor", "distlib").glob("*.exe"))


@pytest.fixture
def inputs(tmp_path: Path) -> list[Path]:
    """The corpus (PE variants, text, images, empty, random), real PE launchers, and a missing file."""
    folder = tmp_path / "files"
    write_files(folder)
    for exe in PIP_LAUNCHERS:
        (folder / exe.name).write_bytes(exe.read_bytes())
    return [folder, tmp_path / "missing.exe", *PIP_LAUNCHERS[:2]]


def _records(results: list[Verdict | ScanError]) -> list[tuple]:
    return [
        ("error", r.path, r.message)
        if isinstance(r, ScanError)
        else (r.path, r.sha256, r.size, r.verdict, None if r.score is None else round(r.score, 6), r.reason)
        for r in results
    ]


def test_worker_processes_give_what_threads_give(tiny_detector: Path, inputs: list[Path]) -> None:
    threads = _records(list(Scanner(tiny_detector, backend="torch", processes=False).scan(inputs)))
    with Scanner(tiny_detector, backend="torch", processes=True) as scanner:
        first = _records(list(scanner.scan(inputs)))  # on threads until a worker is up
        assert scanner._procs is not None and scanner._procs.usable
        deadline = time.monotonic() + 60
        while not scanner._procs.ready and time.monotonic() < deadline:
            time.sleep(0.05)
        assert scanner._procs.ready
        procs = _records(list(scanner.scan(inputs)))  # every file on disk in the workers now
        again = _records(list(scanner.scan(inputs[:1])))  # the same workers, kept for the next scan
    assert scanner._procs is None
    assert first == procs == threads
    assert again == [r for r in threads if r[0] != "error" and r[0].startswith(str(inputs[0]))]
    assert len(threads) >= 30
    assert any(r[0] == "error" and "no such file" in r[2] for r in threads)
    assert any(r[3] == "unknown" and r[5] == "empty file" for r in threads if r[0] != "error")


def test_auto_starts_processes_only_after_many_files(
    tiny_detector: Path, inputs: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[int] = []
    real = scan_mod.ProcessReaders

    class Counting(real):  # type: ignore[misc,valid-type]
        def __init__(self, preparer: scan_mod.Preparer, n: int) -> None:
            started.append(n)
            super().__init__(preparer, n)

    monkeypatch.setattr(scan_mod, "ProcessReaders", Counting)
    scanner = Scanner(tiny_detector, backend="torch", processes=None)
    list(scanner.scan(inputs))
    assert started == []  # fewer files than PROCESS_AFTER
    monkeypatch.setattr(scan_mod, "PROCESS_AFTER", 5)
    with scanner:
        assert len(list(scanner.scan(inputs))) >= 30
    assert started == [scanner.workers]


def test_a_broken_process_pool_falls_back_to_threads(
    tiny_detector: Path, inputs: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker killed mid-run (say by the OOM killer) costs speed, not files."""

    class Broken:
        usable = ready = True

        def __init__(self, preparer: scan_mod.Preparer, n: int) -> None:
            self.calls = 0

        def submit(self, name: str, opener: object) -> Future | None:
            self.calls += 1
            if self.calls > 3:  # later files: the pool knows it is broken
                return None
            fut: Future = Future()
            fut.set_exception(BrokenProcessPool("a worker died"))
            return fut

        def close(self, cancel: bool = False) -> None:
            pass

    want = _records(list(Scanner(tiny_detector, backend="torch").scan(inputs)))
    monkeypatch.setattr(scan_mod, "ProcessReaders", Broken)
    got = _records(list(Scanner(tiny_detector, backend="torch", processes=True).scan(inputs)))
    assert got == want


@pytest.mark.parametrize(
    ("flag", "want"), [((), None), (("--processes",), True), (("--no-processes",), False)]
)
def test_scan_command_reads_on_processes_once_a_scan_is_long_unless_told(
    tiny_detector: Path, inputs: list[Path], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str], flag: tuple[str, ...], want: bool | None,
) -> None:  # fmt: skip
    got: list[bool | None] = []

    class Recording(Scanner):
        def __init__(self, *args: object, **kwargs: object) -> None:
            got.append(kwargs["processes"])  # type: ignore[arg-type]
            super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(scan_pkg, "Scanner", Recording)
    run = call_main(
        ["scan", "--model", tiny_detector, "--backend", "torch", "--json", *flag, inputs[0]], capsys
    )
    assert got == [want] and run.code in (0, 1)


def test_the_command_script_imports_no_command_line_until_run() -> None:
    """A worker process imports the script that started its parent: the ``malvision`` script's module
    must not bring Typer and the commands with it."""
    code = (
        "import sys, malvision.__main__; "
        "print(sorted(m for m in sys.modules if m.startswith(('malvision.cli', 'typer'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_an_interrupt_waits_until_the_workers_are_started() -> None:
    """Ctrl-C while the reader processes start is raised once the block that starts them has ended."""
    done: list[int] = []
    handler = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt), scan_mod.signals_held():
        for i in range(2):
            if i == 0:
                signal.raise_signal(signal.SIGINT)
            done.append(i)
    assert done == [0, 1]
    assert signal.getsignal(signal.SIGINT) is handler  # put back


def test_the_python_api_takes_one_path_and_reports_bad_names_per_input(
    tiny_detector: Path, tmp_path: Path
) -> None:
    scanner = Scanner(tiny_detector, backend="torch")
    exe = PIP_LAUNCHERS[0]
    one = list(scanner.scan(str(exe)))  # a str is one path, not its characters
    assert len(one) == 1 and isinstance(one[0], Verdict) and one[0].path == str(exe)
    assert _records(list(scanner.scan(exe))) == _records(one)
    long_name, nul = tmp_path / ("b" * 300), "a\x00b"
    got = list(scanner.scan([exe, long_name, nul, exe]))  # a bad name is its own error; the scan goes on
    assert [type(r) for r in got] == [Verdict, ScanError, ScanError, Verdict]
    assert got[1].message == f"{long_name}: cannot open (File name too long)"
    assert got[2].message == "'a\\x00b': not a file name (it holds a NUL byte)"
    data = exe.read_bytes()
    assert (
        scanner.scan_bytes("x", np.frombuffer(data, np.uint8)).sha256 == scanner.scan_bytes("x", data).sha256
    )
    assert scanner.scan_bytes("x", np.zeros(0, np.uint8)).reason == "empty file"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"threshold": "abc"}, "--threshold must be a number between 0 and 1, got 'abc'"),
        ({"max_size": 0}, "--max-size must be positive, got 0"),
        ({"batch_size": 1.5}, "--batch-size must be a whole number of at least 1, got 1.5"),
        ({"workers": -1}, "--workers must be a whole number of at least 0, got -1"),
    ],
)
def test_the_scanner_refuses_bad_settings(tiny_detector: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(MalvisionError) as e:
        Scanner(tiny_detector, backend="torch", **kwargs)
    assert str(e.value) == message


def test_a_model_name_too_long_is_a_checkpoint_error() -> None:
    with pytest.raises(CheckpointError, match="cannot open"):
        Scanner("a" * 5000)


def test_an_input_the_onnx_graph_does_not_take_is_a_package_error() -> None:
    scanner = Scanner("pe-detector")
    assert scanner.backend == "onnx"
    with pytest.raises(MalvisionError, match=r"cannot read input of shape \(1, 3\)"):
        scanner.infer([np.zeros(3, np.float32)])


def test_a_family_model_writes_its_family_score_and_no_threshold(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import csv
    import io

    rng = np.random.default_rng(0)
    ops = ["push", "mov", "call", "pop", "xor", "jmp", "add", "lea", "cmp", "sub"]
    sample = tmp_path / "sample.txt"
    sample.write_text("\n".join(rng.choice(ops, 3000)) + "\n")
    run = call_main(["scan", "--model", "big2015-opcodes", "--csv", str(sample)], capsys)
    (row,) = list(csv.DictReader(io.StringIO(run.stdout)))
    assert row["verdict"] == "malware" and row["family"] and 0 < float(row["family_score"]) <= 1
    assert row["threshold"] == "" and row["score"] == ""
    table = call_main(["scan", "--model", "big2015-opcodes", str(sample)], capsys)
    assert "malvision scan (big2015-opcodes.pt" in table.stdout and "threshold" not in table.stdout


def test_a_known_format_is_named_before_its_entropy() -> None:
    """A PNG (a Malimg byte plot, say) is compressed, so it looks random; its reason names it."""
    rng = np.random.default_rng(0)
    png = b"\x89PNG\r\n\x1a\n" + rng.integers(0, 256, 50_000, dtype=np.uint8).tobytes()
    v = Scanner("default").scan_bytes("plot.png", png)
    assert (v.verdict, v.reason) == ("unknown", "PNG image, not a Windows PE file")
    noise = Scanner("default").scan_bytes("noise", rng.integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    assert noise.reason is not None and noise.reason.startswith("random or encrypted-looking data")


def test_the_entropy_of_one_byte_value_is_zero_not_minus_zero() -> None:
    import math

    from malvision.triage import byte_stats

    hist = np.zeros(256, dtype=np.int64)
    hist[0x90] = 4096
    assert math.copysign(1.0, byte_stats(hist).entropy) == 1.0  # printed '-0.00' in explain's sections
