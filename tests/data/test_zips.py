"""Sample zips: AES and ZipCrypto, manifest, kinds, wrong password, zip slip, bomb and size guards."""

from __future__ import annotations

import shutil
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest

from malvision.data import zips
from malvision.data.zips import ZipDataset, unsafe_entry_name
from malvision.errors import DatasetError

from .helpers import aes_zip, manifest_csv, sha, zipcrypto_zip


@pytest.fixture
def samples(rng: np.random.Generator) -> dict[str, bytes]:
    return {
        f"Emotet/{sha(b'e1')}": b"MZ" + rng.integers(0, 256, 300, dtype=np.uint8).tobytes(),
        f"Emotet/{sha(b'e2')}": b"MZ" + rng.integers(0, 256, 200, dtype=np.uint8).tobytes(),
        f"WannaCry/{sha(b'w1')}": b"MZ" + rng.integers(0, 256, 500, dtype=np.uint8).tobytes(),
    }


def _real_sha_names(samples: dict[str, bytes]) -> dict[str, bytes]:
    """The same samples named ``<family>/<sha256 of the bytes>`` (as theZoo's zip)."""
    return {f"{name.split('/')[0]}/{sha(data)}": data for name, data in samples.items()}


def test_aes_zip_with_family_folders(tmp_path: Path, samples: dict[str, bytes]) -> None:
    z = aes_zip(tmp_path / "s.zip", {"Emotet/": b"", **samples})
    with ZipDataset(z, label="malware") as ds:
        assert [r.id for r in ds.records] == list(samples)
        assert {r.label for r in ds.records} == {"malware"}
        assert [r.group for r in ds.records] == ["Emotet", "Emotet", "WannaCry"]
        assert all(r.sha256 is None for r in ds.records)  # no manifest: names are not trusted
        for i, rec in enumerate(ds.records):
            src = ds.open(i)
            assert src.read() == samples[rec.id] and src.size == rec.size
    with ZipDataset(z) as ds:  # no label: the family is the label
        assert ds.classes == ["Emotet", "WannaCry"]


def test_manifest_kinds_and_sha(tmp_path: Path, samples: dict[str, bytes]) -> None:
    entries = _real_sha_names(samples)
    names = list(entries)
    rows = [
        (names[0].split("/")[1], "Emotet", "pe", 302, "a.exe"),
        (names[1].split("/")[1], "Emotet.B", "pe", 202, "b.exe"),
        (names[2].split("/")[1], "WannaCry", "script", 502, "c.js"),
    ]
    z = aes_zip(
        tmp_path / "m.zip", {**entries, "manifest.csv": manifest_csv(rows), "Other/unlisted": b"xyz" * 20}
    )
    ds = ZipDataset(z, label="malware", kinds=("pe",))
    assert [r.id for r in ds.records] == names[:2]
    assert [r.group for r in ds.records] == ["Emotet", "Emotet.B"]  # the manifest's family wins
    assert [r.sha256 for r in ds.records] == [n.split("/")[1] for n in names[:2]]
    assert any("not listed in manifest.csv" in m for _, m in ds.skipped)
    assert len(ZipDataset(z, label="malware").records) == 3


@pytest.mark.parametrize("password", ["wrong", b"Infected"])
def test_wrong_password(tmp_path: Path, samples: dict[str, bytes], password: str | bytes) -> None:
    z = aes_zip(tmp_path / "s.zip", samples)
    with pytest.raises(DatasetError, match=r"s\.zip: wrong zip password"):
        ZipDataset(z, password=password)


def test_no_password_for_encrypted_zip(tmp_path: Path, samples: dict[str, bytes]) -> None:
    z = aes_zip(tmp_path / "s.zip", samples)
    with pytest.raises(DatasetError, match="password is needed"):
        ZipDataset(z, password=None)


