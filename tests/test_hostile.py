"""Every command against every bad input it could be given: a verdict or one ``error:`` line, never a
traceback or a hang; batch runs go on; exit codes as documented (docs/safety.md); samples never run.

Child processes (``run_cli``) show the real exit codes and stderr; the long matrix of bad checkpoints
and bad options goes through ``main()`` in-process (``call_main``), which is the same code path
without a torch import per case.
"""

# ruff: noqa: F811  (pytest fixtures imported from corpus.harness are redefined as arguments)
from __future__ import annotations

import ast
import csv
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
import pyzipper
from PIL import Image

from corpus import (
    EXPECT,
    FILES,
    make_bad_checkpoints,
    make_never_run,
    make_png_variants,
    make_special,
    make_zip_bomb,
    make_zips,
    odd_names,
    write_files,
)
from corpus.harness import (  # noqa: F401 - fixtures
    call_main,
    check_run,
    cli_env,
    corpus_files,
    detector,
    error_lines,
    run_cli,
)
from malvision.convert import byte_plot

SRC = Path(__file__).resolve().parents[1] / "src" / "malvision"
NAME_MAX = 255


def shown(path: Path | str) -> str:
    """A path as malvision prints it on stderr: bytes that are not UTF-8 as ``\\udcXX``."""
    return os.fsdecode(path).encode("utf-8", "backslashreplace").decode()


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    """Created (as a folder) by anything that executes, imports or unpickles a sample."""
    return tmp_path / "MARKER-code-ran"


@pytest.fixture
def world(tmp_path: Path, corpus_files: dict[str, Path], marker: Path) -> dict[str, Path]:
    """Every kind of input in one place: the file corpus, odd entries, odd names, never-run samples."""
    special = make_special(tmp_path / "special")
    names = odd_names(tmp_path / "names")
    never = make_never_run(tmp_path / "never", marker)
    return {
        "files": corpus_files["empty.bin"].parent,
        "special": tmp_path / "special",
        "names": tmp_path / "names",
        "never": tmp_path / "never",
        "fifo": special["fifo"],
        "missing": tmp_path / "no-such-file.exe",
        **{f"special:{k}": v for k, v in special.items()},
        **{f"name:{k}": v for k, v in names.items()},
        **{f"never:{k}": v for k, v in never.items()},
    }


def _world_inputs(world: dict[str, Path]) -> list[Path]:
    return [world["files"], world["special"], world["names"], world["never"], world["fifo"], world["missing"]]


# -------------------------------------------------------------------------------------------- scan


@pytest.mark.slow
def test_scan_gives_every_input_a_documented_verdict_or_one_error_line(
    world: dict[str, Path], detector: Path, cli_env: dict[str, str], marker: Path, tmp_path: Path
) -> None:
    run = run_cli("scan", "-m", detector, "--json", *_world_inputs(world), env=cli_env, cwd=world["never"])
    lines = check_run(run, [2])
    records = {r["path"]: r for r in json.loads(run.stdout)}

    for name, (want, fragment) in EXPECT.items():
        r = records[str(world["files"] / name)]
        assert r["size"] == len(FILES[name]()) or name == "urandom.bin", r
        if want == "unknown" or (want == "any" and r["verdict"] == "unknown"):
            assert r["verdict"] == "unknown" and r["reason"] and r["score"] is None, r
            assert fragment is None or fragment in r["reason"], (name, r["reason"])
        else:
            assert r["verdict"] in ("malware", "benign") and 0 <= r["score"] <= 1 and r["reason"] is None, r
    # The run went on past every bad entry: the folder inside "special" and every odd name was scanned.
    assert records[str(world["special:a_directory"] / "inner.bin")]["verdict"] in ("malware", "benign")
    for key in ("latin1", "long", "specials", "newline", "dash"):
        assert records[os.fsdecode(world[f"name:{key}"])]["verdict"] in ("malware", "benign"), key
    for key in ("sh", "py", "pickle", "shadow_numpy"):
        assert records[str(world[f"never:{key}"])]["verdict"] == "unknown", key
    # One line per input that is not a readable file, naming it.
    expected = {
        "broken_link": "broken symbolic link",
        "dev_null_link": "not a regular file",
        "loop_a": "Too many levels of symbolic links",
        "loop_b": "Too many levels of symbolic links",
    }
    for key, why in expected.items():
        assert any(
            line.startswith(f"error: {world['special:' + key]}: ") and why in line for line in lines
        ), key
    fifo_lines = [line for line in lines if line.startswith(f"error: {world['fifo']}: not a regular file")]
    assert len(fifo_lines) == 2  # inside the folder and named directly: no hang either time
    assert f"error: {world['missing']}: no such file" in lines
    assert len(lines) == 7
    assert not marker.exists(), "a sample was executed, imported or unpickled"
    assert sorted(p.name for p in world["never"].iterdir()) == sorted(
        p.name for p in world["never"].iterdir() if not p.name.startswith("MARKER")
    )


