"""The experiment commands (train, benchmark, gradients, train-detector, bundle, evaluate, export, info,
compare-detectors, convert) against bad settings and unwritable outputs: one ``error:`` line or a
usage error, a non-zero exit, never a traceback, and nothing left behind that a corrected rerun trips on.
"""

# ruff: noqa: F811  (pytest fixtures imported from other test modules are redefined as arguments)
from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from corpus.harness import call_main, check_run
from malvision.cli import app
from malvision.errors import MalvisionError
from malvision.train import TrainConfig
from test_detector import pe_feature_cache  # noqa: F401 - fixture
from test_experiments import opcode_cache  # noqa: F401 - fixture

TRAIN_LIKE = {
    "train": lambda cache, out: ["train", "-m", "cnn", "-d", cache, "-o", out],
    "benchmark": lambda cache, out: ["benchmark", "--models", "cnn", "-d", cache, "-o", out, "--folds", "2"],
}


@pytest.mark.parametrize("command", sorted(TRAIN_LIKE))
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--batch-size", "0"], "batch_size must be a whole number of at least 1, got 0"),
        (["--epochs", "0"], "epochs must be a whole number of at least 1, got 0"),
        (["--patience", "-1"], "patience must be a whole number of at least 1, got -1"),
        (["--threads", "-2"], "threads must be a whole number of at least 1, got -2"),
        (["--lr", "-1"], "lr must be positive, got -1.0"),
        (["--lr", "nan"], "lr must be positive, got nan"),
        (["--max-len", "0"], "max_len must be a whole number of at least 1, got 0"),
        (["--image-size", "0", "--kind", "image"], "image_size must be a positive integer, got 0"),
    ],
)
def test_training_settings_are_refused_before_anything_is_written(
    command: str,
    args: list[str],
    message: str,
    opcode_cache: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "run"
    run = call_main([*TRAIN_LIKE[command](str(opcode_cache), str(out)), *args], capsys)
    assert check_run(run, [2], errors=1) == [f"error: {message}"]
    assert not out.exists()


def test_train_config_refuses_what_cannot_train() -> None:
    for bad in (dict(label_smoothing=5.0), dict(val_fraction=1.0), dict(clip_norm=0.0), dict(epochs=2.5)):
        with pytest.raises(MalvisionError):
            TrainConfig(**bad)  # type: ignore[arg-type]
    TrainConfig(epochs=1, patience=1, threads=None, max_len=None)  # the smallest that trains


@pytest.mark.parametrize(
    "args",
    [
        ["--seq-len", "0"],
        ["--max-train", "-1"],
        ["--epochs", "0"],
        ["--lengths", "abc"],
        ["--lengths", "16,0"],
    ],
)
def test_gradients_refuses_bad_settings_with_a_usage_error(
    args: list[str], opcode_cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "g"
    run = call_main(["gradients", "-d", str(opcode_cache), "-o", str(out), *args], capsys)
    check_run(run, [2])
    assert not out.exists()


def test_outputs_that_cannot_be_made_are_one_error_line(
    opcode_cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_bytes(b"not a folder")
    run = call_main(["train", "-m", "cnn", "-d", str(opcode_cache), "-o", str(blocker / "run")], capsys)
    (line,) = check_run(run, [2], errors=1)
    assert line == f"error: {blocker / 'run'}: cannot write (Not a directory)"
    run = call_main(["convert", str(blocker), "-o", str(blocker / "png")], capsys)
    assert check_run(run, [2], errors=1) == [f"error: {blocker / 'png'}: cannot write (Not a directory)"]


@pytest.mark.slow
def test_train_detector_refuses_bad_settings_and_leaves_no_run_behind(
    pe_feature_cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "det"
    base = ["train-detector", "-d", str(pe_feature_cache / "cache"), "-o", str(out), "-m", "gbt"]
    cases = [
        (["--target-fpr", "2"], "target_fpr must be between 0 and 1, got 2.0"),
        (["--target-fpr", "0"], "target_fpr must be between 0 and 1, got 0.0"),
        (["--protocols", "bogus"], "unknown protocol 'bogus'; use source or group"),
        (["--folds", "1"], "n_splits must be at least 2, got 1"),
        (["-m", "nosuch"], "unknown model 'nosuch'"),
        (["--group-power", "0.5", "-m", "mlp"], "group_power and type_power weigh the rows"),
        (["--set", "members=2"], "model 'gbt' is fitted in one call and takes no members"),
        (["--set", "members=0", "-m", "mlp"], "members must be a whole number of at least 1, got 0"),
    ]
    for args, message in cases:
        run = call_main([*base, *args], capsys)
        (line,) = check_run(run, [2], errors=1)
        assert message in line, run
        assert not out.exists(), args
    run = call_main([*base, "--set", "n_trees=5", "--folds", "2", "--protocols", "group"], capsys)
    assert run.code == 0, run  # the same folder then takes a good run
    assert (out / "model.pt").is_file()


@pytest.fixture(scope="module")
def one_epoch_run(opcode_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A `train` run folder (best.pt, metrics.json with a test split) the tests below only read."""
    run = tmp_path_factory.mktemp("trained") / "run"
    r = CliRunner().invoke(
        app, ["train", "-m", "cnn", "-d", str(opcode_cache), "-o", str(run), "--epochs", "1"]
    )
    assert r.exit_code == 0, r.output
    return run


def test_bundle_and_evaluate_refuse_what_they_would_have_ignored(
    one_epoch_run: Path, opcode_cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = one_epoch_run
    junk = tmp_path / "junk.json"
    junk.write_bytes(bytes(range(128, 256)))
    r = call_main(["bundle", str(run), "-o", str(tmp_path / "b.pt"), "--cv", str(junk)], capsys)
    assert check_run(r, [2], errors=1) == [
        f"error: {run}: has its own test figures; --cv is for a run trained on every sample"
    ]
    assert not (tmp_path / "b.pt").exists()
    r = call_main(["evaluate", str(run), str(opcode_cache), "--json"], capsys)  # `evaluate RUN DATA`
    check_run(r, [0])
    r = call_main(["evaluate", str(run), str(opcode_cache), str(opcode_cache)], capsys)
    assert check_run(r, [2], errors=1) == [
        f"error: evaluate takes one model and one dataset; left over: {opcode_cache}"
    ]
    r = call_main(["evaluate", str(run), "--model", "default", "--data", str(opcode_cache)], capsys)
    assert check_run(r, [2], errors=1) == [
        f"error: evaluate takes one model and one dataset; left over: {run}"
    ]


def test_export_into_a_folder_it_makes_and_not_under_a_file(
    one_epoch_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = one_epoch_run
    r = call_main(["export", str(run / "best.pt"), "--out", str(tmp_path / "new" / "m.onnx")], capsys)
    check_run(r, [0])
    assert (tmp_path / "new" / "m.onnx").is_file()
    r = call_main(["export", str(run / "best.pt"), "--out", str(run / "best.pt" / "m.onnx")], capsys)
    (line,) = check_run(r, [2], errors=1)
    assert line.startswith(f"error: {run / 'best.pt' / 'm.onnx'}: cannot write"), line


def test_info_refuses_markdown_without_groups(capsys: pytest.CaptureFixture[str]) -> None:
    run = call_main(["info", "default", "--markdown"], capsys)
    check_run(run, [2])
    assert "--markdown is a form of --groups" in run.stderr


def test_compare_detectors_needs_a_folder_of_held_out_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a_file = tmp_path / "f.bin"
    a_file.write_bytes(b"x")
    for heldout in (tmp_path / "missing", a_file):
        run = call_main(
            ["compare-detectors", str(tmp_path), "-o", str(tmp_path / "b"), "--heldout", str(heldout)], capsys
        )
        check_run(run, [2])
        assert "--heldout" in run.stderr and not (tmp_path / "b").exists()


def test_an_uncompiled_c_module_is_one_line(tmp_path: Path) -> None:
    """A source tree used without `pip install`: no malvision._bytepass. One line that says what to do."""
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['malvision._bytepass'] = None; sys.argv = ['malvision', 'info', 'default']\n"
        "from malvision.__main__ import main; main()"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120
    )
    assert proc.returncode == 2 and proc.stderr.splitlines() == [
        "error: malvision's C module (malvision._bytepass) is not built: install malvision with pip, which "
        "compiles it (`pip install -e .` in a checkout; a C compiler is needed)"
    ]


def test_a_late_ctrl_c_cannot_turn_a_finished_command_into_a_traceback(tmp_path: Path) -> None:
    """Once the command has done its work and said so, a Ctrl-C leaves at once with 130 and no traceback (it
    printed 'Exception ignored ... KeyboardInterrupt' from the shutdown and lost the exit status)."""
    import subprocess
    import sys

    code = (
        "import signal, sys; sys.argv = ['malvision', '--version']\n"
        "from malvision.__main__ import _quit_now, main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print(signal.getsignal(signal.SIGINT) is _quit_now, flush=True)\n"
        "signal.raise_signal(signal.SIGINT)\n"
        "print('not reached')"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=60
    )
    assert proc.stdout.splitlines()[-1] == "True" and proc.returncode == 130, proc.stderr
    assert "Traceback" not in proc.stderr and "KeyboardInterrupt" not in proc.stderr
