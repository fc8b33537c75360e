"""One path from bytes to model input: for every input kind and real files, the cache builder, the
scanner, explain and the server hand the model the very same array."""

from __future__ import annotations

import tarfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pip
import pytest
import torch
from fastapi.testclient import TestClient

from data.helpers import zipcrypto_zip
from malvision.checkpoint import save_checkpoint
from malvision.convert.opcodes import parse_opcodes
from malvision.convert.spec import KINDS, ConvertSpec
from malvision.data.cache import CachedDataset
from malvision.data.cache_write import write_cache
from malvision.data.records import RawDataset, Record
from malvision.io import MemorySource, Source, open_source
from malvision.models import create_model
from malvision.scan import Scanner
from malvision.sources import iter_sources

LAUNCHERS = sorted(Path(pip.__file__).parent.joinpath("_vendor", "distlib").glob("*.exe"))
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
MODELS = {
    "image": ("cnn", {"channels": [4, 8]}),
    "views": ("cnn", {"channels": [4, 8]}),
    "bytes": ("malconv", {"embed_dim": 4, "window": 64, "stride": 64, "channels": 4, "hidden": 4}),
    "opcodes": ("cnn", {"channels": [4, 8], "embed_dim": 4}),
    "features": ("mlp", {"hidden": [8]}),
    "fused": ("fused", {"image_size": 32, "channels": [4, 8], "hidden": [8]}),
    "histograms": ("mlp", {"hidden": [8]}),
}
SPECS = {
    "image": ConvertSpec(kind="image", image_size=32),
    "views": ConvertSpec(kind="views", image_size=32),
    "bytes": ConvertSpec(kind="bytes", max_len=50_000),
    "opcodes": ConvertSpec(kind="opcodes", max_len=3000),
    "features": ConvertSpec(kind="features"),
    "fused": ConvertSpec(kind="fused", image_size=32),
    "histograms": ConvertSpec(kind="histograms"),
}


def _opcode_text() -> tuple[str, bytes]:
    """A BIG2015 opcode file from ../shared when it is there (the archive's first member; a few MB
    decompressed), else opcode text of the same form."""
    archive = SHARED / "big2015_opcodes.tar.xz"
    if archive.is_file():
        with tarfile.open(archive, "r:xz") as tar:
            for member in tar:
                if member.isfile() and member.name.endswith(".txt"):
                    return Path(member.name).name, tar.extractfile(member).read()  # type: ignore[union-attr]
    ops = ["push", "mov", "call", "pop", "xor", "jmp", "add", "lea", "retn", "cmp"]
    rng = np.random.default_rng(0)
    return "ops.txt", "\n".join(ops[i] for i in rng.integers(0, len(ops), 5000)).encode() + b"\n"


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Source]]:
    """Real files per expected type: pip's PE launchers and a zip entry (read in memory), and opcode text."""
    tmp = tmp_path_factory.mktemp("one-path")
    pe: list[Source] = [open_source(p) for p in LAUNCHERS[:3]]
    archive = zipcrypto_zip(tmp / "samples.zip", {"family/launcher.exe": LAUNCHERS[-1].read_bytes()})
    pe += [opener() for _, _, opener in iter_sources([archive], zip_password="infected")]
    name, text = _opcode_text()
    (tmp / name).write_bytes(text)
    return {"pe": pe, "text": [open_source(tmp / name)]}


class _Listed(RawDataset):
    """The given sources as a raw dataset, so the cache builder reads exactly them."""

    def __init__(self, srcs: list[Source]) -> None:
        super().__init__(
            "listed", [Record(f"s{i}", "a", None, s.name, s.size, None) for i, s in enumerate(srcs)]
        )
        self.srcs = srcs

    def open(self, i: int) -> Source:
        s = self.srcs[i]
        return MemorySource.of(s.name, s.read())


def _scanner(kind: str, spec: ConvertSpec, tmp: Path) -> Scanner:
    torch.manual_seed(0)
    name, kw = MODELS[kind]
    vocab = len(spec.vocab) + 2 if kind == "opcodes" else None
    model = create_model(name, in_kind=kind, n_classes=2, vocab_size=vocab, **kw)
    path = save_checkpoint(
        tmp / f"{kind}.pt", model, model_name=name, model_kwargs=kw, in_kind=kind, n_classes=2,
        vocab_size=model.vocab_size, spec=spec.to_dict(), classes=["benign", "malware"], seed=0,
        manifest_hash=None,
    )  # fmt: skip
    return Scanner(path, backend="torch", workers=2)


@pytest.fixture
def seen(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[np.ndarray]]:
    """Every model input the scanner batches and every input explain attributes, in order."""
    got: list[np.ndarray] = []
    real_logits = Scanner.logits

    def logits(self: Scanner, xs: list[np.ndarray]) -> np.ndarray:
        got.extend(xs)
        return real_logits(self, xs)

    monkeypatch.setattr(Scanner, "logits", logits)
    yield got


def test_every_input_kind_is_covered() -> None:
    assert set(MODELS) == set(SPECS) == set(KINDS)


@pytest.mark.parametrize("kind", KINDS)
def test_cache_scanner_explain_and_server_see_the_same_array(
    kind: str, sources: dict[str, list[Source]], seen: list[np.ndarray], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    from malvision.explain import explain_bytes
    from malvision.server import create_app

    srcs = sources["text" if kind == "opcodes" else "pe"]
    datas = [s.read() for s in srcs]
    spec = SPECS[kind]
    write_cache(
        _Listed(srcs), tmp_path / "cache", ConvertSpec(kind=kind, image_size=32, max_len=spec.max_len)
    )
    ds = CachedDataset(tmp_path / "cache")
    if kind == "opcodes":  # the model's vocabulary from the file itself; the cache remaps to it
        spec = ConvertSpec(kind="opcodes", max_len=spec.max_len, vocab=tuple(ds.fit_vocab([0]).tokens))
    cached = [ds[i][0] for i in range(len(ds))]
    scanner = _scanner(kind, spec, tmp_path)

    # The scanner, on files and zip entries through its reader threads.
    paths = [s.path for s in srcs if hasattr(s, "path")]
    list(scanner.scan(paths))
    scanned = list(seen)
    for data in datas[len(paths) :]:  # zip entries: bytes in memory, as the scanner reads them
        seen.clear()
        scanner.scan_bytes("entry", data)
        scanned += seen
    # Explain, with what it attributes captured.
    explained: list[np.ndarray] = []
    import malvision.explain.explanation as ex

    real = ex.attribute
    monkeypatch.setattr(
        ex, "attribute", lambda model, x, *a, **k: explained.append(x) or real(model, x, *a, **k)
    )
    for s, data in zip(srcs, datas, strict=True):
        explain_bytes(scanner, s.name, data, steps=2)
    # The server's scan endpoint.
    seen.clear()
    client = TestClient(create_app(scanner))
    for s, data in zip(srcs, datas, strict=True):
        assert client.post("/v1/scan", files={"files": (Path(s.name).name, data)}).status_code == 200
    served = list(seen)

    assert len(cached) == len(scanned) == len(explained) == len(served) == len(srcs)
    for a, b, c, d in zip(cached, scanned, explained, served, strict=True):
        assert a.shape == b.shape == c.shape == d.shape
        assert np.array_equal(a, b) and np.array_equal(b, c) and np.array_equal(c, d)
    if kind == "opcodes":  # cut at max_len mnemonics, not at some share of the file's bytes
        assert len(cached[0]) == min(spec.max_len, len(parse_opcodes(datas[0])))
