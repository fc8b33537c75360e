"""ONNX export: torch and ONNX Runtime agree on real PE files; the scanner picks the export only when
it is verified and current, and then when it is faster or torch is not loaded."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pip
import pytest
from typer.testing import CliRunner

from malvision.cli import app
from malvision.errors import CheckpointError, MalvisionError
from malvision.export import PARITY_ATOL, export_onnx, onnx_report, sidecar
from malvision.scan import Scanner, Verdict

runner = CliRunner()
# Real Windows PE files present in every environment: the launchers pip vendors from distlib.
PIP_LAUNCHERS = sorted(Path(pip.__file__).parent.joinpath("_vendor", "distlib").glob("*.exe"))


@pytest.fixture
def detector(tiny_detector: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "detector.pt"
    shutil.copyfile(tiny_detector, dest)
    return dest


@pytest.mark.skipif(not PIP_LAUNCHERS, reason="pip ships no distlib launchers here")
def test_torch_and_onnx_scores_agree_on_real_pe_files(detector: Path) -> None:
    report = export_onnx(detector)
    assert report["parity_ok"] and report["max_abs_diff"] < PARITY_ATOL
    torch_v = [v for v in Scanner(detector, backend="torch").scan(PIP_LAUNCHERS) if isinstance(v, Verdict)]
    onnx_v = [v for v in Scanner(detector, backend="onnx").scan(PIP_LAUNCHERS) if isinstance(v, Verdict)]
    scored = [(a, b) for a, b in zip(torch_v, onnx_v, strict=True) if a.score is not None]
    assert len(scored) >= 2
    for a, b in scored:
        assert a.path == b.path and a.sha256 == b.sha256
        assert abs(a.score - b.score) < PARITY_ATOL


def test_auto_backend_uses_only_a_current_verified_export(detector: Path) -> None:
    assert onnx_report(detector) is None  # nothing exported yet
    assert Scanner(detector).backend == "torch"
    runner.invoke(app, ["export", str(detector), "--onnx"])
    report = json.loads(sidecar(detector.with_suffix(".onnx")).read_text())
    assert report["parity_ok"] and onnx_report(detector) == report
    faster = "onnx" if report["onnx_faster"] else "torch"
    assert Scanner(detector).backend == faster
    # A retrained checkpoint makes the export stale: auto falls back to torch.
    detector.write_bytes(detector.read_bytes())  # same bytes: still current
    assert Scanner(detector).backend == faster
    report["checkpoint_sha256"] = "0" * 64
    sidecar(detector.with_suffix(".onnx")).write_text(json.dumps(report))
    assert onnx_report(detector) is None
    assert Scanner(detector).backend == "torch"


def test_onnx_backend_without_export_is_a_clear_error(detector: Path) -> None:
    r = runner.invoke(app, ["scan", "--model", str(detector), "--backend", "onnx", str(detector)])
    assert r.exit_code != 0
    assert "malvision export" in str(r.exception) or "malvision export" in r.output


def test_onnx_scan_never_imports_torch(detector: Path, tmp_path: Path) -> None:
    """A current export carries the spec and card: scanning on ONNX starts without torch (fast)."""
    import subprocess
    import sys

    export_onnx(detector)
    report = json.loads(sidecar(detector.with_suffix(".onnx")).read_text())
    assert report["model"]["spec"]["kind"] == "image" and "training_sha256" not in report["model"]["card"]
    sample = tmp_path / "sample.exe"
    sample.write_bytes((PIP_LAUNCHERS[0] if PIP_LAUNCHERS else detector).read_bytes())
    code = (
        "import sys, json\n"
        "from malvision.scan import Scanner\n"
        f"s = Scanner({str(detector)!r}, backend='onnx')\n"
        f"v = list(s.scan([{str(sample)!r}]))[0]\n"
        "print(json.dumps({'torch': 'torch' in sys.modules, 'score': v.score, 'backend': s.backend}))\n"
    )
    out = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, check=True).stdout)
    assert out == {"torch": False, "score": out["score"], "backend": "onnx"}
    # auto, in a process without torch: ONNX even where torch timed faster per batch (the import costs more)
    side = sidecar(detector.with_suffix(".onnx"))
    side.write_text(json.dumps({**report, "onnx_faster": False}))
    auto = code.replace("backend='onnx'", "backend='auto'")
    again = json.loads(subprocess.run([sys.executable, "-c", auto], capture_output=True, check=True).stdout)
    assert again == {**out, "score": again["score"]} and again["score"] == out["score"]
    assert Scanner(detector).backend == "torch"  # this process has torch loaded: the per-batch timing decides
    torch_v = next(iter(Scanner(detector, backend="torch").scan([sample])))
    assert isinstance(torch_v, Verdict)
    if torch_v.score is None:
        assert out["score"] is None
    else:
        assert abs(torch_v.score - out["score"]) < PARITY_ATOL
    # explain and the HTTP model summary still reach the checkpoint, loaded on first use
    assert Scanner(detector, backend="onnx").checkpoint.model_name == report["model"]["name"]


def test_a_malformed_sidecar_record_is_one_line(detector: Path) -> None:
    export_onnx(detector)
    side = sidecar(detector.with_suffix(".onnx"))
    report = json.loads(side.read_text())
    report["model"]["card"] = ["not", "a", "dict"]
    side.write_text(json.dumps(report))
    r = runner.invoke(app, ["scan", "--model", str(detector), "--backend", "onnx", str(detector)])
    assert isinstance(r.exception, CheckpointError)  # the CLI's main prints it as one line, exit 2
    assert "malformed model record" in str(r.exception)


@pytest.mark.skipif(not PIP_LAUNCHERS, reason="pip ships no distlib launchers here")
def test_the_default_scans_on_numpy_trees_that_score_as_torch(tmp_path: Path) -> None:
    """The shipped default's export carries its trees as numpy arrays: auto walks them (no ONNX Runtime)
    with torch's scores; arrays that are not the ones the sidecar vouches for fall back to ONNX."""
    from malvision.bundled import resolve_checkpoint

    shipped = resolve_checkpoint("default")
    for src in shipped.parent.glob(f"{shipped.stem}.*"):
        shutil.copyfile(src, tmp_path / src.name)
    model = tmp_path / shipped.name
    scanner = Scanner(model)
    assert scanner.backend == "numpy"
    side = sidecar(model.with_suffix(".onnx"))  # torch timed faster at export: still the trees
    report = json.loads(side.read_text())
    side.write_text(json.dumps({**report, "trees": {**report["trees"], "ms_per_batch": 99.0}}))
    assert "torch" in sys.modules and Scanner(model).backend == "numpy"
    numpy_v = [v for v in scanner.scan(PIP_LAUNCHERS) if isinstance(v, Verdict)]
    torch_v = [v for v in Scanner(model, backend="torch").scan(PIP_LAUNCHERS) if isinstance(v, Verdict)]
    scored = [(a, b) for a, b in zip(numpy_v, torch_v, strict=True) if a.score is not None]
    assert len(scored) >= 2 and all(abs(a.score - b.score) < PARITY_ATOL for a, b in scored)
    assert Scanner(model, backend="onnx").backend == "onnx"  # asked for: ONNX Runtime
    assert Scanner(model, backend="numpy").backend == "numpy"
    trees = model.with_suffix(".trees.npz")
    trees.write_bytes(trees.read_bytes() + b"\0")
    assert Scanner(model).backend == "onnx"
    with pytest.raises(MalvisionError, match="no current numpy trees"):
        Scanner(model, backend="numpy")


