"""Real-data builders on a tiny synthetic corpus and zip; the real data is only listed, when present."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from malvision.data import build
from malvision.data.build import (
    benign_corpus,
    build_detection_cache,
    build_opcode_cache,
    detection_dataset,
)
from malvision.data.cache import CachedDataset
from malvision.errors import DatasetError

from .helpers import aes_zip, manifest_csv, sha


@pytest.fixture
def corpus(tmp_path: Path, rng: np.random.Generator) -> tuple[Path, Path]:
    benign = tmp_path / "benign"
    (benign / "pe").mkdir(parents=True)
    rows = [
        "sha256,size,source_package,original_path,source_group,machine,pe_type,subsystem,is_dll,is_dotnet"
    ]
    for k in range(6):
        data = b"MZ" + rng.integers(0, 256, 2000 + 100 * k, dtype=np.uint8).tobytes()
        (benign / "pe" / sha(data)).write_bytes(data)
        rows.append(f"{sha(data)},{len(data)},deb:pkg{k % 3}=1.0,usr/lib/x{k}.dll,debian,amd64,PE32+,3,1,0")
    (benign / "manifest_ext.csv").write_text("\n".join(rows) + "\n")
    entries, mrows = {}, []
    for k in range(4):
        data = b"MZ" + rng.integers(0, 256, 3000, dtype=np.uint8).tobytes()
        fam = f"Fam{k % 2}"
        entries[f"{fam}/{sha(data)}"] = data
        mrows.append((sha(data), fam, "pe" if k < 3 else "script", len(data), f"s{k}.exe"))
    entries[f"{mrows[0][1]}/{sha(b'dup')}"] = b"dup" * 10  # not in the manifest
    entries["manifest.csv"] = manifest_csv(mrows)
    return benign, aes_zip(tmp_path / "mal.zip", entries)


def test_detection_dataset(corpus: tuple[Path, Path]) -> None:
    benign, zip_path = corpus
    with detection_dataset(benign, zip_path) as ds:
        assert [r.label for r in ds.records] == ["benign"] * 6 + ["malware"] * 3
        assert [r.group for r in ds.records][:3] == [
            "deb:pkg0",
            "deb:pkg1",
            "deb:pkg2",
        ]  # projects, not releases
        assert {r.group for r in ds.records[6:]} == {"Fam0", "Fam1"}
        assert len(ds.skipped) == 1  # the entry missing from manifest.csv
    with detection_dataset(benign, zip_path, all_kinds=True) as ds:
        assert len(ds) == 10


def test_build_detection_cache(corpus: tuple[Path, Path], tmp_path: Path) -> None:
    benign, zip_path = corpus
    n, failures = build_detection_cache(tmp_path / "c", image_size=8, benign_dir=benign, malware_zip=zip_path)
    assert n == 9 and len(failures) == 1
    ds = CachedDataset(tmp_path / "c")
    assert ds.classes == ["benign", "malware"] and ds.labels.tolist() == [0] * 6 + [1] * 3
    assert ds[0][0].shape == (8, 8)
    for rec in ds.records[6:]:
        assert rec.id.endswith(rec.sha256)
    n, _ = build_detection_cache(
        tmp_path / "b", kind="bytes", max_len=100, benign_dir=benign, malware_zip=zip_path
    )
    assert CachedDataset(tmp_path / "b").lengths.tolist() == [100] * 9
    with pytest.raises(DatasetError, match="opcodes"):
        build_detection_cache(tmp_path / "o", kind="opcodes", benign_dir=benign, malware_zip=zip_path)


def test_duplicate_across_sides_is_skipped(corpus: tuple[Path, Path], tmp_path: Path) -> None:
    benign, zip_path = corpus
    first = sorted((benign / "pe").iterdir())[0]
    data = first.read_bytes()
    listed = {
        f"Fam/{first.name}": data,
        "manifest.csv": manifest_csv([(first.name, "Fam", "pe", len(data), "x")]),
    }
    with detection_dataset(benign, aes_zip(tmp_path / "listed.zip", listed)) as ds:
        assert len(ds) == 6 and "same sha256" in ds.skipped[-1][1]
    # Without a manifest the zip's names are not trusted: the duplicate is caught by its bytes.
    z2 = aes_zip(tmp_path / "dup.zip", {"Fam/renamed": data})
    n, failures = build_detection_cache(
        tmp_path / "c", image_size=4, benign_dir=benign, malware_zip=z2, all_kinds=True
    )
    assert n == 6 and failures == []
    (dup,) = CachedDataset(tmp_path / "c").meta["duplicates"]
    assert dup == ["Fam/renamed", "malware", first.name, "benign"]


def test_build_opcode_cache(tmp_path: Path) -> None:
    for fam, n in (("Gatak", 3), ("Simda", 2)):
        for k in range(n):
            p = tmp_path / "op" / fam / f"{fam}{k}.txt"
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(f"{fam}\n" + "push\nmov\n" * (k + 1))
    n, failures = build_opcode_cache(tmp_path / "c", tmp_path / "op", max_len=4)
    ds = CachedDataset(tmp_path / "c")
    assert (n, failures) == (5, []) and ds.classes == ["Gatak", "Simda"]
    assert ds.lengths.tolist() == [3, 4, 4, 3, 4]


def test_default_paths_say_where_to_get_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALVISION_CACHE", str(tmp_path))
    monkeypatch.setattr(build, "shared_dir", lambda: None)
    with pytest.raises(DatasetError, match="build_benign_corpus.sh"):
        build.default_benign_dir()
    with pytest.raises(DatasetError, match="tar -xJf"):
        build.default_opcodes_dir()
    with pytest.raises(DatasetError, match="--malware-zip"):
        build.default_malware_zip()
    with pytest.raises(DatasetError, match="not a benign corpus"):
        benign_corpus(tmp_path)


REAL_BENIGN = build.cache_home() / "benign"
REAL_SHARED = build.shared_dir()


@pytest.mark.realdata
@pytest.mark.skipif(not (REAL_BENIGN / "pe").is_dir(), reason="no benign corpus at ~/.cache/malvision/benign")
@pytest.mark.skipif(
    REAL_SHARED is None or not (REAL_SHARED / build.MALWARE_ZIP).is_file(),
    reason="no ../shared/data/thezoo_pe_malware.zip",
)
def test_real_detection_set_lists() -> None:
    with detection_dataset() as ds:
        labels = [r.label for r in ds.records]
        assert labels.count("malware") > 200 and labels.count("benign") > 1000
        assert all(r.group for r in ds.records)
        k = labels.index("malware")
        smallest = min(range(k, len(ds)), key=lambda i: ds.records[i].size)
        data = ds.open(smallest).read()  # into memory only, never to disk
        assert hashlib.sha256(data).hexdigest() == ds.records[smallest].sha256


def test_benign_groups_are_projects_not_releases() -> None:
    from malvision.data.build import source_project

    assert source_project("pypi:NumPy==2.4.6") == source_project("pypi:numpy==2.2.6") == "pypi:numpy"
    assert source_project("deb:libwine=8.0~repack-4") == "deb:libwine"
    assert source_project("deb:memtest86+=6.10-4") == "deb:memtest86+"
    assert source_project("npm:@esbuild/win32-x64@0.28.2") == "npm:@esbuild/win32-x64"
    assert source_project("npm:7zip-bin@5.2.0") == "npm:7zip-bin"


def _malware_corpus(root: Path, rng: np.random.Generator) -> dict[str, bytes]:
    """The layout ../shared/tools/build_malware_corpus.py writes: <group>/<sha256> + manifest.csv."""
    import pip

    exe = (Path(pip.__file__).parent / "_vendor" / "distlib" / "t32.exe").read_bytes()  # a real 32-bit PE
    files = {"repo/a": exe, "repo/b": b"MZ" + rng.integers(0, 256, 3000, dtype=np.uint8).tobytes()}
    rows = ["sha256,size,repo,commit,path_in_repo,archive_member,password,group,machine,subsystem,is_dll"]
    for k, (repo, data) in enumerate(files.items()):
        group = f"fam{k}"
        (root / group).mkdir(parents=True, exist_ok=True)
        (root / group / sha(data)).write_bytes(data)
        rows.append(f"{sha(data)},{len(data)},owner/{repo.split('/')[1]},c0ffee,x,,,{group},i386,2,0")
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    return files


def test_malware_corpora_keep_their_collection_and_files_their_type(
    corpus: tuple[Path, Path], tmp_path: Path, rng: np.random.Generator
) -> None:
    benign, zip_path = corpus
    _malware_corpus(tmp_path / "v2", rng)
    n, _ = build_detection_cache(
        tmp_path / "c",
        kind="features",
        benign_dir=benign,
        malware_zip=zip_path,
        malware_dirs=[tmp_path / "v2"],
    )
    ds = CachedDataset(tmp_path / "c")
    assert n == 11 and ds.labels.tolist() == [0] * 6 + [1] * 5
    assert ds.collections == [None] * 6 + ["mal"] * 3 + ["owner/a", "owner/b"]
    assert [r.group for r in ds.records[-2:]] == ["fam0", "fam1"]
    assert (
        ds.records[-2].pe_type == "32-bit console" and ds.records[-1].pe_type is None
    )  # random bytes: no PE


def test_a_changed_or_missing_malware_file_is_one_line_naming_it(
    corpus: tuple[Path, Path], tmp_path: Path, rng: np.random.Generator
) -> None:
    benign, zip_path = corpus
    files = _malware_corpus(tmp_path / "v2", rng)
    changed = tmp_path / "v2" / "fam0" / sha(files["repo/a"])
    changed.write_bytes(files["repo/a"] + b"x")
    (tmp_path / "v2" / "fam1" / sha(files["repo/b"])).unlink()
    n, failures = build_detection_cache(
        tmp_path / "c",
        kind="features",
        benign_dir=benign,
        malware_zip=zip_path,
        malware_dirs=[tmp_path / "v2"],
    )
    msgs = [m for _, m in failures]
    assert n == 9
    assert any(str(changed) in m and "sha256 is" in m and "\n" not in m for m in msgs)
    assert any("no such file" in m and sha(files["repo/b"]) in m for m in msgs)
    with pytest.raises(DatasetError, match="not a malware corpus .*build_malware_corpus.py"):
        build.malware_corpus(tmp_path / "nothing-here")


def test_a_format_1_cache_still_reads(corpus: tuple[Path, Path], tmp_path: Path) -> None:
    """Caches from before the collection and pe_type columns: no collection, no type, same arrays."""
    import json

    benign, zip_path = corpus
    build_detection_cache(tmp_path / "c", kind="features", benign_dir=benign, malware_zip=zip_path)
    old = tmp_path / "c"
    lines = (old / "manifest.csv").read_text().splitlines()
    manifest = "".join(",".join(line.split(",")[:6]) + "\n" for line in lines).encode()
    (old / "manifest.csv").write_bytes(manifest)
    meta = json.loads((old / "meta.json").read_text())
    meta |= {"format_version": 1, "manifest_hash": hashlib.sha256(manifest).hexdigest()}
    (old / "meta.json").write_text(json.dumps(meta))
    ds = CachedDataset(old)
    assert len(ds) == 9 and ds.collections == [None] * 9 and ds.records[0].pe_type is None
