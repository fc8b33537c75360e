"""The cache: round trip through memory maps, failures, atomic builds, opcode vocabulary from train only."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from malvision.convert import model_input, resize_plot
from malvision.convert.opcodes import parse_opcodes
from malvision.convert.sequence import UNK, Vocabulary, byte_sequence
from malvision.convert.spec import ConvertSpec
from malvision.data.big2015 import OpcodeTreeDataset
from malvision.data.cache import CachedDataset
from malvision.data.cache_write import build_cache_from_paths, write_cache
from malvision.data.readers import BinaryTreeDataset, MalimgDataset
from malvision.data.records import RawDataset
from malvision.errors import DatasetError
from malvision.io import open_source

from .helpers import write_png


@pytest.fixture
def tree(tmp_path: Path, rng: np.random.Generator) -> Path:
    root = tmp_path / "tree"
    sizes = {
        "benign/a": 5000,
        "benign/b": 40_000,
        "malware/x/c": 70_000,
        "malware/d": 900,
        "malware/tiny": 10,
    }
    for name, n in sizes.items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(rng.integers(0, 256, n, dtype=np.uint8).tobytes())
    return root


def test_image_cache_round_trip(tree: Path, tmp_path: Path) -> None:
    spec = ConvertSpec(kind="image", image_size=16)
    raw = BinaryTreeDataset(tree)
    n, failures = write_cache(raw, tmp_path / "c", spec)
    assert n == 4
    assert len(failures) == 1 and failures[0][0].endswith("tiny")  # 10 bytes: shorter than one row
    ds = CachedDataset(tmp_path / "c")
    assert len(ds) == 4 and ds.classes == ["benign", "malware"]
    assert ds.ids == ["benign/a", "benign/b", "malware/d", "malware/x/c"]
    assert ds.labels.tolist() == [0, 0, 1, 1]
    assert ds.spec == spec and ds.lengths.tolist() == [256] * 4
    x = np.load(tmp_path / "c" / "x.npy", mmap_mode="r")
    assert isinstance(x, np.memmap) and x.shape == (4, 16, 16) and x.dtype == np.uint8
    for i, rid in enumerate(ds.ids):
        src = open_source(tree / rid)
        expected = model_input(src, spec)
        arr, y = ds[i]
        np.testing.assert_array_equal(arr, expected)
        assert y == ds.labels[i]
        assert ds.records[i].sha256 == src.sha256 and ds.records[i].size == src.size
    np.testing.assert_array_equal(ds[-1][0], ds[3][0])
    with pytest.raises(IndexError):
        ds[4]
    meta = json.loads((tmp_path / "c" / "meta.json").read_text())
    assert meta["counts"] == {"benign": 2, "malware": 2} and meta["n_failed"] == 1
    assert meta["manifest_hash"] == ds.manifest_hash


def test_bytes_cache(tree: Path, tmp_path: Path) -> None:
    spec = ConvertSpec(kind="bytes", max_len=4096)
    n, _ = write_cache(BinaryTreeDataset(tree), tmp_path / "c", spec)
    ds = CachedDataset(tmp_path / "c")
    assert n == len(ds) == 5  # byte sequences take any non-empty file
    assert ds.lengths.tolist() == [4096, 4096, 900, 10, 4096]  # a, b, d, tiny, x/c
    tokens = np.load(tmp_path / "c" / "tokens.npy", mmap_mode="r")
    assert tokens.dtype == np.uint16 and len(tokens) == ds.lengths.sum()
    for i, rid in enumerate(ds.ids):
        arr, _ = ds[i]
        np.testing.assert_array_equal(arr, byte_sequence((tree / rid).read_bytes(), 4096))


def test_malimg_cache_resizes_the_png(tmp_path: Path, rng: np.random.Generator) -> None:
    imgs = [rng.integers(0, 256, (37, 64), dtype=np.uint8), rng.integers(0, 256, (300, 32), dtype=np.uint8)]
    for k, arr in enumerate(imgs):
        write_png(tmp_path / "m" / f"fam{k}" / "s.png", arr)
    write_cache(MalimgDataset(tmp_path / "m"), tmp_path / "c", ConvertSpec(image_size=8))
    ds = CachedDataset(tmp_path / "c")
    for k, arr in enumerate(imgs):
        np.testing.assert_array_equal(ds[k][0], resize_plot(arr, 8))
    assert ds.records[0].size == imgs[0].size


def _opcode_tree(root: Path) -> None:
    files = {
        "A/s1": "push\nmov\nPUSH\ncall\n",
        "A/s2": "mov\n\nmov\nret\n",
        "B/s3": "xor\nxor\nmov\nrare_train\n",
        "B/s4": "push\nonly_in_test\nret\n",
    }
    for name, text in files.items():
        p = root / f"{name}.txt"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)


def test_opcode_vocab_from_train_only(tmp_path: Path) -> None:
    _opcode_tree(tmp_path / "op")
    n, failures = write_cache(OpcodeTreeDataset(tmp_path / "op"), tmp_path / "c", ConvertSpec(kind="opcodes"))
    assert (n, failures) == (4, [])
    ds = CachedDataset(tmp_path / "c")
    assert set(ds.codebook) == {"push", "mov", "call", "ret", "xor", "rare_train", "only_in_test"}
    with pytest.raises(DatasetError, match="fit_vocab"):
        ds[0]
    vocab = ds.fit_vocab([0, 1, 2])
    # Counts over train rows: mov 4, push 2, xor 2, call 1, rare_train 1, ret 1 (ties by name).
    assert vocab.tokens == ("mov", "push", "xor", "call", "rare_train", "ret")
    assert ds.spec.vocab == vocab.tokens
    test_seq, y = ds[3]
    assert y == 1 and test_seq.tolist() == [vocab.index["push"], UNK, vocab.index["ret"]]
    assert ds[0][0].tolist() == [vocab.index[t] for t in ("push", "mov", "push", "call")]
    # Same ids as the scan path: model_input under the spec that now carries the vocabulary.
    for i in range(4):
        src = open_source(tmp_path / "op" / ds.records[i].label / f"{ds.ids[i]}.txt")
        np.testing.assert_array_equal(ds[i][0], model_input(src, ds.spec))
    assert (
        vocab.tokens
        == Vocabulary.build(
            [parse_opcodes(open_source(Path(ds.records[i].source)).read()) for i in range(3)]
        ).tokens
    )
    small = ds.fit_vocab([0, 1, 2], min_count=2)
    assert small.tokens == ("mov", "push", "xor") and ds[0][0].tolist()[3] == UNK
    assert ds.fit_vocab([0, 1, 2], max_size=1).tokens == ("mov",)
    ds.set_vocab(Vocabulary(["ret"]))
    assert ds[3][0].tolist() == [UNK, UNK, 2]


def test_opcode_max_len_and_refusals(tmp_path: Path) -> None:
    lines = [f"op{k % 7}" if k % 5 else "" for k in range(5000)]
    text = "\r\n".join(lines).encode()
    (tmp_path / "op" / "F").mkdir(parents=True)
    (tmp_path / "op" / "F" / "s.txt").write_bytes(text)
    (tmp_path / "op" / "F" / "bin.txt").write_bytes(b"\x00\x01binary")
    n, failures = write_cache(
        OpcodeTreeDataset(tmp_path / "op"), tmp_path / "c", ConvertSpec(kind="opcodes", max_len=50)
    )
    assert n == 1 and "binary data" in failures[0][1]
    ds = CachedDataset(tmp_path / "c")
    ds.fit_vocab(range(1))
    assert ds.lengths.tolist() == [50]


class _Interrupting(RawDataset):
    """Raises KeyboardInterrupt at the second sample, as Ctrl-C mid-build."""

    def __init__(self, inner: RawDataset) -> None:
        super().__init__("interrupting", inner.records)
        self.inner = inner

    def open(self, i: int):  # noqa: ANN201
        if i == 1:
            raise KeyboardInterrupt
        return self.inner.open(i)


def test_interrupted_build_leaves_nothing(tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "caches" / "c"
    with pytest.raises(KeyboardInterrupt):
        write_cache(_Interrupting(BinaryTreeDataset(tree)), out, ConvertSpec(image_size=8))
    assert not out.exists() and list((tmp_path / "caches").iterdir()) == []


def test_existing_out_dir(tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "c"
    write_cache(BinaryTreeDataset(tree), out, ConvertSpec(image_size=8))
    with pytest.raises(DatasetError, match="already exists.*--overwrite"):
        write_cache(BinaryTreeDataset(tree), out, ConvertSpec(image_size=4))
    write_cache(BinaryTreeDataset(tree), out, ConvertSpec(image_size=4), overwrite=True)
    assert CachedDataset(out).spec.image_size == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c", "tree"]  # no temp folders left
    with pytest.raises(DatasetError, match="not a dataset cache; will not replace"):
        write_cache(BinaryTreeDataset(tree), tree, ConvertSpec(image_size=4), overwrite=True)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert write_cache(BinaryTreeDataset(tree), empty, ConvertSpec(image_size=4))[0] == 4


def test_nothing_converted_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "t" / "a").mkdir(parents=True)
    (tmp_path / "t" / "a" / "f").write_bytes(b"tiny")
    with pytest.raises(DatasetError, match="no sample could be converted.*shorter than one"):
        write_cache(BinaryTreeDataset(tmp_path / "t"), tmp_path / "c", ConvertSpec())
    assert not (tmp_path / "c").exists()


def test_sha256_mismatch_is_a_failure(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f").write_bytes(b"x" * 100)
    (tmp_path / "d" / "g").write_bytes(b"y" * 100)
    (tmp_path / "d" / "labels.csv").write_text(f"filename,label,sha256\nf,a,{'0' * 64}\ng,b,\n")
    from malvision.data.readers import CsvDataset

    n, failures = write_cache(
        CsvDataset(tmp_path / "d" / "labels.csv"), tmp_path / "c", ConvertSpec(kind="bytes")
    )
    assert n == 1 and "listed as 000" in failures[0][1]


def test_tampered_cache_is_refused(tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "c"
    write_cache(BinaryTreeDataset(tree), out, ConvertSpec(image_size=8))
    manifest = out / "manifest.csv"
    manifest.write_text(manifest.read_text().replace("benign", "malware", 1))
    with pytest.raises(DatasetError, match="manifest_hash"):
        CachedDataset(out)
    meta = json.loads((out / "meta.json").read_text())
    meta["format_version"] = 99
    (out / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match="cache format 99 is not supported"):
        CachedDataset(out)
    with pytest.raises(DatasetError, match="not a dataset cache"):
        CachedDataset(tree)


def test_truncated_array_is_refused(tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "c"
    write_cache(BinaryTreeDataset(tree), out, ConvertSpec(kind="bytes", max_len=64))
    np.save(out / "offsets.npy", np.array([0, 5], dtype=np.int64))
    with pytest.raises(DatasetError, match="do not match"):
        CachedDataset(out)


def test_build_cache_from_paths(tree: Path, tmp_path: Path) -> None:
    n, failures = build_cache_from_paths(
        [tree / "malware"], tmp_path / "c1", kind="bytes", max_len=32, label="malware"
    )
    ds = CachedDataset(tmp_path / "c1")
    assert n == 3 and failures == [] and ds.classes == ["malware"]
    assert sorted(g for g in ds.groups if g) == ["x"]
    n, failures = build_cache_from_paths([tree], tmp_path / "c2", image_size=8)
    assert n == 4 and len(failures) == 1 and CachedDataset(tmp_path / "c2").classes == ["benign", "malware"]
    with pytest.raises(DatasetError, match="already a dataset cache"):
        build_cache_from_paths([tmp_path / "c2"], tmp_path / "c3")
    with pytest.raises(DatasetError, match="not a dataset"):
        build_cache_from_paths([tree / "benign" / "a"], tmp_path / "c3")


def test_exact_duplicates_are_dropped_unless_asked(tmp_path: Path) -> None:
    for name in ("a/one", "a/two", "b/three"):
        (tmp_path / "t" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "t" / name).write_bytes(b"same" * 20)
    (tmp_path / "t" / "b" / "other").write_bytes(b"diff" * 20)
    n, failures = write_cache(BinaryTreeDataset(tmp_path / "t"), tmp_path / "c", ConvertSpec(kind="bytes"))
    ds = CachedDataset(tmp_path / "c")
    assert (n, failures, ds.ids) == (2, [], ["a/one", "b/other"])
    assert ds.meta["duplicates"] == [["a/two", "a", "a/one", "a"], ["b/three", "b", "a/one", "a"]]
    n, _ = write_cache(
        BinaryTreeDataset(tmp_path / "t"), tmp_path / "k", ConvertSpec(kind="bytes"), dedupe=False
    )
    assert n == 4 and CachedDataset(tmp_path / "k").meta["duplicates"] == []


def test_unwritable_out_dir_is_one_error(tree: Path, tmp_path: Path) -> None:
    (tmp_path / "afile").write_bytes(b"x")
    with pytest.raises(DatasetError, match="afile/c: cannot create the cache here"):
        write_cache(BinaryTreeDataset(tree), tmp_path / "afile" / "c", ConvertSpec(image_size=4))


def test_progress_counts_every_sample(tree: Path, tmp_path: Path) -> None:
    import io

    from rich.console import Console
    from rich.progress import Progress

    bar = Progress(console=Console(file=io.StringIO()))
    write_cache(BinaryTreeDataset(tree), tmp_path / "c", ConvertSpec(image_size=4), progress=bar)
    (task,) = bar.tasks
    assert task.total == 5 and task.completed == 5  # the failed sample counts as done too


def test_cache_folder_has_ordinary_permissions(tree: Path, tmp_path: Path) -> None:
    import os

    write_cache(BinaryTreeDataset(tree), tmp_path / "c", ConvertSpec(image_size=4))
    umask = os.umask(0o022)
    os.umask(umask)
    assert (tmp_path / "c").stat().st_mode & 0o777 == 0o777 & ~umask
