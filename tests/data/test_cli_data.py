"""``malvision data info|build`` and ``convert --format dataset`` through main(): output and exit codes."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from malvision import cli
from malvision.data.cache import CachedDataset

from .helpers import aes_zip, manifest_csv, sha


def run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str | Path
) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["malvision", *map(str, args)])
    with pytest.raises(SystemExit) as exc:
        cli.main()
        sys.exit(0)
    captured = capsys.readouterr()
    return int(exc.value.code or 0), captured.out, captured.err


@pytest.fixture
def tree(tmp_path: Path, rng: np.random.Generator) -> Path:
    for name, n in {"benign/a": 3000, "benign/b": 5000, "malware/c": 4000, "malware/bad": 4}.items():
        p = tmp_path / "tree" / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(rng.integers(0, 256, n, dtype=np.uint8).tobytes())
    return tmp_path / "tree"


def test_info_raw_and_cache(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tree: Path, tmp_path: Path
) -> None:
    code, out, _ = run(monkeypatch, capsys, "data", "info", tree)
    assert code == 0
    assert "4 samples, 2 classes" in out and "benign" in out and "malware" in out and "median" in out
    code, out, err = run(
        monkeypatch,
        capsys,
        "convert",
        tree,
        "--format",
        "dataset",
        "--out",
        tmp_path / "c",
        "--image-size",
        "8",
    )
    assert code == 2 and "wrote 3 samples" in out and "bad" in err  # 4 bytes: too short, listed at the end
    code, out, _ = run(monkeypatch, capsys, "data", "info", tmp_path / "c")
    assert code == 0 and "(cache)" in out and "kind=image" in out and "image_size=8" in out


def test_info_bad_path_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, err = run(monkeypatch, capsys, "data", "info", tmp_path / "nope")
    assert code == 2 and out == ""
    assert err.strip().splitlines() == [f"error: {tmp_path / 'nope'}: no such file or folder"]
    (tmp_path / "empty").mkdir()
    code, _, err = run(monkeypatch, capsys, "data", "info", tmp_path / "empty")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "no samples found" in err


def test_info_wrong_zip_password(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    z = aes_zip(tmp_path / "s.zip", {"fam/a": b"a" * 100})
    code, _, err = run(monkeypatch, capsys, "data", "info", z, "--password", "nope")
    assert code == 2 and "wrong zip password" in err and "Traceback" not in err
    code, out, _ = run(monkeypatch, capsys, "data", "info", z)
    assert code == 0 and "fam" in out


def test_build_detection_and_opcodes(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    rng: np.random.Generator,
) -> None:
    benign = tmp_path / "benign"
    (benign / "pe").mkdir(parents=True)
    rows = ["sha256,size,source_package"]
    for k in range(3):
        d = rng.integers(0, 256, 1000, dtype=np.uint8).tobytes()
        (benign / "pe" / sha(d)).write_bytes(d)
        rows.append(f"{sha(d)},1000,pkg{k}")
    (benign / "manifest_ext.csv").write_text("\n".join(rows) + "\n")
    mal = rng.integers(0, 256, 2000, dtype=np.uint8).tobytes()
    z = aes_zip(
        tmp_path / "m.zip",
        {f"F/{sha(mal)}": mal, "manifest.csv": manifest_csv([(sha(mal), "F", "pe", 2000, "x")])},
    )
    out_dir = tmp_path / "caches" / "pe"
    args = ["data", "build", "--out", out_dir, "--image-size", "16", "--benign", benign, "--malware-zip", z]
    code, out, err = run(monkeypatch, capsys, *args)
    assert code == 0, err
    assert "wrote 4 samples" in out
    assert (
        "4 of them are files a scan calls unknown (unrecognised binary data, not a Windows PE file 4)" in out
    )
    assert CachedDataset(out_dir).classes == ["benign", "malware"]
    code, _, err = run(monkeypatch, capsys, *args)
    assert code == 2 and "--overwrite" in err
    assert run(monkeypatch, capsys, *args, "--overwrite")[0] == 0
    (tmp_path / "op" / "Fam").mkdir(parents=True)
    (tmp_path / "op" / "Fam" / "s.txt").write_text("push\nmov\n")
    code, out, _ = run(
        monkeypatch,
        capsys,
        "data",
        "build",
        "--opcodes",
        tmp_path / "op",
        "--out",
        tmp_path / "oc",
        "--max-len",
        "8",
    )
    assert code == 0 and "wrote 1 samples" in out
    assert CachedDataset(tmp_path / "oc").spec.kind == "opcodes"
