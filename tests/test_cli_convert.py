"""``malvision convert``: PNGs mirroring the input tree, bad inputs as one line each, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from malvision import io as mio
from malvision.cli import EXIT_ERROR, EXIT_INTERRUPTED, app, parse_size
from malvision.convert import byte_plot
from malvision.convert import image as cimage
from malvision.errors import ConversionError

MALVISION = Path(sys.executable).with_name("malvision")
runner = CliRunner()


def convert(*args: str | Path) -> Any:
    return runner.invoke(app, ["convert", *map(str, args)])


def pixels(png: Path) -> np.ndarray:
    with Image.open(png) as im:
        assert im.mode == "L"
        return np.asarray(im)


def parts(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.endswith(".part")]


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error: ")]


def shown(path: Path) -> str:
    """``path`` as printed: bytes that are not UTF-8 appear as ``\\udcXX`` escapes."""
    return str(path).encode("utf-8", "backslashreplace").decode()


def run(*args: str | bytes | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    """``malvision convert`` in a child process, to see real exit codes through ``main()``."""
    if not MALVISION.exists():
        pytest.skip(f"{MALVISION} is not installed (pip install -e .)")
    return subprocess.run(
        [MALVISION, "convert", *args],
        capture_output=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        check=False,
    )


@pytest.fixture
def data(rng: np.random.Generator) -> Callable[[int], bytes]:
    return lambda n: rng.integers(0, 256, n, dtype=np.uint8).tobytes()


# --- good inputs -------------------------------------------------------------------------------


def test_convert_one_file_to_a_grayscale_png(
    make_file: Callable[[str, bytes], Path], data: Callable[[int], bytes], tmp_path: Path
) -> None:
    content = data(20_001)
    src = make_file("in/sample.exe", content)
    result = convert(src, "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert "wrote 1 PNG(s)" in result.stdout
    assert np.array_equal(pixels(tmp_path / "out" / "sample.exe.png"), byte_plot(content))
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["sample.exe.png"]


def test_convert_mirrors_the_input_tree(
    make_file: Callable[[str, bytes], Path], data: Callable[[int], bytes], tmp_path: Path
) -> None:
    contents = {
        rel: data(1000 + 37 * i) for i, rel in enumerate(["a.bin", "x/b.dll", "x/y/c", "x/y/.hidden"])
    }
    for rel, content in contents.items():
        make_file(f"tree/{rel}", content)
    single = make_file("loose/one.bin", data(64))
    out = tmp_path / "out"
    result = convert(tmp_path / "tree", single, "-o", out)
    assert result.exit_code == 0, result.output
    assert "wrote 5 PNG(s)" in result.stdout
    made = sorted(str(p.relative_to(out)) for p in out.rglob("*.png"))
    assert made == sorted([f"{rel}.png" for rel in contents] + ["one.bin.png"])
    for rel, content in contents.items():
        assert np.array_equal(pixels(out / f"{rel}.png"), byte_plot(content))
    assert not parts(out)
    assert (out / "a.bin.png").stat().st_mode & 0o077 != 0o000  # not the 0o600 of a temporary file


def test_png_level_changes_size_not_pixels(make_file: Callable[[str, bytes], Path], tmp_path: Path) -> None:
    src = make_file("s.bin", bytes(30_000) + b"MZ" * 10_000)
    for level in ("0", "9"):
        assert convert(src, "-o", tmp_path / level, "--png-level", level).exit_code == 0
    stored, small = tmp_path / "0" / "s.bin.png", tmp_path / "9" / "s.bin.png"
    assert np.array_equal(pixels(stored), pixels(small))
    assert small.stat().st_size * 10 < stored.stat().st_size
    assert convert(src, "-o", tmp_path / "x", "--png-level", "10").exit_code == 2


def test_two_inputs_never_write_the_same_png(
    make_file: Callable[[str, bytes], Path], data: Callable[[int], bytes], tmp_path: Path
) -> None:
    first, second = make_file("a/same.bin", data(100)), make_file("b/same.bin", data(100))
    result = convert(first, second, "-o", tmp_path / "out")
    assert result.exit_code == EXIT_ERROR
    assert np.array_equal(pixels(tmp_path / "out" / "same.bin.png"), byte_plot(first.read_bytes()))
    assert error_lines(result.stderr) == [
        f"error: {second}: {tmp_path}/out/same.bin.png is already the output of {first}"
    ]


# --- bad inputs --------------------------------------------------------------------------------


def bad_tree(tmp_path: Path, data: Callable[[int], bytes]) -> tuple[Path, list[Path], dict[str, bytes]]:
    """A folder with good files and every kind of bad entry; returns (root, bad paths, good contents)."""
    root = tmp_path / "tree"
    good = {"good1.bin": data(5000), "sub/good2.bin": data(40_000)}
    for rel, content in good.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(content)

    def huge(p: Path) -> None:
        """32 GiB of zeros (more than this machine's RAM) that take no disk space."""
        p.write_bytes(b"")
        os.truncate(p, 32 * 1024**3)

    bad = {
        "empty.bin": lambda p: p.write_bytes(b""),
        "short.bin": lambda p: p.write_bytes(b"MZ"),  # shorter than one 32-byte row
        "fifo": os.mkfifo,
        "broken": lambda p: p.symlink_to(root / "nowhere"),
        "loop": lambda p: p.symlink_to(p),
        "dirlink": lambda p: p.symlink_to(root / "sub"),  # a folder where a file is expected
        "huge.bin": huge,
        os.fsdecode(b"caf\xe9-empty.bin"): lambda p: p.write_bytes(b""),  # not UTF-8
    }
    for name, make in bad.items():
        make(root / name)
    good[os.fsdecode(b"ok-\xff.bin")] = data(3000)
    (root / os.fsdecode(b"ok-\xff.bin")).write_bytes(good[os.fsdecode(b"ok-\xff.bin")])
    return root, [root / name for name in bad], good


def test_a_batch_converts_the_good_files_and_lists_every_bad_one(
    tmp_path: Path, data: Callable[[int], bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, bad, good = bad_tree(tmp_path, data)
    locked = root / "locked.bin"  # tests run as root, who reads anything: deny it through os.access
    locked.write_bytes(data(1000))
    real_access = os.access
    monkeypatch.setattr(mio.os, "access", lambda p, m: False if Path(p) == locked else real_access(p, m))
    out = tmp_path / "out"
    result = convert(root, "-o", out)
    assert result.exit_code == EXIT_ERROR
    assert "Traceback" not in result.output
    for rel, content in good.items():
        assert np.array_equal(pixels(out / f"{rel}.png"), byte_plot(content))
    lines = error_lines(result.stderr)
    assert len(lines) == len(bad) + 1
    assert f"{len(lines)} input(s) failed:" in result.stderr
    for path in [*bad, locked]:
        assert sum(line.startswith(f"error: {shown(path)}: ") for line in lines) == 1, path
    assert f"error: {locked}: permission denied" in lines
    assert f"error: {root}/empty.bin: empty file" in lines
    assert any("huge.bin: 32.0 GiB is over the 8.0 GiB size limit" in line for line in lines)
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*.png")) == sorted(f"{r}.png" for r in good)
    assert not parts(out)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read a chmod 000 file (see the os.access test above)")
def test_an_unreadable_file_for_real(make_file: Callable[[str, bytes], Path], tmp_path: Path) -> None:
    path = make_file("locked.bin", b"x" * 100)
    path.chmod(0)
    result = convert(path, "-o", tmp_path / "out")
    assert result.exit_code == EXIT_ERROR
    assert error_lines(result.stderr) == [f"error: {path}: permission denied"]


def test_main_exit_codes_and_one_line_errors_through_the_real_command(
    tmp_path: Path, data: Callable[[int], bytes]
) -> None:
    """Real exit codes, bytes file names and a narrow terminal through the installed ``main()``."""
    root, bad, good = bad_tree(tmp_path, data)
    out = tmp_path / "out"
    proc = run(root, "-o", out, env={"COLUMNS": "40"})
    stderr = proc.stderr.decode("utf-8", "backslashreplace")
    assert proc.returncode == EXIT_ERROR, stderr
    assert b"Traceback" not in proc.stderr
    lines = error_lines(stderr)
    assert len(lines) == len(bad)
    assert any("32.0 GiB is over the 8.0 GiB size limit (raise it with --max-size)" in line for line in lines)
    assert any(line.startswith(f"error: {root}/caf\\udce9-empty.bin: empty file") for line in lines)
    assert os.path.exists(os.fsencode(out) + b"/ok-\xff.bin.png")
    assert len(list(out.rglob("*.png"))) == len(good)

    proc = run(root / "good1.bin", "-o", out)
    assert (proc.returncode, proc.stderr) == (0, b"")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--format", "tiff"], b"error: unknown --format 'tiff'; use png or dataset\n"),
        (["--max-size", "nan"], b"size must be positive: 'nan'"),
        (["--max-size", "lots"], b"not a size: 'lots'"),
    ],
)
def test_main_usage_errors_exit_2_without_a_traceback(
    make_file: Callable[[str, bytes], Path], tmp_path: Path, args: list[str], message: bytes
) -> None:
    proc = run(make_file("s.bin", b"x" * 100), "-o", tmp_path / "out", *args)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert b"Traceback" not in proc.stderr


def test_a_fifo_named_directly_does_not_hang(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    proc = run(tmp_path / "pipe", "-o", tmp_path / "out")  # run() gives up after 60 s
    assert proc.returncode == EXIT_ERROR
    assert f"error: {tmp_path}/pipe: not a regular file".encode() in proc.stderr


def test_an_input_over_max_size(make_file: Callable[[str, bytes], Path], tmp_path: Path) -> None:
    src = make_file("s.bin", b"x" * 2048)
    result = convert(src, "-o", tmp_path / "out", "--max-size", "1K")
    assert result.exit_code == EXIT_ERROR
    assert error_lines(result.stderr) == [
        f"error: {src}: 2.0 KiB is over the 1.0 KiB size limit (raise it with --max-size)"
    ]
    assert convert(src, "-o", tmp_path / "out", "--max-size", "2k").exit_code == 0


def test_an_output_folder_that_cannot_be_written(
    make_file: Callable[[str, bytes], Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from corpus.harness import call_main, check_run

    src = make_file("s.bin", b"x" * 100)
    blocker = make_file("out", b"a file, not a folder")
    run = call_main(["convert", src, "-o", blocker], capsys)  # one line for the folder, not one a file
    assert check_run(run, [EXIT_ERROR], errors=1) == [f"error: {blocker}: cannot write (File exists)"]


# --- atomic output -----------------------------------------------------------------------------


def flaky_write_png(fail_on_call: int, exc: BaseException) -> Callable[..., None]:
    """``write_png`` that, on its ``fail_on_call``-th call, raises ``exc`` after two writes."""
    real = cimage.write_png
    calls = []

    def write_png(out: BinaryIO, *args: Any, **kwargs: Any) -> None:
        calls.append(1)
        if len(calls) != fail_on_call:
            return real(out, *args, **kwargs)

        class Breaking:
            writes = 0

            def write(self, b: bytes) -> int:
                self.writes += 1
                if self.writes > 2:
                    raise exc
                return out.write(b)

        real(Breaking(), *args, **kwargs)  # type: ignore[arg-type]

    return write_png


@pytest.mark.parametrize("exc", [ConversionError("disk ate it"), OSError(28, "No space left on device")])
def test_a_failure_while_writing_leaves_no_png(
    make_file: Callable[[str, bytes], Path],
    data: Callable[[int], bytes],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    exc: Exception,
) -> None:
    for name in ("a.bin", "b.bin", "c.bin"):
        make_file(f"in/{name}", data(3000))
    monkeypatch.setattr(cimage, "write_png", flaky_write_png(2, exc))
    out = tmp_path / "out"
    result = convert(tmp_path / "in", "-o", out)
    assert result.exit_code == EXIT_ERROR
    assert sorted(p.name for p in out.iterdir()) == ["a.bin.png", "c.bin.png"]  # no b.bin.png, no .part
    (line,) = error_lines(result.stderr)
    assert line.startswith(f"error: {tmp_path}/in/b.bin: ")
    assert ("disk ate it" if isinstance(exc, ConversionError) else "No space left on device") in line


def test_an_interrupt_while_writing_leaves_no_png(
    make_file: Callable[[str, bytes], Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_file("in/a.bin", b"x" * 3000)
    make_file("in/b.bin", b"y" * 3000)
    monkeypatch.setattr(cimage, "write_png", flaky_write_png(2, KeyboardInterrupt()))
    out = tmp_path / "out"
    result = convert(tmp_path / "in", "-o", out)
    assert result.exit_code == EXIT_INTERRUPTED
    assert sorted(p.name for p in out.iterdir()) == ["a.bin.png"]


# --- parse_size --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "n"),
    [("4096", 4096), ("64k", 65536), ("300M", 300 * 1024**2), ("8G", 8 * 1024**3), ("8GiB", 8 * 1024**3)],
)
def test_parse_size(text: str, n: int) -> None:
    assert parse_size(text) == n


@pytest.mark.parametrize("text", ["", "G", "-1", "0", "nan", "inf", "lots"])
def test_parse_size_refuses_nonsense(text: str) -> None:
    with pytest.raises(typer.BadParameter):
        parse_size(text)


def test_main_builds_only_the_command_it_runs() -> None:
    """A command line naming one command gets an app holding that command alone (a faster start) with the
    same global options; anything else (a group, an option, nothing, a typo) gets the whole app."""
    from typer.main import get_command

    from malvision.cli.app import _app_for, app

    one = get_command(_app_for(["scan", "x"]))
    assert list(one.commands) == ["scan"]  # type: ignore[attr-defined]
    assert {p.name for p in one.params} == {p.name for p in get_command(app).params}
    for argv in ([], ["--version"], ["data", "build"], ["scna"], ["--help"]):
        assert _app_for(argv) is app
    assert len(get_command(app).commands) > 10  # type: ignore[attr-defined]


def test_version_and_help_through_the_real_command() -> None:
    if not MALVISION.exists():
        pytest.skip(f"{MALVISION} is not installed (pip install -e .)")
    version = subprocess.run([MALVISION, "--version"], capture_output=True, text=True, timeout=60)
    assert version.returncode == 0 and version.stdout.startswith("malvision ")
    helped = subprocess.run([MALVISION, "scan", "--help"], capture_output=True, text=True, timeout=60)
    assert (
        helped.returncode == 0 and "Usage: malvision scan" in helped.stdout and "--threshold" in helped.stdout
    )


def test_a_json_scan_loads_only_what_it_needs() -> None:
    """A fresh ``scan --json`` of one file with the default: no rich (nothing drawn), no ONNX Runtime
    (the trees are walked in numpy), no torch, no multiprocessing (threads read), one BLAS thread."""
    import pip

    exe = Path(pip.__file__).parent / "_vendor" / "distlib" / "w32.exe"  # a real PE file pip ships
    if not exe.is_file():
        pytest.skip("pip ships no distlib launchers here")
    code = (
        "import json, os, sys\n"
        "from malvision.cli import main\n"
        f"sys.argv = ['malvision', 'scan', {str(exe)!r}, '--json']\n"
        "try:\n    main()\nexcept SystemExit as e:\n    code = e.code\n"
        "mods = ['rich', 'onnxruntime', 'torch', 'multiprocessing']\n"
        "print(json.dumps({'exit': code, 'loaded': [m for m in mods if m in sys.modules],"
        " 'blas': os.environ.get('OPENBLAS_NUM_THREADS')}))\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS", "FORCE_TERMINAL")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    *records, last = done.stdout.strip().splitlines()
    assert json.loads("\n".join(records))[0]["verdict"] in ("benign", "malware")
    assert json.loads(last) == {"exit": json.loads(last)["exit"], "loaded": [], "blas": "1"}


def test_progress_draws_on_a_terminal_and_hides_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    """A terminal gets rich's bar (on the real console behind the lazy one); a pipe a silent stand-in."""
    from malvision.cli.app import err, progress

    monkeypatch.delenv("FORCE_TERMINAL", raising=False)
    monkeypatch.delenv("TTY_COMPATIBLE", raising=False)
    with progress() as bar:  # pytest's stderr is not a terminal
        task = bar.add_task("quiet", total=2)
        bar.advance(task)
        bar.update(task, total=3)
        assert bar.console is err and type(bar).__name__ == "_Hidden"
    monkeypatch.setenv("FORCE_TERMINAL", "1")
    with progress() as bar:
        task = bar.add_task("drawn", total=2)
        bar.advance(task)
        assert type(bar).__name__ == "Progress" and bar.tasks[0].completed == 1


def test_convert_notes_a_plot_no_png_reader_would_take_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past Pillow's decompression-bomb limit (a file over about 170 MiB) the Malimg reader refuses the
    PNG: convert writes it (a valid PNG) and says so."""
    import malvision.data.readers as readers

    monkeypatch.setattr(readers.Image, "MAX_IMAGE_PIXELS", 25_000)
    small, big = tmp_path / "small.bin", tmp_path / "big.bin"
    small.write_bytes(np.random.default_rng(0).integers(0, 256, 20_000, dtype=np.uint8).tobytes())
    big.write_bytes(np.random.default_rng(1).integers(0, 256, 60_000, dtype=np.uint8).tobytes())
    r = runner.invoke(app, ["convert", str(small), str(big), "--out", str(tmp_path / "out")])
    assert r.exit_code == 0 and (tmp_path / "out" / "small.bin.png").is_file()
    assert (tmp_path / "out" / "big.bin.png").is_file()
    assert "note: 1 byte plot(s) over 50,000 pixels" in r.output and f"{big} (128 x 468)" in r.output
