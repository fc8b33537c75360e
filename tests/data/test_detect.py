"""open_dataset picks the right reader for each layout and says clearly when nothing fits."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from malvision.convert.spec import ConvertSpec
from malvision.data.cache import CachedDataset
from malvision.data.cache_write import write_cache
from malvision.data.detect import detect_format, open_dataset
from malvision.data.readers import BinaryTreeDataset
from malvision.errors import DatasetError

from .helpers import aes_zip, bytes_dump, write_png

MakeFile = Callable[[str, bytes], Path]


def test_detects_every_format(make_file: MakeFile, tmp_path: Path) -> None:
    write_png(tmp_path / "malimg/Fam/a.png", np.zeros((4, 32), np.uint8))
    for i in range(9):  # a README among ten PNGs: still Malimg, not a tree of the PNGs' compressed bytes
        write_png(tmp_path / f"malimg2/Fam/{i}.png", np.zeros((4, 32), np.uint8))
    make_file("malimg2/Fam/README.txt", b"notes")
    make_file("op/Fam/s.txt", b"mov\n")
    make_file("op/manifest.csv", b"sample_id,family\ns,Fam\n")
    make_file("bin/benign/a.exe", b"MZ" * 40)
    make_file("bin/malware/b.png", b"not really a png" * 4)  # mixed suffixes: a binary tree
    make_file("big/x.bytes", bytes_dump(b"x" * 32))
    make_file("big/trainLabels.csv", b"Id,Class\nx,2\n")
    make_file("csvds/f", b"f" * 64)
    make_file("csvds/labels.csv", b"filename,label\nf,benign\n")
    aes_zip(tmp_path / "s.zip", {"fam/a": b"a" * 64})
    write_cache(BinaryTreeDataset(tmp_path / "bin"), tmp_path / "cache", ConvertSpec(kind="bytes"))
    expected = {
        "malimg": "malimg",
        "malimg2": "malimg",
        "op": "opcodes",
        "bin": "binary",
        "big": "big2015",
        "big/trainLabels.csv": "big2015",
        "csvds": "csv",
        "csvds/labels.csv": "csv",
        "s.zip": "zip",
        "cache": "cache",
    }
    for rel, fmt in expected.items():
        assert detect_format(tmp_path / rel) == fmt, rel
        ds = open_dataset(tmp_path / rel, label="malware")
        assert ds.format == fmt and len(ds) >= 1
    assert isinstance(open_dataset(tmp_path / "cache"), CachedDataset)
    assert open_dataset(tmp_path / "s.zip", label="malware").classes == ["malware"]
    assert open_dataset(tmp_path / "big").records[0].label == "Lollipop"
    forced = open_dataset(tmp_path / "malimg", format="binary")
    assert forced.format == "binary"


def test_nothing_fits(make_file: MakeFile, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="empty: no samples found; expected one folder per label"):
        open_dataset(tmp_path / "empty")
    with pytest.raises(DatasetError, match="no such file or folder"):
        open_dataset(tmp_path / "missing")
    f = make_file("plain.exe", b"MZ" * 40)
    with pytest.raises(DatasetError, match="plain.exe: not a dataset"):
        open_dataset(f)
    with pytest.raises(DatasetError, match="unknown dataset format 'tar'"):
        open_dataset(tmp_path, format="tar")
    make_file("flat/a.exe", b"MZ" * 40)
    with pytest.raises(DatasetError, match="no samples found"):
        open_dataset(tmp_path / "flat")
