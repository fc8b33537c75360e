"""Safe reads, streaming sources, input expansion and atomic writes (malvision.io)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from malvision import io as mio
from malvision.errors import EmptyFileError, InputError, MalvisionError
from malvision.io import (
    FileSource,
    MemorySource,
    atomic_writer,
    check_file,
    expand_inputs,
    human_size,
    is_zip,
    open_source,
)

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def sparse(path: Path, size: int) -> Path:
    """A file of ``size`` zero bytes that takes no disk space."""
    with open(path, "wb") as f:
        f.truncate(size)
    return path


# --- check_file --------------------------------------------------------------------------------


def test_check_file_returns_the_size(make_file: Callable[[str, bytes], Path]) -> None:
    assert check_file(make_file("a.bin", b"MZ" * 50)) == 100


def test_check_file_follows_a_good_symlink(make_file: Callable[[str, bytes], Path], tmp_path: Path) -> None:
    target = make_file("a.bin", b"x" * 10)
    (tmp_path / "link").symlink_to(target)
    assert check_file(tmp_path / "link") == 10


@pytest.mark.parametrize(
    ("setup", "match"),
    [
        (lambda d: d / "missing.bin", "no such file"),
        (lambda d: (d / "empty.bin").write_bytes(b"") and None or d / "empty.bin", "empty file"),
        (lambda d: d, "is a directory"),
        (lambda d: (os.mkfifo(d / "fifo"), d / "fifo")[1], "not a regular file"),
        (lambda d: ((d / "broken").symlink_to(d / "nowhere"), d / "broken")[1], "broken symbolic link"),
        (
            lambda d: ((d / "a").symlink_to(d / "b"), (d / "b").symlink_to(d / "a"), d / "a")[2],
            "Too many levels of symbolic links",
        ),
        (lambda d: ((d / "f").write_bytes(b"x"), d / "f" / "child")[1], "Not a directory"),
    ],
    ids=["missing", "empty", "directory", "fifo", "broken-link", "link-loop", "under-a-file"],
)
def test_check_file_refuses_what_is_not_a_readable_file(
    tmp_path: Path, setup: Callable[[Path], Path], match: str
) -> None:
    path = setup(tmp_path)
    with pytest.raises(InputError, match=match) as info:
        check_file(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}: ")
    assert "\n" not in msg


def test_check_file_refuses_a_file_over_the_limit(tmp_path: Path) -> None:
    huge = sparse(tmp_path / "huge.bin", 32 * 1024**3)  # more than this machine's RAM, no disk used
    with pytest.raises(
        InputError, match=r"32\.0 GiB is over the 8\.0 GiB size limit \(raise it with --max-size\)"
    ):
        check_file(huge)
    assert check_file(huge, max_size=32 * 1024**3) == 32 * 1024**3
    with pytest.raises(InputError, match="size limit"):
        check_file(sparse(tmp_path / "s.bin", 1001), max_size=1000)


def test_check_file_permission_denied(
    make_file: Callable[[str, bytes], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Root reads everything, so the refusal is simulated through ``os.access``."""
    path = make_file("locked.bin", b"x" * 100)
    real_access = os.access
    monkeypatch.setattr(mio.os, "access", lambda p, mode: False if Path(p) == path else real_access(p, mode))
    with pytest.raises(InputError, match="permission denied"):
        check_file(path)


@pytest.mark.skipif(IS_ROOT, reason="root can read a chmod 000 file; see test_check_file_permission_denied")
def test_check_file_unreadable_for_real(make_file: Callable[[str, bytes], Path]) -> None:
    path = make_file("locked.bin", b"x" * 100)
    path.chmod(0)
    with pytest.raises(InputError, match="permission denied"):
        check_file(path)


# --- sources -----------------------------------------------------------------------------------


