"""Several benign corpora combine into one cache (``data build --benign A --benign B``), each file once."""

from __future__ import annotations

import csv
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from malvision import cli
from malvision.data.build import benign_corpora
from malvision.data.cache import CachedDataset
from malvision.errors import MalvisionError

from .helpers import aes_zip, manifest_csv, sha

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "build_extra_benign.sh"
BULK = SCRIPT.with_name("benign_bulk.txt")  # SET=bulk's pins, one a line: PyPI
BULK_NPM = SCRIPT.with_name("benign_bulk_npm.txt")  # ... and npm


def corpus(root: Path, files: dict[str, bytes], ext: bool) -> Path:
    """A benign corpus: pe/<sha256> + manifest_ext.csv (``ext``) or the plain manifest.csv."""
    (root / "pe").mkdir(parents=True)
    head = "sha256,size,source_package,original_path" + (",source_group,machine" if ext else "")
    rows = [head]
    for name, data in files.items():
        (root / "pe" / sha(data)).write_bytes(data)
        rows.append(f"{sha(data)},{len(data)},pkg:{root.name},{name}" + (",pypi,amd64" if ext else ""))
    (root / ("manifest_ext.csv" if ext else "manifest.csv")).write_text("\n".join(rows) + "\n")
    return root


@pytest.fixture
def two_corpora(tmp_path: Path, rng: np.random.Generator) -> tuple[Path, Path, Path, set[str]]:
    blob = [b"MZ" + rng.integers(0, 256, 1500 + 100 * k, dtype=np.uint8).tobytes() for k in range(5)]
    a = corpus(tmp_path / "a", {"a0.dll": blob[0], "a1.exe": blob[1], "same.dll": blob[2]}, ext=True)
    b = corpus(tmp_path / "b", {"copy.dll": blob[2], "b0.pyd": blob[3], "b1.exe": blob[4]}, ext=False)
    mal = b"MZ" + rng.integers(0, 256, 3000, dtype=np.uint8).tobytes()
    zip_path = aes_zip(
        tmp_path / "mal.zip",
        {f"Fam/{sha(mal)}": mal, "manifest.csv": manifest_csv([(sha(mal), "Fam", "pe", len(mal), "m.exe")])},
    )
    return a, b, zip_path, {sha(x) for x in blob}


def test_benign_corpora_keep_each_file_once(two_corpora: tuple[Path, Path, Path, set[str]]) -> None:
    a, b, _, shas = two_corpora
    parts = benign_corpora([a, b])
    assert [len(p) for p in parts] == [3, 2]  # b's copy of a file in a is left out
    assert {r.sha256 for p in parts for r in p.records} == shas
    assert [len(p) for p in benign_corpora(str(a))] == [3]  # one folder, as before


