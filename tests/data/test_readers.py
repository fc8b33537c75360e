"""Readers on tiny files in the exact formats: Malimg PNGs, binary trees, labels CSV, BIG2015, opcodes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from malvision.data.big2015 import BIG2015_CLASSES, Big2015Dataset, OpcodeTreeDataset, parse_bytes_dump
from malvision.data.readers import (
    BinaryTreeDataset,
    CsvDataset,
    FileListDataset,
    MalimgDataset,
    read_malimg_png,
)
from malvision.errors import DatasetError

from .helpers import bytes_dump, sha, write_png

MakeFile = Callable[[str, bytes], Path]

# ----------------------------------------------------------------------------------------- Malimg


@pytest.fixture
def malimg(tmp_path: Path, rng: np.random.Generator) -> tuple[Path, dict[str, np.ndarray]]:
    root = tmp_path / "malimg"
    images = {
        "Allaple.A/a1": rng.integers(0, 256, (20, 32), dtype=np.uint8),
        "Allaple.A/a2": rng.integers(0, 256, (9, 64), dtype=np.uint8),
        "Yuner.A/y1": rng.integers(0, 256, (40, 32), dtype=np.uint8),
    }
    for name, arr in images.items():
        write_png(root / f"{name}.png", arr)
    return root, images


def test_malimg_reads_pixels_as_rows(malimg: tuple[Path, dict[str, np.ndarray]]) -> None:
    root, images = malimg
    ds = MalimgDataset(root)
    assert [r.id for r in ds.records] == list(images)
    assert ds.classes == ["Allaple.A", "Yuner.A"]
    for i, rec in enumerate(ds.records):
        arr = images[rec.id]
        assert rec.label == rec.id.split("/")[0]
        assert rec.plot_width == arr.shape[1]
        assert rec.size == arr.size
        assert ds.open(i).read() == arr.tobytes()
    assert ds.skipped == []


@pytest.mark.parametrize(
    ("arr", "mode", "needle"),
    [
        (np.zeros((8, 8, 3), np.uint8), None, "'RGB'"),
        (np.full((8, 8), 300, np.uint16), None, "'I;16'"),
        (np.zeros((8, 8), np.uint8), "P", "'P'"),
    ],
)
def test_malimg_refuses_other_modes(tmp_path: Path, arr: np.ndarray, mode: str | None, needle: str) -> None:
    good = write_png(tmp_path / "fam" / "good.png", np.zeros((4, 32), np.uint8))
    bad = write_png(tmp_path / "fam" / "bad.png", arr, mode)
    ds = MalimgDataset(tmp_path)
    assert [r.source for r in ds.records] == [str(good)]
    assert len(ds.skipped) == 1 and str(bad) in ds.skipped[0][1] and needle in ds.skipped[0][1]
    with pytest.raises(DatasetError, match=f"{bad}.*{needle}"):
        MalimgDataset(tmp_path, strict=True)
    with pytest.raises(DatasetError, match="grayscale"):
        read_malimg_png(bad)


def test_malimg_refuses_gray_of_fewer_bits(tmp_path: Path) -> None:
    """Pillow reads a 4-bit grayscale PNG as mode 'L', its values times 17: not a file's bytes."""
    from PIL import Image

    (tmp_path / "fam").mkdir()
    Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8) % 16 * 17, "L").save(
        tmp_path / "fam" / "four.png", bits=4
    )
    with pytest.raises(DatasetError, match="a 4-bit grayscale PNG; Malimg images have 8 bits a pixel"):
        read_malimg_png(tmp_path / "fam" / "four.png")
    good = write_png(tmp_path / "fam" / "good.png", np.zeros((4, 32), np.uint8))
    ds = MalimgDataset(tmp_path)
    assert [r.source for r in ds.records] == [str(good)] and "4-bit" in ds.skipped[0][1]


def test_malimg_corrupt_and_truncated(tmp_path: Path, rng: np.random.Generator) -> None:
    (tmp_path / "fam").mkdir()
    corrupt = tmp_path / "fam" / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    whole = write_png(tmp_path / "fam" / "whole.png", rng.integers(0, 256, (64, 64), dtype=np.uint8))
    truncated = tmp_path / "fam" / "truncated.png"
    truncated.write_bytes(whole.read_bytes()[:2000])  # header intact, IDAT cut
    ds = MalimgDataset(tmp_path)
    assert [Path(r.source).name for r in ds.records] == ["truncated.png", "whole.png"]
    assert any(str(corrupt) in msg for _, msg in ds.skipped)
    with pytest.raises(DatasetError, match=f"^{truncated}: corrupt or truncated PNG"):
        ds.open(0)
    assert len(ds.open(1).read()) == 64 * 64


def test_malimg_empty_tree(tmp_path: Path) -> None:
    (tmp_path / "fam").mkdir()
    with pytest.raises(DatasetError, match="no samples found"):
        MalimgDataset(tmp_path)