@pytest.mark.slow
def test_scan_table_and_csv_survive_hostile_file_names(
    world: dict[str, Path], detector: Path, cli_env: dict[str, str]
) -> None:
    """Non-UTF-8 bytes, rich markup, terminal escapes, newlines, a leading dash: printed, never fatal."""
    nasty = world["names"] / "x["
    nasty.mkdir()
    (nasty / "]y").write_bytes((world["names"] / "-n").read_bytes())  # prints as 'x[/]y', a closing tag
    table = run_cli("scan", "-m", detector, world["names"], env={**cli_env, "COLUMNS": "400"})  # no eliding
    check_run(table, [0, 1], errors=0)
    assert "\x1b" not in table.stdout, "a terminal escape from a file name reached the terminal"
    assert "6 scanned" in table.stdout and "[bold red]x[blink]" in table.stdout
    assert "caf\\udce9" in table.stdout.replace("\n", "").replace("│", "").replace(" ", "")

    as_csv = run_cli("scan", "-m", detector, "--csv", "--", world["names"], env=cli_env)
    check_run(as_csv, [0, 1], errors=0)
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert len(rows) == 6 and {r["verdict"] for r in rows} <= {"malware", "benign"}
    assert f"{world['names']}/two\nlines.exe" in {r["path"] for r in rows}


@pytest.mark.slow
def test_scan_exit_codes(corpus_files: dict[str, Path], detector: Path, cli_env: dict[str, str]) -> None:
    """0 when nothing is found (unknowns are not findings), 1 when malware is found, 2 on errors."""
    unknowns = [corpus_files[n] for n in ("zeros_300k.bin", "text.txt", "elf.bin", "empty.bin")]
    clean = run_cli(
        "scan",
        "-m",
        detector,
        "--threshold",
        "1",
        "--json",
        *unknowns,
        corpus_files["pe_valid.exe"],
        env=cli_env,
    )
    check_run(clean, [0], errors=0)
    verdicts = [r["verdict"] for r in json.loads(clean.stdout)]
    assert verdicts == ["unknown"] * 4 + ["benign"]
    found = run_cli(
        "scan", "-m", detector, "--threshold", "0", "--csv", corpus_files["pe_valid.exe"], env=cli_env
    )
    check_run(found, [1], errors=0)
    assert ",malware," in found.stdout