@pytest.mark.parametrize("chunk", [1, 4096, 7777, mio.CHUNK])
def test_file_source_streams_every_byte_and_hashes_them(
    rng: np.random.Generator,
    make_file: Callable[[str, bytes], Path],
    monkeypatch: pytest.MonkeyPatch,
    chunk: int,
) -> None:
    monkeypatch.setattr(mio, "CHUNK", chunk)
    data = rng.integers(0, 256, 30_001, dtype=np.uint8).tobytes()
    src = open_source(make_file("s.bin", data))
    assert isinstance(src, FileSource) and src.size == len(data)
    pieces = [bytes(c) for c in src.chunks()]
    assert all(len(p) <= chunk for p in pieces)
    assert b"".join(pieces) == data
    assert src._digest == hashlib.sha256(data).hexdigest()  # filled by the full read
    assert src.read(100) == data[:100]
    assert src.read() == data


def test_sha256_reads_the_file_when_needed(make_file: Callable[[str, bytes], Path]) -> None:
    src = open_source(make_file("s.bin", b"abc" * 1000))
    assert src.read(10) == b"abcabcabca"
    assert src._digest is None  # a partial read does not hash
    assert src.sha256 == hashlib.sha256(b"abc" * 1000).hexdigest()


def test_a_file_that_shrinks_while_read_is_an_error(make_file: Callable[[str, bytes], Path]) -> None:
    path = make_file("s.bin", b"x" * 5000)
    src = open_source(path)
    path.write_bytes(b"x" * 10)
    with pytest.raises(InputError, match="changed while reading"):
        src.read()


def test_a_file_that_vanishes_before_read_is_an_input_error(make_file: Callable[[str, bytes], Path]) -> None:
    path = make_file("s.bin", b"x" * 5000)
    src = open_source(path)
    path.unlink()
    with pytest.raises(InputError, match="read failed"):
        src.read()


def test_memory_source(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mio, "CHUNK", 3)
    src = MemorySource.of("upload", b"0123456789")
    assert [bytes(c) for c in src.chunks()] == [b"012", b"345", b"678", b"9"]
    assert src.read(4) == b"0123"
    assert src.sha256 == hashlib.sha256(b"0123456789").hexdigest()
    with pytest.raises(EmptyFileError, match="upload: empty file"):
        MemorySource.of("upload", b"")


def test_empty_file_has_its_own_error(tmp_path: Path) -> None:
    """An empty file is an ``EmptyFileError`` (an ``InputError``): scan makes it a verdict by its type,
    not by the wording of its message."""
    (tmp_path / "empty.bin").write_bytes(b"")
    with pytest.raises(EmptyFileError, match="empty.bin: empty file"):
        check_file(tmp_path / "empty.bin")
    assert issubclass(EmptyFileError, InputError)


# --- expand_inputs -----------------------------------------------------------------------------


def test_expand_inputs_walks_folders_sorted_with_relative_paths(
    make_file: Callable[[str, bytes], Path], tmp_path: Path
) -> None:
    for name in ("tree/b.bin", "tree/a/z.bin", "tree/a/y/x.bin", "tree/c.bin", "single.bin"):
        make_file(name, b"x")
    (tmp_path / "tree" / "empty").mkdir()
    got = list(expand_inputs([tmp_path / "tree", tmp_path / "single.bin"]))
    # As os.walk, top-down: a folder's files (sorted), then each subfolder (sorted).
    assert [str(rel) for _, rel in got] == ["b.bin", "c.bin", "a/z.bin", "a/y/x.bin", "single.bin"]
    assert all(p.is_file() for p, _ in got)
    assert got[3][0] == tmp_path / "tree" / "a" / "y" / "x.bin"


def test_expand_inputs_yields_odd_entries_and_does_not_follow_inner_folder_links(
    make_file: Callable[[str, bytes], Path], tmp_path: Path
) -> None:
    make_file("tree/sub/f.bin", b"x")
    tree = tmp_path / "tree"
    (tree / "loop").symlink_to(tree)  # followed, this would never end
    (tree / "broken").symlink_to(tree / "nowhere")
    os.mkfifo(tree / "fifo")
    rels = [str(rel) for _, rel in expand_inputs([tree])]
    assert rels == ["broken", "fifo", "loop", "sub/f.bin"]


def test_expand_inputs_walks_a_folder_named_through_a_symlink(
    make_file: Callable[[str, bytes], Path], tmp_path: Path
) -> None:
    make_file("real/f.bin", b"x")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    assert [str(rel) for _, rel in expand_inputs([tmp_path / "link"])] == ["f.bin"]