def test_zipcrypto_via_zip_cli(tmp_path: Path, samples: dict[str, bytes]) -> None:
    if shutil.which("zip") is None:
        pytest.skip("the zip command is not installed (needed to write a ZipCrypto archive)")
    src = tmp_path / "src"
    for name, data in samples.items():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_bytes(data)
    z = tmp_path / "zc.zip"
    subprocess.run(["zip", "-q", "-r", "-P", "infected", str(z), "."], cwd=src, check=True)
    with zipfile.ZipFile(z) as zf:
        assert all(i.flag_bits & 1 for i in zf.infolist() if not i.is_dir())  # really encrypted
    ds = ZipDataset(z, label="malware")
    assert sorted(r.id for r in ds.records) == sorted(samples)
    for i, rec in enumerate(ds.records):
        assert ds.open(i).read() == samples[rec.id]


def test_zip_slip_entries_skipped(tmp_path: Path, samples: dict[str, bytes]) -> None:
    evil = {"../evil.exe": b"e" * 40, "/abs/evil.exe": b"a" * 40, "fam/..\\..\\x.exe": b"b" * 40}
    z = aes_zip(tmp_path / "s.zip", {**samples, **evil})
    ds = ZipDataset(z, label="malware")
    assert [r.id for r in ds.records] == list(samples)
    assert len(ds.skipped) == 3 and all("unsafe entry name" in m for _, m in ds.skipped)
    assert not (tmp_path / "evil.exe").exists()
    with pytest.raises(DatasetError, match="unsafe entry name"):
        ZipDataset(z, label="malware", strict=True)


@pytest.mark.parametrize(
    ("name", "unsafe"),
    [
        ("a/b", False),
        ("a/..b", False),
        ("../a", True),
        ("a/../../b", True),
        ("/a", True),
        ("C:/a", True),
        ("\\a", True),
    ],
)
def test_unsafe_entry_name(name: str, unsafe: bool) -> None:
    assert unsafe_entry_name(name) is unsafe