def test_cli_combines_benign_dirs(
    two_corpora: tuple[Path, Path, Path, set[str]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    a, b, zip_path, shas = two_corpora
    out = tmp_path / "cache"
    args = ["data", "build", "--kind", "image", "--image-size", "8", "--benign", a, "--benign", b]
    monkeypatch.setattr(
        sys, "argv", ["malvision", *map(str, [*args, "--malware-zip", zip_path, "--out", out])]
    )
    with pytest.raises(SystemExit) as exc:
        cli.main()
        sys.exit(0)
    assert exc.value.code in (0, None), capsys.readouterr().err
    ds = CachedDataset(out)
    benign = [r for r in ds.records if r.label == "benign"]
    assert {r.sha256 for r in benign} == shas and len(benign) == 5
    assert {r.group for r in benign} == {"pkg:a", "pkg:b"}
    assert ds.labels.tolist().count(ds.classes.index("malware")) == 1
    assert ds.meta["n_failed"] == 0 and not ds.meta.get("duplicates")


ARRAYS = r"(\w+_PKGS|PYPI_\w+)=\(([^)]*)\)"  # the package lists of the script: NAME=(...)


def test_extra_benign_script_pins_every_package() -> None:
    """Every package of every set (the first widening, SET=tools, gui, calib, win32, tail, heldout) is pinned to
    one version (SET=bulk: test_bulk_set_pins_new_projects_once)."""
    text = re.sub(r"#[^\n]*", "", SCRIPT.read_text())  # comments may hold parentheses
    arrays = re.findall(ARRAYS, text)
    assert {name for name, _ in arrays} == {
        "DEB_PKGS",
        "MONO_PKGS",
        "CIL_PKGS",
        "PYPI_AMD64",
        "PYPI_WIN32",
        "NPM_PKGS",
    }
    pin = {
        "PYPI": r"[\w.-]+==[\w.]+",
        "NPM": r"(@[\w.-]+/)?[\w.-]+@\d[\w.+-]*",
        "": r"[\w.+-]+(:i386)?=[\w.:~+-]+",
    }
    for name, body in arrays:
        pattern = pin["PYPI" if name.startswith("PYPI") else "NPM" if name.startswith("NPM") else ""]
        assert all(re.fullmatch(pattern, p) for p in body.split()), name
    filled = [name for name, body in arrays if body.split()]
    # the tools, gui, calib, win32, tail and heldout sets have their own lists (calib's win32 pins are its
    # win_amd64 ones; win32 fetches no win_amd64 wheel)
    assert (
        filled.count("PYPI_WIN32") == 6 and filled.count("NPM_PKGS") == 7 and filled.count("PYPI_AMD64") == 4
    )


def test_heldout_set_shares_no_project_with_the_training_sets() -> None:
    """SET=heldout measures false positives on projects no model saw: none of its packages may be a
    package, or another platform build of a package, that a training set fetches."""
    text = re.sub(r"#[^\n]*", "", SCRIPT.read_text())
    blocks = re.findall(r'if \[ "\$SET" = heldout \]; then\n(.*?)\nfi\n', text, flags=re.S)

    def project(pin: str) -> str:
        return re.sub(r"-(win32|windows)-.*$", "", package(pin))

    heldout_lists = [a for b in blocks for a in re.findall(ARRAYS, b)]
    assert sorted(name for name, _ in heldout_lists) == ["NPM_PKGS", "PYPI_AMD64", "PYPI_WIN32"]
    heldout = {project(p) for _, body in heldout_lists for p in body.split()}
    rest = text
    for b in blocks:
        rest = rest.replace(b, "")
    trained = {project(p) for _, body in re.findall(ARRAYS, rest) for p in body.split()}
    assert len(heldout) > 25 and len(trained) > 200
    assert not heldout & trained, heldout & trained


def pins_of(path: Path) -> list[str]:
    return [p for line in path.read_text().splitlines() if (p := line.split("#")[0].strip())]


def package(pin: str) -> str:
    """'Foo_Bar==1.0' -> 'foo-bar'; '@scope/name@1.0' -> '@scope/name'."""
    return re.split(r"==|(?<=.)@", pin)[0].lower().replace("_", "-")


def test_bulk_set_pins_new_projects_once() -> None:
    """SET=bulk pins each of its projects once, to one version, and draws from no project of another set or
    of a held-out set of programs."""
    pypi, npm = pins_of(BULK), pins_of(BULK_NPM)
    assert len(pypi) > 500 and all(re.fullmatch(r"[\w.-]+==[\w.!+]+", p) for p in pypi)
    assert len(npm) > 200 and all(re.fullmatch(r"(@[\w.-]+/)?[\w.-]+@\d[\w.+-]*", p) for p in npm)
    names = [package(p) for p in pypi + npm]
    assert len(set(names)) == len(names)
    text = re.sub(r"#[^\n]*", "", SCRIPT.read_text())
    other = {package(p) for _, body in re.findall(ARRAYS, text) for p in body.split()}
    assert not set(names) & other, set(names) & other
    heldout = set()
    for path in SCRIPT.parent.glob("benign_github_heldout*.csv"):  # every held-out set of programs
        with path.open(newline="") as f:
            heldout |= {r["project"].lower().replace(" ", "-") for r in csv.DictReader(f)}
    assert len(heldout) > 200 and not set(names) & heldout, set(names) & heldout


def test_max_per_group_caps_a_project_over_corpora(tmp_path: Path, rng: np.random.Generator) -> None:
    blob = [b"MZ" + rng.integers(0, 256, 1200 + 50 * k, dtype=np.uint8).tobytes() for k in range(6)]
    first = corpus(tmp_path / "a" / "proj", {f"f{k}.dll": blob[k] for k in range(3)}, ext=True)
    later = corpus(tmp_path / "b" / "proj", {f"g{k}.pyd": blob[k] for k in range(3, 6)}, ext=True)
    kept = [{r.sha256 for r in p.records} for p in benign_corpora([first, later], max_per_group=4)]
    assert kept[0] == {sha(x) for x in blob[:3]}  # the earlier corpus first
    assert kept[1] == {min(sha(x) for x in blob[3:])}  # then the room left, by sha256
    (only,) = benign_corpora([first, later], max_per_group=2)
    assert {r.sha256 for r in only.records} == set(sorted(sha(x) for x in blob[:3])[:2])
    with pytest.raises(MalvisionError, match="max-per-group"):
        benign_corpora([first], max_per_group=0)