def test_scan_reads_stdin_and_refuses_too_much_of_it(
    corpus_files: dict[str, Path],
    detector: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pe = corpus_files["pe_valid.exe"].read_bytes()
    for data, code, want in ((pe, 0, "benign"), (b"", 0, "unknown"), (bytes(300_000), 0, "unknown")):
        monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(data)))
        run = call_main(["scan", "-m", str(detector), "--threshold", "1", "--json", "-"], capsys)
        check_run(run, [code], errors=0)
        assert json.loads(run.stdout)[0]["verdict"] == want
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(pe)))
    run = call_main(["scan", "-m", str(detector), "--max-size", "4k", "-"], capsys)
    assert check_run(run, [2], errors=1) == ["error: -: standard input is over the 4096-byte size limit"]
    # With --zip-password a zip on stdin is scanned entry by entry, as a zip named on the command line.
    buf = io.BytesIO()
    with pyzipper.AESZipFile(buf, "w", encryption=pyzipper.WZ_AES) as zf:
        zf.setpassword(b"infected")
        zf.writestr("a/pe.exe", pe)
        zf.writestr("a/empty", b"")
    for data, want in (
        (buf.getvalue(), {"-!a/pe.exe": "benign", "-!a/empty": "unknown"}),
        (pe, {"-": "benign"}),
    ):
        monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(data)))
        run = call_main(
            ["scan", "-m", str(detector), "--threshold", "1", "--json", "--zip-password", "infected", "-"],
            capsys,
        )
        check_run(run, [0], errors=0)
        assert {r["path"]: r["verdict"] for r in json.loads(run.stdout)} == want