def test_expand_inputs_passes_missing_paths_through(tmp_path: Path) -> None:
    assert list(expand_inputs([tmp_path / "nope"])) == [(tmp_path / "nope", Path("nope"))]


# --- atomic_writer -----------------------------------------------------------------------------


def no_parts(folder: Path) -> bool:
    return not [p for p in folder.rglob("*") if p.name.endswith(".part")]


def test_atomic_writer_writes_with_the_usual_mode(tmp_path: Path) -> None:
    dest = tmp_path / "new" / "folder" / "out.png"
    old = os.umask(0o022)
    try:
        with atomic_writer(dest) as f:
            f.write(b"hello")
    finally:
        os.umask(old)
    assert dest.read_bytes() == b"hello"
    assert dest.stat().st_mode & 0o777 == 0o644
    assert no_parts(tmp_path)


@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_atomic_writer_leaves_nothing_half_written(tmp_path: Path, exc: type[BaseException]) -> None:
    dest = tmp_path / "out.png"
    with pytest.raises(exc), atomic_writer(dest) as f:
        f.write(b"partial")
        raise exc
    assert not dest.exists()
    assert no_parts(tmp_path)
    dest.write_bytes(b"old")
    with pytest.raises(exc), atomic_writer(dest) as f:
        f.write(b"new but broken")
        raise exc
    assert dest.read_bytes() == b"old"
    assert no_parts(tmp_path)


def test_a_ctrl_c_as_the_temporary_file_is_made_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGINT right after mkstemp created the file, before its name is returned: no stray .part."""
    import signal
    import tempfile

    real = tempfile.mkstemp

    def mkstemp_then_ctrl_c(*args: object, **kwargs: object) -> tuple[int, str]:
        made = real(*args, **kwargs)  # type: ignore[call-overload]
        signal.raise_signal(signal.SIGINT)
        return made

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt), atomic_writer(tmp_path / "history.csv") as f:
        f.write(b"never reached")
    assert not list(tmp_path.iterdir())


def test_atomic_writer_turns_os_errors_into_one_line(tmp_path: Path) -> None:
    (tmp_path / "afile").write_bytes(b"x")
    dest = tmp_path / "afile" / "out.png"
    with pytest.raises(MalvisionError, match=r"out\.png: cannot write \(") as info, atomic_writer(dest) as f:
        f.write(b"never")
    assert "\n" not in str(info.value)
    assert (
        isinstance(info.value, OSError) and info.value.strerror == "File exists"
    )  # callers may catch OSError
    dest = tmp_path / "ok" / "out.png"
    with pytest.raises(MalvisionError, match="cannot write .No space left on device"), atomic_writer(dest):
        raise OSError(28, "No space left on device")
    assert no_parts(tmp_path)
    assert not dest.exists()


@pytest.mark.parametrize(
    ("n", "text"), [(0, "0 B"), (1023, "1023 B"), (1536, "1.5 KiB"), (8 * 1024**3, "8.0 GiB")]
)
def test_human_size(n: int, text: str) -> None:
    assert human_size(n) == text


# --- is_zip ----------------------------------------------------------------------------------------
def _zip(**entries: bytes) -> bytes:
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_is_zip_takes_archives_that_start_as_one(tmp_path: Path) -> None:
    program = b"MZ" + bytes(1022)
    cases = {
        "zip": (_zip(a=b"x"), True),
        "empty zip": (_zip(), True),
        # A self-extractor, or a program with a stray end-of-zip record near its end (wininst-7.1.exe):
        # zipfile.is_zipfile says yes to both, and their own bytes would go unscanned.
        "program with a zip appended": (program + _zip(a=b"x"), False),
        "program with an end record": (program + b"PK\x05\x06" + bytes(18), False),
        "a zip's start, cut off": (_zip(a=b"x" * 100)[:40], False),
        "text": (b"PK is not enough", False),
    }
    for name, (data, want) in cases.items():
        (tmp_path / "f").write_bytes(data)
        assert (is_zip(data), is_zip(tmp_path / "f")) == (want, want), name
    assert not is_zip(tmp_path / "missing") and not is_zip(tmp_path)
