"""Fuzz the readers of files users hand us: Malimg PNGs and sample zips, mutated. Each gives data or its
one-line error (``DatasetError`` / ``MalvisionError``), whatever the bytes."""

from __future__ import annotations

import struct
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fuzz.strategies import fuzz, png_bytes, zip_bytes
from malvision.data.readers import read_malimg_png
from malvision.data.zips import ZipDataset
from malvision.errors import DatasetError, MalvisionError


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz-files")


@fuzz(200)
@given(png_bytes())
def test_malimg_png_reader_on_mutated_pngs(scratch: Path, data: bytes) -> None:
    path = scratch / "x.png"
    path.write_bytes(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow's DecompressionBombWarning below the error threshold
        try:
            arr = read_malimg_png(path)
        except DatasetError as e:
            assert str(e).startswith(str(path)) and "\n" not in str(e)
            return
    assert arr.dtype == np.uint8 and arr.ndim == 2 and arr.size > 0


@fuzz(200)
@given(zip_bytes(), st.sampled_from([None, "malware"]), st.sampled_from(["infected", "wrong", None]))
def test_zip_dataset_on_mutated_zips(
    scratch: Path, data: bytes, label: str | None, password: str | None
) -> None:
    path = scratch / "x.zip"
    path.write_bytes(data)
    try:
        zd = ZipDataset(path, label=label, password=password)
    except MalvisionError as e:
        assert str(e)  # entry names may hold newlines: the CLI prints them escaped (cli.clean)
        return
    with zd:
        assert len(zd) == len(zd.records) > 0
        for i, rec in enumerate(zd.records):
            try:
                src = zd.open(i)
            except MalvisionError as e:
                assert str(e).startswith(rec.source)
                continue
            assert src.size == rec.size and len(src.read()) == rec.size


def test_a_zip_entry_with_an_empty_name_is_skipped(scratch: Path) -> None:
    """Found by fuzzing: an empty entry name made ZipInfo.is_dir() raise IndexError in ZipDataset."""
    path = scratch / "empty-name.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("FamA/ok", b"MZ" + bytes(100))
        zf.writestr("FamA/xx", b"MZ" + bytes(100))
    raw = bytearray(path.read_bytes())
    cd = raw.rfind(b"PK\x01\x02")  # the second entry's central record: rename it to ""
    raw[cd + 46 : cd + 53] = b"\0" * 7
    struct.pack_into("<H", raw, cd + 28, 0)
    del raw[cd + 46 : cd + 53]
    struct.pack_into("<I", raw, len(raw) - 22 + 12, struct.unpack_from("<I", raw, len(raw) - 22 + 12)[0] - 7)
    path.write_bytes(bytes(raw))
    zd = ZipDataset(path, label="x", password=None)
    assert [r.id for r in zd.records] == ["FamA/ok"]
    assert "unsafe entry name" in zd.skipped[0][1]


def test_a_damaged_aes_extra_field_is_one_error(scratch: Path) -> None:
    """Found by the long fuzz run: an unknown AES key strength made pyzipper raise KeyError."""
    import pyzipper

    path = scratch / "aes-strength.zip"
    with pyzipper.AESZipFile(path, "w", encryption=pyzipper.WZ_AES) as zf:
        zf.setpassword(b"infected")
        zf.writestr("FamA/x", b"MZ" + bytes(100))
    raw = bytearray(path.read_bytes())
    at = raw.find(b"\x01\x99\x07\x00")  # AES extra field: id, size, version, 'AE', strength, method
    while at != -1:
        raw[at + 8] = 9
        at = raw.find(b"\x01\x99\x07\x00", at + 1)
    path.write_bytes(bytes(raw))
    zd = ZipDataset(path, label="x")
    with zd, pytest.raises(DatasetError, match="cannot read zip entry"):
        zd.open(0)


def test_an_aes_entry_without_the_encrypted_flag_is_one_error(scratch: Path) -> None:
    """Found by the long fuzz run: pyzipper raised AttributeError ('NoneType' ... 'hmac_size')."""
    import pyzipper

    path = scratch / "aes-flag.zip"
    with pyzipper.AESZipFile(path, "w", encryption=pyzipper.WZ_AES) as zf:
        zf.setpassword(b"infected")
        zf.writestr("FamA/x", b"MZ" + bytes(100))
    raw = bytearray(path.read_bytes())
    raw[raw.find(b"PK\x03\x04") + 6] &= 0xFE  # clear "encrypted" in the local header
    raw[raw.find(b"PK\x01\x02") + 8] &= 0xFE  # and in the central directory
    path.write_bytes(bytes(raw))
    zd = ZipDataset(path, label="x")
    with zd, pytest.raises(DatasetError, match="cannot read zip entry"):
        zd.open(0)