def test_scan_treats_an_unreadable_file_as_one_error_and_goes_on(
    corpus_files: dict[str, Path],
    detector: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Tests run as root, which chmod 000 does not stop: emulate the refusal with ``os.access``."""
    locked = tmp_path / "locked.exe"
    locked.write_bytes(corpus_files["pe_valid.exe"].read_bytes())
    real_access = os.access
    monkeypatch.setattr(
        os, "access", lambda p, mode, **kw: False if Path(p) == locked else real_access(p, mode, **kw)
    )
    run = call_main(
        ["scan", "-m", str(detector), "--json", str(locked), str(corpus_files["text.txt"])], capsys
    )
    assert check_run(run, [2], errors=1) == [f"error: {locked}: permission denied"]
    assert [r["path"] for r in json.loads(run.stdout)] == [str(corpus_files["text.txt"])]
    run = call_main(
        ["convert", str(locked), str(corpus_files["text.txt"]), "-o", str(tmp_path / "png")], capsys
    )
    assert check_run(run, [2], errors=1) == [f"error: {locked}: permission denied"]
    assert [p.name for p in (tmp_path / "png").iterdir()] == ["text.txt.png"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--batch-size", "0"], "--batch-size must be a whole number of at least 1, got 0"),
        (["--batch-size", "-3"], "--batch-size must be a whole number of at least 1, got -3"),
        (["--threshold", "nan"], "--threshold must be between 0 and 1"),
        (["--threshold", "1.5"], "--threshold must be between 0 and 1"),
        (["--max-size", "0"], "size must be positive"),
        (["--max-size", "-5M"], "size must be positive"),
        (["--max-size", "lots"], "not a size"),
        (["--backend", "cuda"], "unknown backend"),
        (["--json", "--csv"], "pick one of --json, --csv and --brief"),
        (["--workers", "0"], None),  # clamped to one worker: still scans
        (["--workers", "-1"], "--workers must be a whole number of at least 0, got -1"),
    ],
)
def test_scan_refuses_bad_options_with_one_line(
    args: list[str],
    message: str | None,
    corpus_files: dict[str, Path],
    detector: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    run = call_main(["scan", "-m", str(detector), *args, str(corpus_files["text.txt"])], capsys)
    if message is None:
        check_run(run, [0], errors=0)
    else:
        check_run(run, [2])
        assert message in run.stderr, run


# ------------------------------------------------------------------------------------------ zips


@pytest.mark.slow
def test_scan_reads_zip_entries_in_memory_and_refuses_bombs_and_slips(
    tmp_path: Path, detector: Path, cli_env: dict[str, str]
) -> None:
    zips = make_zips(tmp_path / "zips")
    bomb = make_zip_bomb(tmp_path / "zips" / "bomb.zip", size=80 * 1024**2)
    overlap = make_zip_bomb(tmp_path / "zips" / "overlap.zip", size=2 * 1024**2, entries=20, overlap=True)
    work = tmp_path / "cwd"
    work.mkdir()
    run = run_cli(
        "scan",
        "-m",
        detector,
        "--json",
        "--zip-password",
        "infected",
        "--max-size",
        "64M",
        *sorted(zips.values()),
        bomb,
        overlap,
        env=cli_env,
        cwd=work,
    )
    lines = check_run(run, [2])
    recs = {r["path"].removeprefix(str(tmp_path / "zips") + "/"): r for r in json.loads(run.stdout)}

    assert recs["good.zip!FamA/sample1"]["verdict"] in ("malware", "benign")
    assert recs["good.zip!FamA/sample2"]["reason"].startswith("random")
    assert recs["good.zip!FamB/empty"]["reason"] == "empty file"
    assert recs["good.zip!FamB/text"]["reason"] == "text file, not a Windows PE file"
    assert recs["slip.zip!FamA/ok.exe"]["verdict"] in ("malware", "benign")
    assert recs["not_a.zip"]["verdict"] == recs["truncated.zip"]["verdict"] == "unknown"  # not zips: files
    assert sum(k.startswith("many_entries.zip!") for k in recs) == 300
    assert recs["overlap.zip!Bomb/zeros0"]["reason"].startswith("near-constant")

    def has(zip_name: str, fragment: str, n: int = 1) -> None:
        got = [
            line
            for line in lines
            if line.startswith(f"error: {tmp_path / 'zips' / zip_name}") and fragment in line
        ]
        assert len(got) == n, (zip_name, fragment, lines)

    has("slip.zip!", "unsafe entry name", 6)
    assert any("slip.zip!../evil\\n4.exe: unsafe" in line for line in lines)  # escaped: still one line
    has("wrong_password.zip", "wrong zip password")
    has("lying_size.zip!FamA/liar", "Bad CRC-32")
    has("corrupt_entry.zip", "")
    has("bomb.zip", "over the 64.0 MiB entry size limit")
    has("overlap.zip!", "shares its bytes with another entry", 19)
    assert len(lines) == 6 + 1 + 1 + 1 + 1 + 19
    assert list(work.iterdir()) == [], "something was extracted to disk"
    assert not list(tmp_path.rglob("evil*.exe"))


def test_data_info_on_hostile_zips_and_png_trees(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    zips = make_zips(tmp_path / "zips")
    pngs = make_png_variants(tmp_path / "malimg")
    codes = {
        "good": 0,
        "slip": 0,
        "many_entries": 0,
        "lying_size": 0,
        "wrong_password": 2,
        "corrupt_entry": 2,
        "truncated": 2,
        "not_a": 2,
    }
    for key, code in codes.items():
        run = call_main(["data", "info", str(zips[key])], capsys)
        check_run(run, [code], errors=None if code == 0 else 1)
    run = call_main(["data", "info", str(tmp_path / "malimg")], capsys)
    check_run(run, [0], errors=0)
    for key in ("bits16", "rgb", "not_png", "empty", "huge_dims"):
        assert pngs[key].name in run.stderr or "skipped" in run.stderr
    assert "bits16.png: PNG mode 'I;16'" in run.stderr.replace("\n", " ")


# ------------------------------------------------------------------------------------------ convert


def test_convert_writes_every_good_png_and_one_line_per_bad_input(
    world: dict[str, Path], cli_env: dict[str, str], marker: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    run = run_cli("convert", *_world_inputs(world), "-o", out, env=cli_env, cwd=world["never"])
    lines = check_run(run, [2])
    pngs = {p for p in out.rglob("*") if p.is_file()}
    assert not [p for p in out.rglob("*") if p.name.endswith(".part")]
    expected_pngs = set()
    for root in (world["files"], world["names"], world["never"], world["special"]):
        for path in root.rglob("*"):
            if path.is_symlink() or not path.is_file() or path.stat().st_size < 32:
                continue
            dest = out / path.relative_to(root).parent / f"{path.name}.png"
            if len(os.fsencode(dest.name)) > NAME_MAX:
                assert any(shown(path) in line and "File name too long" in line for line in lines)
                continue
            expected_pngs.add(dest)
            with Image.open(dest) as im:
                assert im.mode == "L"
                assert np.array_equal(np.asarray(im), byte_plot(path.read_bytes()))
    assert pngs == expected_pngs
    for name in ("empty.bin", "one_byte.bin", "pe_mz_only.exe"):
        assert any(line.startswith(f"error: {world['files'] / name}: ") for line in lines), name
    assert not marker.exists()


def test_convert_dataset_refuses_absurd_sizes(
    tmp_path: Path, corpus_files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    src = str(corpus_files["pe_valid.exe"])
    for args, message in (
        (["--image-size", "100000"], "image_size 100000 is over the limit of 4096"),
        (["--image-size", "0"], "image_size must be a positive integer"),
        (["--kind", "bytes", "--max-len", "-1"], "max_len must be a positive integer"),
        (["--kind", "pixels"], "unknown input kind"),
    ):
        run = call_main(["convert", src, "-o", str(tmp_path / "ds"), "--format", "dataset", *args], capsys)
        check_run(run, [2])
        assert message in run.stderr, run


# -------------------------------------------------------------------------------- datasets, models


@pytest.fixture
def tree(tmp_path: Path, corpus_files: dict[str, Path], marker: Path) -> Path:
    """A labelled binary tree (root/benign, root/malware) salted with every bad input."""
    root = tmp_path / "tree"
    write_files(root / "benign", ["pe_valid.exe", "text.txt", "random_seeded.bin"])
    write_files(root / "malware")
    make_special(root / "malware" / "special")
    make_never_run(root / "malware" / "never", marker)
    return root


@pytest.mark.slow
def test_data_info_and_evaluate_on_a_tree_full_of_bad_files(
    tree: Path, detector: Path, cli_env: dict[str, str], marker: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = run_cli("data", "info", tree, env=cli_env)
    check_run(run, [0], errors=0)
    assert "skipped while listing" in run.stderr
    run = run_cli("evaluate", detector, "--data", tree, "--json", env=cli_env)
    check_run(run, [0], errors=0)
    m = json.loads(run.stdout)
    assert m["n"] >= len(FILES) and set(m["classes"]) == {"benign", "malware"}
    for data, fragment in (
        (tree / "malware" / "special" / "fifo", "no samples found"),
        (tree / "nowhere", "no such file or folder"),
        (tree / "benign" / "text.txt", "not a dataset"),
    ):
        run = call_main(["evaluate", str(detector), "--data", str(data)], capsys)
        (line,) = check_run(run, [2], errors=1)
        assert fragment in line, line
    assert not marker.exists()


@pytest.mark.slow
def test_every_model_command_refuses_every_bad_checkpoint_with_one_line(
    tmp_path: Path, detector: Path, tree: Path, marker: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = make_bad_checkpoints(tmp_path / "ckpts", detector, marker)
    empty_run = tmp_path / "empty_run"
    empty_run.mkdir()
    loop = tmp_path / "loop.pt"
    os.symlink(loop, loop)
    fifo = tmp_path / "fifo.pt"
    os.mkfifo(fifo)
    refs = {**bad, "empty_run": empty_run, "loop": loop, "fifo": fifo, "missing": tmp_path / "nope.pt"}
    why = {
        "truncated": "truncated",
        "truncated_tail": "truncated",
        "empty": "empty file",
        "random": "not a malvision",
        "other_arch": "cannot rebuild the model",
        "code_on_load": "could run code on load",
        "bare_pickle": "not a malvision checkpoint",
        "huge_image_size": "image_size 1000000000 is over the limit",
        "empty_run": "no best.pt",
        "loop": "",
        "fifo": "",
        "missing": "no such model file",
    }
    sample = str(tree / "benign" / "pe_valid.exe")
    for key, ref in refs.items():
        for cmd in (
            ["info", str(ref)],
            ["info", "--json", str(ref)],
            ["export", str(ref), "-o", str(tmp_path / "out.onnx")],
            ["scan", "-m", str(ref), sample],
            ["evaluate", str(ref), "--data", str(tree)],
        ):
            run = call_main(cmd, capsys)
            (line,) = check_run(run, [2], errors=1)
            assert why[key] in line and (str(ref) in line or key == "missing"), (key, cmd, line)
    assert not (tmp_path / "out.onnx").exists()
    assert not marker.exists(), "unpickling a checkpoint ran code"


@pytest.mark.slow
def test_info_and_export_of_a_good_checkpoint(
    detector: Path, tmp_path: Path, cli_env: dict[str, str]
) -> None:
    run = run_cli("info", "--json", detector, env=cli_env)
    check_run(run, [0], errors=0)
    assert json.loads(run.stdout)["classes"] == ["benign", "malware"]
    run = run_cli("export", detector, "-o", tmp_path / "m.onnx", env=cli_env)
    assert run.code == 0 and "Traceback" not in run.stderr and not error_lines(run.stderr), run  # torch.onnx
    # may warn (TracerWarning) on stderr: noise, not a failure
    assert json.loads(run.stdout)["parity_ok"] is True


def test_output_of_a_hostile_checkpoint_card_is_not_markup(
    tmp_path: Path, detector: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Class names and card entries are data: '[/]' in them must print, not crash rich."""
    import torch

    payload = torch.load(detector, map_location="cpu", weights_only=True)
    payload["classes"] = ["[/]", "malware[/bold]"]
    payload["extra"] = {"card": {"[/]": "[/red]", "notes": "[link=file:///etc/passwd]x[/link]"}}
    path = tmp_path / "markup.pt"
    torch.save(payload, path)
    run = call_main(["info", str(path)], capsys)
    check_run(run, [0], errors=0)
    assert "[/red]" in run.stdout and "[link=file:///etc/passwd]" in run.stdout


# ------------------------------------------------------------------------------ what the code may do

# Calls and imports that would run, import or unpickle something. A sample must never reach any of them.
FORBIDDEN_CALLS = {
    "exec",
    "eval",
    "compile",
    "__import__",
    "execfile",
    "input",
    "pickle.load",
    "pickle.loads",
    "pickle.Unpickler",
    "cPickle.load",
    "cPickle.loads",
    "dill.load",
    "dill.loads",
    "marshal.load",
    "marshal.loads",
    "shelve.open",
    "yaml.load",
    "yaml.unsafe_load",
    "jsonpickle.decode",
    "os.system",
    "os.popen",
    "os.startfile",
    "os.execv",
    "os.execve",
    "os.execvp",
    "os.execl",
    "os.execlp",
    "os.spawnv",
    "os.spawnl",
    "os.posix_spawn",
    "os.posix_spawnp",
    "pty.spawn",
    "importlib.import_module",
    "importlib.util.spec_from_file_location",
    "importlib.machinery.SourceFileLoader",
    "runpy.run_path",
    "runpy.run_module",
    "ctypes.CDLL",
    "ctypes.cdll.LoadLibrary",
    "subprocess.run",
    "subprocess.Popen",
    "subprocess.call",
    "subprocess.check_call",
    "subprocess.check_output",
    "extractall",
    "extract",  # zip/tar extraction to disk
}
FORBIDDEN_MODULES = {
    "subprocess",
    "marshal",
    "shelve",
    "runpy",
    "ctypes",
    "dill",
    "cloudpickle",
    "pty",
    "code",
    "importlib",
    "importlib.util",
    "importlib.machinery",
}
# Justified exceptions: (file relative to src/malvision, what) -> why it is safe.
ALLOWED = {
    ("checkpoint.py", "import pickle"): "only for the pickle.UnpicklingError class (checked below)",
}


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return "?"


def audit(source: str, filename: str) -> list[str]:
    """Forbidden calls, imports and unsafe loads in ``source``."""
    problems = []
    for node in ast.walk(ast.parse(source, filename)):
        where = f"{filename}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import | ast.ImportFrom):
            mods = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            for mod in mods:
                risky = mod in FORBIDDEN_MODULES or mod in ("pickle", "cPickle")
                if risky and (filename, f"import {mod}") not in ALLOWED:
                    problems.append(f"{where}: import {mod}")
            if isinstance(node, ast.ImportFrom) and node.module in (
                "pickle",
                "os",
                "importlib",
                "subprocess",
            ):
                for a in node.names:
                    if f"{node.module}.{a.name}" in FORBIDDEN_CALLS or a.name == "import_module":
                        problems.append(f"{where}: from {node.module} import {a.name}")
        elif (
            isinstance(node, ast.Attribute)
            and _dotted(node.value) == "pickle"
            and node.attr != "UnpicklingError"
        ):
            problems.append(f"{where}: pickle.{node.attr}")
        elif isinstance(node, ast.Call):
            name = _dotted(node.func)
            short = name.rsplit(".", 1)[-1]
            kw = {k.arg: k.value for k in node.keywords}
            if (isinstance(node.func, ast.Name) and name in FORBIDDEN_CALLS) or (
                "." in name and (name in FORBIDDEN_CALLS or short in ("extractall", "extract"))
            ):
                problems.append(f"{where}: {name}()")
            if name == "torch.load":
                ok = isinstance(kw.get("weights_only"), ast.Constant) and kw["weights_only"].value is True
                if not ok or filename != "checkpoint.py":
                    problems.append(
                        f"{where}: torch.load without weights_only=True (or outside checkpoint.py)"
                    )
            if (
                name in ("np.load", "numpy.load")
                and isinstance(kw.get("allow_pickle"), ast.Constant)
                and (kw["allow_pickle"].value is not False)
            ):
                problems.append(f"{where}: np.load(allow_pickle=True)")
            if name in ("torch.jit.load", "torch.package.PackageImporter", "onnx.load_model_from_string"):
                problems.append(f"{where}: {name}()")
    return problems


def test_source_never_executes_imports_or_unpickles_what_it_reads() -> None:
    files = sorted(SRC.rglob("*.py"))
    assert len(files) > 20
    problems = [p for f in files for p in audit(f.read_text(), f.relative_to(SRC).as_posix())]
    assert problems == [], "\n".join(problems)


def test_the_source_audit_catches_what_it_should() -> None:
    bad = (
        "import subprocess, pickle\nfrom importlib import import_module\nimport torch, numpy as np\n"
        "eval(x)\nexec(y)\nos.system('rm')\npickle.loads(b)\ntorch.load(p)\ntorch.load(p, weights_only=False)\n"
        "np.load(p, allow_pickle=True)\nzf.extractall(d)\nmodel.eval()\n"
    )
    found = audit(bad, "scan.py")
    for what in (
        "import subprocess",
        "import pickle",
        "import_module",
        "eval()",
        "exec()",
        "os.system()",
        "pickle.loads",
        "np.load(allow_pickle=True)",
        "zf.extractall()",
    ):
        assert any(what in p for p in found), (what, found)
    assert sum("torch.load" in p for p in found) == 2
    assert not any(":12:" in p for p in found), "model.eval() is not eval()"
    assert (
        audit("import torch\ntorch.load(p, map_location='cpu', weights_only=True)\n", "checkpoint.py") == []
    )