# ------------------------------------------------------------------------------------ binary trees


def test_binary_tree(make_file: MakeFile, tmp_path: Path) -> None:
    a = make_file("tree/benign/a.exe", b"A" * 100)
    b = make_file("tree/malware/deep/er/b.dll", b"B" * 50)
    make_file("tree/stray.bin", b"x")
    make_file("tree/malware/empty", b"")
    make_file("tree/malware/.DS_Store", b"junk")
    ds = BinaryTreeDataset(tmp_path / "tree")
    assert [(r.id, r.label, r.size) for r in ds.records] == [
        ("benign/a.exe", "benign", 100),
        ("malware/deep/er/b.dll", "malware", 50),
    ]
    assert ds.open(1).read() == b.read_bytes() and ds.open(0).read() == a.read_bytes()
    msgs = " ".join(m for _, m in ds.skipped)
    assert "stray.bin: not inside a label folder" in msgs and "empty file" in msgs and "DS_Store" not in msgs


def test_binary_tree_max_size(make_file: MakeFile, tmp_path: Path) -> None:
    make_file("t/x/big", b"B" * 2000)
    make_file("t/x/small", b"s" * 10)
    ds = BinaryTreeDataset(tmp_path / "t", max_size=1000)
    assert [r.id for r in ds.records] == ["x/small"]
    assert "size limit" in ds.skipped[0][1]


def test_file_list_groups_by_first_folder(make_file: MakeFile, tmp_path: Path) -> None:
    make_file("in/famA/x", b"x" * 40)
    f = make_file("loose.bin", b"y" * 40)
    ds = FileListDataset([tmp_path / "in", f], label="malware")
    assert [(r.label, r.group) for r in ds.records] == [("malware", "famA"), ("malware", None)]


# ------------------------------------------------------------------------------------- labels CSV


def test_csv_dataset(make_file: MakeFile, tmp_path: Path) -> None:
    data = {"a.bin": b"a" * 64, "sub/b.bin": b"b" * 64}
    for name, d in data.items():
        make_file(f"ds/{name}", d)
    hashed = make_file(f"ds/deep/{sha(b'c' * 64)}", b"c" * 64)
    csv = (
        "filename,label,family\n"
        "a.bin,benign,\n"
        "sub/b.bin,malware,Emotet\n"
        f"{hashed.name},malware,Qakbot\n"
        "missing.bin,malware,Emotet\n"
        "a.bin,,x\n"
    )
    make_file("ds/labels.csv", csv.encode())
    ds = CsvDataset(tmp_path / "ds" / "labels.csv")
    assert [(r.id, r.label, r.group) for r in ds.records] == [
        ("a.bin", "benign", None),
        ("sub/b.bin", "malware", "Emotet"),
        (f"deep/{hashed.name}", "malware", "Qakbot"),
    ]
    assert ds.open(1).read() == b"b" * 64
    msgs = [m for _, m in ds.skipped]
    assert len(msgs) == 2
    assert "labels.csv:5" in msgs[0] and "missing.bin" in msgs[0]
    assert "labels.csv:6: no label" in msgs[1]
    with pytest.raises(DatasetError, match="labels.csv:5"):
        CsvDataset(tmp_path / "ds" / "labels.csv", strict=True)


def test_csv_sha256_column_and_constant_label(make_file: MakeFile, tmp_path: Path) -> None:
    d = b"\x4d\x5a" + b"\0" * 62
    make_file(f"corpus/pe/{sha(d)}", d)
    make_file("corpus/m.csv", f"sha256,size,source_package\n{sha(d)},64,deb:wine\n".encode())
    ds = CsvDataset(
        tmp_path / "corpus/m.csv", root=tmp_path / "corpus/pe", label="benign", group_column="source_package"
    )
    (rec,) = ds.records
    assert (rec.label, rec.group, rec.sha256) == ("benign", "deb:wine", sha(d))


def test_csv_without_label_column(make_file: MakeFile, tmp_path: Path) -> None:
    make_file("x/f", b"f" * 40)
    make_file("x/labels.csv", b"path,family\nf,A\n")
    with pytest.raises(DatasetError, match="no 'label' column"):
        CsvDataset(tmp_path / "x/labels.csv")
    with pytest.raises(DatasetError, match="no file column"):
        make_file("x/l2.csv", b"label\nA\n")
        CsvDataset(tmp_path / "x/l2.csv")


# ------------------------------------------------------------------------------------------ BIG2015


def test_parse_bytes_dump_unknown_policy() -> None:
    data = bytes(range(40))
    dump = bytes_dump(data, unknown={3, 17, 39})
    assert dump.startswith(b"00401000 00 01 02 ?? 04")
    zero = parse_bytes_dump(dump)
    assert len(zero) == 40 and zero[3] == zero[17] == zero[39] == 0
    assert zero[4:17] == data[4:17]
    dropped = parse_bytes_dump(dump, unknown="drop")
    assert dropped == bytes(b for k, b in enumerate(data) if k not in {3, 17, 39})