def test_a_bundled_model_exports_into_the_working_folder_not_the_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from malvision.bundled import BUNDLED, WEIGHTS_DIR

    shipped = WEIGHTS_DIR / BUNDLED["pe-detector"]
    before = {p.name: p.stat().st_mtime_ns for p in WEIGHTS_DIR.iterdir()}
    monkeypatch.chdir(tmp_path)
    r = runner.invoke(app, ["export", "pe-detector", "--onnx"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "pe-detector.onnx").is_file() and shipped.with_suffix(".onnx").is_file()
    assert {p.name: p.stat().st_mtime_ns for p in WEIGHTS_DIR.iterdir()} == before


@pytest.mark.skipif(not PIP_LAUNCHERS, reason="pip ships no distlib launchers here")
def test_an_export_scans_on_its_own_and_only_the_file_its_sidecar_names(
    detector: Path, tmp_path: Path
) -> None:
    """Deploying the .onnx and its .json without the checkpoint: scan and the Python API read them alone, with the
    checkpoint's verdicts; a changed or unvouched export, or asking for torch, is one error line."""
    from malvision.checkpoint import load_checkpoint

    want = [v.to_dict() for v in Scanner(detector, backend="torch").scan(PIP_LAUNCHERS)]
    alone = tmp_path / "deploy" / "model.onnx"
    alone.parent.mkdir()
    export_onnx(detector, alone)
    detector.unlink()
    scanner = Scanner(alone)
    assert scanner.backend == "onnx"
    got = [v.to_dict() for v in scanner.scan(PIP_LAUNCHERS)]
    assert [g["verdict"] for g in got] == [w["verdict"] for w in want]
    assert all(
        abs(g["score"] - w["score"]) < PARITY_ATOL for g, w in zip(got, want, strict=True) if w["score"]
    )
    r = runner.invoke(app, ["scan", "--model", str(alone), "--json", str(PIP_LAUNCHERS[0])])
    assert r.exit_code in (0, 1) and json.loads(r.stdout)[0] == {**got[0], "path": str(PIP_LAUNCHERS[0])}
    with pytest.raises(MalvisionError, match="an ONNX export has no torch model; give the .pt"):
        Scanner(alone, backend="torch")
    with pytest.raises(CheckpointError, match="an ONNX export, not a checkpoint"):
        load_checkpoint(alone)  # info, explain, evaluate: they need the .pt
    report = json.loads(sidecar(alone).read_text())
    for broken, match in (
        ({**report, "onnx_sha256": "0" * 64}, "not the file its model.onnx.json was written for"),
        ({**report, "parity_ok": False}, "no parity-checked model record"),
        ({k: v for k, v in report.items() if k != "model"}, "no parity-checked model record"),
    ):
        sidecar(alone).write_text(json.dumps(broken))
        with pytest.raises(CheckpointError, match=match):
            Scanner(alone)
    sidecar(alone).unlink()
    with pytest.raises(CheckpointError, match="no model.onnx.json beside it"):
        Scanner(alone)