def test_zip_bomb_and_size_guards(tmp_path: Path) -> None:
    z = tmp_path / "bomb.zip"
    with zipfile.ZipFile(z, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        # bzip2 packs zeros far tighter than DEFLATE's ~1032:1 ceiling: a bomb-like ratio.
        zf.writestr("fam/zeros", b"\0" * (3 * 1024 * 1024), compress_type=zipfile.ZIP_BZIP2)
        zf.writestr(
            "fam/padded", b"MZ" + b"\0" * (3 * 1024 * 1024)
        )  # ~1000:1 DEFLATE: real malware does this
        zf.writestr("fam/ok", bytes(range(256)) * 8)
    ds = ZipDataset(z, label="malware")
    assert [r.id for r in ds.records] == ["fam/padded", "fam/ok"]
    assert "looks like a zip bomb" in ds.skipped[0][1] and "fam/zeros" in ds.skipped[0][1]
    with pytest.raises(DatasetError, match="no samples found.*entry size limit"):
        ZipDataset(z, label="malware", max_entry_size=1000, max_ratio=1e9)
    assert len(ZipDataset(z, label="malware", max_ratio=1e9).records) == 3
    with pytest.raises(DatasetError, match="over the 1.0 KiB limit"):
        ZipDataset(z, label="malware", max_ratio=1e9, max_total_size=1024)


def test_entry_size_limit(tmp_path: Path) -> None:
    z = tmp_path / "s.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("fam/big", b"b" * 5000)
        zf.writestr("fam/small", b"s" * 500)
    ds = ZipDataset(z, label="malware", max_entry_size=1000)
    assert [r.id for r in ds.records] == ["fam/small"]
    assert "entry size limit" in ds.skipped[0][1]


def test_not_a_zip(tmp_path: Path) -> None:
    p = tmp_path / "x.zip"
    p.write_bytes(b"PK but not really" * 10)
    with pytest.raises(DatasetError, match="not a zip file"):
        ZipDataset(p)
    with pytest.raises(DatasetError, match="no such zip"):
        ZipDataset(tmp_path / "missing.zip")


def test_top_level_entries_need_a_label(tmp_path: Path) -> None:
    z = aes_zip(tmp_path / "s.zip", {"loose.exe": b"x" * 50, "fam/a.exe": b"y" * 50})
    assert [r.id for r in ZipDataset(z).records] == ["fam/a.exe"]
    assert [r.group for r in ZipDataset(z, label="malware").records] == [None, "fam"]


def test_corrupt_entry_is_an_error_on_open(tmp_path: Path) -> None:
    z = tmp_path / "c.zip"
    with zipfile.ZipFile(z, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("fam/a", bytes(range(256)) * 40)
    data = bytearray(z.read_bytes())
    data[60:80] = b"\xff" * 20  # inside the compressed stream
    z.write_bytes(bytes(data))
    ds = ZipDataset(z, label="m")
    with pytest.raises(DatasetError, match="cannot read zip entry"):
        ds.open(0)


def test_entries_read_from_many_threads_at_once_are_whole(tmp_path: Path) -> None:
    """`scan` reads entries on worker threads: concurrent reads of one archive once gave Bad CRC-32."""
    from concurrent.futures import ThreadPoolExecutor

    path = tmp_path / "many.zip"
    want = {f"FamA/{i:05d}": bytes([i % 251]) * 200 + i.to_bytes(4, "little") for i in range(300)}
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in want.items():
            zf.writestr(name, data)
    zd = ZipDataset(path, label="x", password=None)
    try:
        for _ in range(3):
            with ThreadPoolExecutor(4) as pool:
                got = list(pool.map(lambda i: (zd.records[i].id, zd.open(i).read()), range(len(zd))))
            assert dict(got) == want
    finally:
        zd.close()


def _zipcrypto_samples(n: int = 40) -> dict[str, bytes]:
    rng = np.random.default_rng(5)
    return {
        f"Fam{i % 4}/{i:03d}": rng.integers(
            0, 256 if i % 2 else 4, int(rng.integers(1, 60_000)), dtype=np.uint8
        ).tobytes()
        for i in range(n)
    }


@pytest.mark.parametrize("libarchive", [True, False])
@pytest.mark.slow
def test_zipcrypto_entries_read_whole_with_or_without_libarchive(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, libarchive: bool
) -> None:
    """libarchive decrypts ZipCrypto in C; without it pyzipper does, slowly; the bytes are the same."""
    if libarchive and zips._libarchive() is None:
        pytest.skip("the system's libarchive is not installed")
    if not libarchive:
        monkeypatch.setattr(zips, "_libarchive", lambda: None)
    want = _zipcrypto_samples()
    zd = ZipDataset(zipcrypto_zip(tmp_path / "zc.zip", want), label="malware")
    try:
        order = list(range(len(zd)))
        order = order[::2] + order[1::2][::-1]  # forward, then back: the cache and pyzipper serve those
        got = {zd.records[i].id: zd.open(i).read() for i in order}
        assert got == want
        assert (zd._stream is not None) == libarchive
        assert {zd.records[i].id: zd.open(i).read() for i in range(len(zd))} == want  # a second pass
    finally:
        zd.close()


def test_zipcrypto_fast_path_checks_every_entry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A damaged entry is an error of its own (pyzipper's CRC check); the others still read whole,
    from many threads, and with a cache too small to hold anything."""
    from concurrent.futures import ThreadPoolExecutor

    if zips._libarchive() is None:
        pytest.skip("the system's libarchive is not installed")
    monkeypatch.setattr(zips._ZipCryptoStream, "CACHE", 10)
    want = _zipcrypto_samples()
    path = zipcrypto_zip(tmp_path / "zc.zip", want)
    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        victim = zf.infolist()[7]
    middle = victim.header_offset + 30 + len(victim.filename) + 12 + victim.compress_size // 2
    raw[middle] ^= 0xFF
    path.write_bytes(bytes(raw))
    zd = ZipDataset(path, label="malware")
    try:

        def read(i: int) -> tuple[str, bytes | str]:
            try:
                return zd.records[i].id, zd.open(i).read()
            except DatasetError as e:
                return zd.records[i].id, str(e)

        with ThreadPoolExecutor(3) as pool:
            got = dict(pool.map(read, range(len(zd))))
        assert zd._stream is not None
        assert isinstance(got.pop(victim.filename), str)
        assert got == {k: v for k, v in want.items() if k != victim.filename}
    finally:
        zd.close()