def test_parse_bytes_dump_whole_line_unknown_and_lf() -> None:
    dump = b"00401000 ?? ?? ?? ?? ?? ?? ?? ?? ?? ?? ?? ?? ?? ?? ?? ??\n00401010 4D 5A\n"
    assert parse_bytes_dump(dump) == b"\0" * 16 + b"MZ"
    assert parse_bytes_dump(dump, unknown="drop") == b"MZ"


@pytest.mark.parametrize(
    "bad", [b"MZ\x90\x00\x03\x00\xff\xfe", b"00401000 4D 5Z\r\n", b"00401000\r\n", b"\xff\xfe"]
)
def test_parse_bytes_dump_refuses_non_dumps(bad: bytes) -> None:
    with pytest.raises(DatasetError, match="sample.bytes"):
        parse_bytes_dump(bad, "sample.bytes")


def test_big2015(make_file: MakeFile, tmp_path: Path, rng: np.random.Generator) -> None:
    samples = {"0A32eTdBKayjCWhZqDOQ": 1, "0ACDbR5M3ZhBJajygTuf": 9, "0AnoOZDNbPXIr2MRBSCJ": 3}
    raw = {}
    for k, sid in enumerate(samples):
        raw[sid] = rng.integers(0, 256, 50 + 16 * k, dtype=np.uint8).tobytes()
        make_file(f"big/train/{sid}.bytes", bytes_dump(raw[sid], unknown={0}))
    make_file("big/train/unlabelled.bytes", bytes_dump(b"x" * 32))
    labels = '"Id","Class"\n' + "".join(f'"{s}",{c}\n' for s, c in samples.items()) + '"gone",2\n'
    make_file("big/trainLabels.csv", labels.encode())
    ds = Big2015Dataset(tmp_path / "big")
    assert [(r.id, r.label) for r in ds.records] == [
        ("0A32eTdBKayjCWhZqDOQ", "Ramnit"),
        ("0ACDbR5M3ZhBJajygTuf", "Gatak"),
        ("0AnoOZDNbPXIr2MRBSCJ", "Kelihos_ver3"),
    ]
    assert BIG2015_CLASSES[8] == "Gatak"
    for i, rec in enumerate(ds.records):
        assert ds.open(i).read() == b"\0" + raw[rec.id][1:]
        assert abs(rec.size - len(raw[rec.id])) <= 16  # estimated from the text
    assert ds.unlabelled == 1
    assert "gone.bytes" in ds.skipped[0][1]
    dropped = Big2015Dataset(tmp_path / "big" / "trainLabels.csv", unknown="drop")
    assert dropped.open(0).read() == raw["0A32eTdBKayjCWhZqDOQ"][1:]


def test_big2015_bad_class(make_file: MakeFile, tmp_path: Path) -> None:
    make_file("b/x.bytes", bytes_dump(b"x" * 16))
    make_file("b/trainLabels.csv", b"Id,Class\nx,10\n")
    with pytest.raises(DatasetError, match="trainLabels.csv:2: Class '10' is not 1..9"):
        Big2015Dataset(tmp_path / "b")


# ------------------------------------------------------------------------------------- opcode trees


def test_opcode_tree_with_and_without_manifest(make_file: MakeFile, tmp_path: Path) -> None:
    make_file("op/Gatak/s1.txt", b"push\nmov\ncall\n")
    make_file("op/Simda/s2.txt", b"xor\nret\n")
    ds = OpcodeTreeDataset(tmp_path / "op")
    assert [(r.id, r.label) for r in ds.records] == [("s1", "Gatak"), ("s2", "Simda")]
    assert ds.open(1).read() == b"xor\nret\n"
    make_file("op/manifest.csv", b"sample_id,family,n_opcodes\ns2,Simda,2\ns9,Simda,4\n")
    ds = OpcodeTreeDataset(tmp_path / "op")
    assert [r.id for r in ds.records] == ["s2"]
    assert "s9.txt" in ds.skipped[0][1]


def test_parse_bytes_dump_in_blocks(monkeypatch: pytest.MonkeyPatch, rng: np.random.Generator) -> None:
    from malvision.data import big2015 as readers

    data = rng.integers(0, 256, 5000, dtype=np.uint8).tobytes()
    dump = bytes_dump(data, unknown={77, 4999})
    whole = parse_bytes_dump(dump)
    monkeypatch.setattr(readers, "_DUMP_BLOCK", 100)  # many blocks, each cut after a newline
    assert parse_bytes_dump(dump) == whole and len(whole) == 5000 and whole[77] == 0
