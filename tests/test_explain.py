"""``explain``: attributions land on the bytes that decide, map to PE sections, and are written out."""

from __future__ import annotations

import json
import random
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from malvision.checkpoint import save_checkpoint
from malvision.cli import EXIT_ERROR, app
from malvision.convert import model_input
from malvision.convert.image import byte_plot, resize_plot
from malvision.convert.prepare import Prepared
from malvision.convert.sequence import byte_sequence, pad_batch
from malvision.convert.spec import ConvertSpec
from malvision.errors import MalvisionError
from malvision.explain import (
    attribute,
    explain_bytes,
    pe_regions,
    render_png,
    row_profile,
    top_ranges,
    write_explanation,
)
from malvision.explain.attribution import _log_odds
from malvision.io import MemorySource
from malvision.models import create_model
from malvision.scan import Scanner

SIZE = 16384  # byte-plot width 64: 256 rows; the marker fills rows 64..71
MARKER = (4096, 4608)  # class 1 ("malware") carries 0xAA here
MOVED = (10240, 10752)  # the same marker elsewhere: the attribution must follow it
MALVISION = Path(sys.executable).with_name("malvision")


def _sample(rng: np.random.Generator, marked: bool, at: tuple[int, int] = MARKER, size: int = SIZE) -> bytes:
    b = rng.integers(0, 256, size, dtype=np.uint8)
    if marked:
        b[at[0] : at[1]] = 0xAA
    return b.tobytes()


def _overlaps(r: Any, span: tuple[int, int]) -> bool:
    return r.start < span[1] and span[0] < r.end


def _train(kind: str, path: Path, size: int = SIZE) -> Path:
    """A tiny model that learns "0xAA block at 4096 = malware" from random files, in seconds."""
    rng = np.random.default_rng(0)
    labels = np.arange(128) % 2
    files = [_sample(rng, bool(label), size=size) for label in labels]
    torch.manual_seed(0)
    if kind == "image":
        name, kwargs, vocab = "cnn", {"channels": [8, 16], "dropout": 0.0}, None
        x = torch.from_numpy(
            np.stack([resize_plot(byte_plot(f), 32) for f in files]).astype(np.float32)[:, None]
        )
        x = x / 255.0
        spec = ConvertSpec(kind="image", image_size=32)
    else:
        name, kwargs, vocab = (
            "cnn",
            {"channels": [8, 16], "embed_dim": 4, "stem_stride": 8, "dropout": 0.0},
            257,
        )
        x = torch.from_numpy(pad_batch([byte_sequence(f, size) for f in files]))
        spec = ConvertSpec(kind="bytes", max_len=size)
    model = create_model(name, in_kind=kind, n_classes=2, vocab_size=vocab, **kwargs)
    y = torch.from_numpy(labels)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(12):
        for idx in torch.randperm(len(y)).split(32):
            loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    return save_checkpoint(
        path,
        model,
        model_name=name,
        model_kwargs=kwargs,
        in_kind=kind,
        n_classes=2,
        vocab_size=vocab,
        spec=spec.to_dict(),
        classes=["benign", "malware"],
        seed=0,
        manifest_hash=None,
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Scanner]:
    folder = tmp_path_factory.mktemp("explain-models")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        paths = {
            "image": _train("image", folder / "image.pt"),
            "bytes": _train("bytes", folder / "bytes.pt", size=8192),
        }
    finally:
        torch.set_num_threads(threads)
    return {k: Scanner(p, backend="torch") for k, p in paths.items()}


# -- a PE built by hand: known sections at known offsets ------------------------------------------------------
def _pe(sections: list[tuple[bytes, int, bytes]], overlay: bytes = b"") -> bytes:
    """A PE32 whose headers take 0x400 bytes, then ``(name, raw offset, content)`` sections, then overlay."""
    n = len(sections)
    dos = bytearray(0x40)
    dos[0:2] = b"MZ"
    struct.pack_into("<I", dos, 0x3C, 0x40)
    coff = struct.pack("<HHIIIHH", 0x14C, n, 0, 0, 0, 224, 0x0102)
    end = max(off + len(body) for _, off, body in sections)
    opt = struct.pack(
        "<HBBIIIIIIIIIHHHHHHIIIIHHIIIIII",
        0x10B, 14, 0, 0, 0, 0, 0x1000, 0x1000, 0, 0x400000, 0x1000, 0x200,
        6, 0, 0, 0, 6, 0, 0, 0x1000 * (n + 2), 0x400, 0, 2, 0, 0x100000, 0x1000, 0x100000, 0x1000, 0, 16,
    ) + bytes(16 * 8)  # fmt: skip
    heads = b"".join(
        struct.pack("<8sIIIIIIHHI", name, len(body), 0x1000 * (i + 1), len(body), off, 0, 0, 0, 0, 0x60000020)
        for i, (name, off, body) in enumerate(sections)
    )
    out = bytearray((bytes(dos) + b"PE\0\0" + coff + opt + heads).ljust(0x400, b"\0"))
    out = out.ljust(end, b"\0")
    for _, off, body in sections:
        out[off : off + len(body)] = body
    return bytes(out) + overlay


def _random(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


# -- the attribution moves with the evidence ---------------------------------------------------------------
@pytest.mark.parametrize("method", ["ig", "gradient", "gradcam"])
def test_image_model_top_range_is_the_marker(trained: dict[str, Scanner], method: str) -> None:
    rng = np.random.default_rng(1)
    expl = explain_bytes(trained["image"], "marked.bin", _sample(rng, True), method=method)
    assert expl.target == "malware" and expl.raw_probability > 0.8
    assert expl.unit == "byte" and expl.plot_width == 64
    top = expl.ranges[0]
    assert _overlaps(top, MARKER), (method, expl.ranges)
    assert top.start % 64 == 0 and top.end % 64 == 0  # whole plot rows
    # Random bytes are triaged as not-a-PE: the verdict stays honest, the note says so.
    assert expl.verdict.verdict == "unknown" and "unknown" in (expl.note or "")


def test_image_model_attribution_follows_a_moved_marker(trained: dict[str, Scanner]) -> None:
    rng = np.random.default_rng(2)
    expl = explain_bytes(trained["image"], "moved.bin", _sample(rng, True, MOVED))
    assert _overlaps(expl.ranges[0], MOVED) and not _overlaps(expl.ranges[0], MARKER), expl.ranges
    assert 0.2 < expl.ranges[0].share <= 1.0


@pytest.mark.parametrize(("at", "not_at"), [(MARKER, None), ((1024, 1536), MARKER)])
def test_bytes_model_top_range_is_the_marker(trained: dict[str, Scanner], at: Any, not_at: Any) -> None:
    rng = np.random.default_rng(3)
    data = _sample(rng, True, at, size=8192)
    expl = explain_bytes(trained["bytes"], "marked.bin", data)
    assert expl.target == "malware" and expl.raw_probability > 0.9
    top = expl.ranges[0]
    assert _overlaps(top, at), expl.ranges
    assert not_at is None or not _overlaps(top, not_at)
    assert top.end - top.start < 2048  # a byte range, not the whole file
    assert expl.heat.shape == (8192,) and expl.plot_width == 32
    assert render_png(expl, data)[:4] == b"\x89PNG"


def test_integrated_gradients_add_up_to_the_output_change(trained: dict[str, Scanner]) -> None:
    """Completeness: IG attributions sum to F(input) - F(baseline), F the target's log-odds."""
    sc = trained["image"]
    x = model_input(MemorySource.of("m", _sample(np.random.default_rng(4), True)), sc.spec)
    attr = attribute(sc.checkpoint.model, x, 1, "ig", steps=128)
    with torch.no_grad():
        xt = torch.from_numpy(x.astype(np.float32)[None, None] / 255.0)
        f = _log_odds(sc.checkpoint.model(xt), 1) - _log_odds(sc.checkpoint.model(torch.zeros_like(xt)), 1)
    assert attr.sum() == pytest.approx(float(f), rel=0.05)


def test_malconv_attribution_is_the_same_chunked_or_not() -> None:
    """MalConv's low-memory chunked max pool gives the same attribution as its plain forward."""
    torch.manual_seed(0)
    kw = {"embed_dim": 4, "window": 16, "stride": 16, "channels": 6, "hidden": 6}
    plain = create_model("malconv", in_kind="bytes", n_classes=2, **kw, chunk_size=1 << 20)
    chunked = create_model("malconv", in_kind="bytes", n_classes=2, **kw, chunk_size=64)
    chunked.load_state_dict(plain.state_dict())
    x = byte_sequence(_random(3000, 5), 4096)
    a, b = attribute(plain, x, 1, "ig", steps=8), attribute(chunked, x, 1, "ig", steps=8)
    assert a.shape == (3000,) and np.abs(a).sum() > 0
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    # At the input itself only the max-pool winners get gradient: at most one 16-byte window per channel.
    g = attribute(chunked, x, 1, "gradient")
    assert 0 < np.count_nonzero(g) <= 6 * 16
    np.testing.assert_allclose(g, attribute(plain, x, 1, "gradient"), rtol=1e-4, atol=1e-6)


def test_gradcam_needs_a_conv_layer() -> None:
    model = create_model(
        "malconv", in_kind="bytes", n_classes=2, embed_dim=4, window=8, stride=8, channels=4, hidden=4
    )
    with pytest.raises(MalvisionError, match="Grad-CAM"):
        attribute(model, byte_sequence(b"abc" * 20, 64), 1, "gradcam")
    with pytest.raises(MalvisionError, match="method"):
        attribute(model, byte_sequence(b"abc" * 20, 64), 1, "shap")


@pytest.mark.parametrize("kind", ["image", "bytes"])
def test_model_input_past_triage_is_what_scan_would_see(
    trained: dict[str, Scanner], kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Random bytes are triaged (the scanner gets no model input); the conversion past triage, which
    explain shows, gives exactly the array the scanner gets when triage lets the same bytes through."""
    sc = trained[kind]
    data = _random(8192, 6)
    assert sc.prepare(MemorySource.of("r", data)).x is None
    ours = model_input(MemorySource.of("r", data), sc.spec, sc.vocab)
    monkeypatch.setattr(Prepared, "triage", lambda self, spec: None)
    np.testing.assert_array_equal(ours, sc.prepare(MemorySource.of("r", data)).x)


# -- mapping to the file ---------------------------------------------------------------------------------
def test_row_profile_shares_cells_among_their_rows() -> None:
    cells = np.zeros(8)
    cells[3] = 1.0
    prof = row_profile(cells, 100)  # cell 3 averages rows [37.5, 50)
    assert prof.sum() == pytest.approx(1.0)
    assert np.flatnonzero(prof).tolist() == list(range(37, 50))
    assert prof[37] == pytest.approx(prof[38] / 2)
    assert row_profile(np.arange(5.0), 5).tolist() == [0, 1, 2, 3, 4]  # same size: identity


def test_top_ranges_merge_rank_and_share() -> None:
    p = np.zeros(1000)
    p[100:110] = 1.0
    p[112:120] = 1.0  # 2 cold units apart: merges with the run before
    p[500:540] = 2.0
    p[900] = 0.05  # below the hot threshold
    r = top_ranges(p, top_k=5)
    total = p.sum()
    assert r == [(500, 540, pytest.approx(80 / total)), (100, 120, pytest.approx(18 / total))]
    assert top_ranges(p, top_k=1) == r[:1]
    assert top_ranges(-p) == [] and top_ranges(np.zeros(10)) == [] and top_ranges(np.array([])) == []
    big = np.zeros(10_000)
    big[4000:4100] = 1.0  # binned (10 units a bin) yet still bounded by the bins it touches
    ((a, z, share),) = top_ranges(big)
    assert a <= 4000 and z >= 4100 and z - a <= 120 and share == pytest.approx(1.0)


def test_pe_regions_headers_sections_overlay() -> None:
    text = _random(0x1000, 7)
    pe = _pe([(b".text", 0x400, text), (b".rsrc", 0x1400, bytes(0x800))], overlay=b"\x01\x02" * 0x200)
    regions = pe_regions(pe)
    assert [(r.name, r.start, r.end) for r in regions] == [
        ("headers", 0, 0x400),
        (".text", 0x400, 0x1400),
        (".rsrc", 0x1400, 0x1C00),
        ("overlay", 0x1C00, 0x2000),
    ]
    ent = {r.name: r.entropy for r in regions}
    assert ent[".text"] > 7.5 and ent[".rsrc"] == 0.0 and ent["overlay"] == pytest.approx(1.0)
    assert pe_regions(_random(5000, 8)) == []  # not a PE
    assert pe_regions(b"MZ" + bytes(100)) == []  # a broken one: no crash


def test_ranges_name_the_section_they_fall_in(trained: dict[str, Scanner]) -> None:
    """The marker sits in .rsrc of a real-looking PE: the top range says .rsrc and its entropy."""
    pe = _pe(
        [
            (b".text", 0x400, _random(0xC00, 9)),
            (b".rsrc", 0x1000, b"\xaa" * 0x200),
            (b".data", 0x1200, _random(0x1E00, 10)),
        ],
        overlay=_random(0x1000, 11),
    )
    assert len(pe) == SIZE
    expl = explain_bytes(trained["image"], "marked.exe", pe)
    assert expl.verdict.verdict == "malware" and expl.verdict.reason is None and expl.note is None
    top = expl.ranges[0]
    assert (top.start, top.end) == MARKER
    assert top.section == ".rsrc" and top.sections == (".rsrc",) and top.section_entropy == 0.0
    d = expl.to_dict()
    assert [s["name"] for s in d["sections"]] == ["headers", ".text", ".rsrc", ".data", "overlay"]
    assert d["ranges"][0] | {"share": 0} == {
        "start": 4096, "end": 4608, "length": 512, "share": 0, "unit": "byte", "section": ".rsrc",
        "sections": [".rsrc"], "section_entropy": 0.0, "rank": 1,
    }  # fmt: skip


# -- outputs -------------------------------------------------------------------------------------------------
def test_write_explanation_png_and_json(trained: dict[str, Scanner], tmp_path: Path) -> None:
    data = _sample(np.random.default_rng(12), True)
    expl = explain_bytes(trained["image"], "dir/marked.bin", data, top_k=3)
    json_path, png_path = write_explanation(expl, data, tmp_path / "out")
    assert json_path.name == "marked.bin.explain.json" and png_path.name == "marked.bin.explain.png"
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    record = json.loads(json_path.read_text())
    assert record["png"] == png_path.name and record["verdict"] == "unknown"
    assert 1 <= len(record["ranges"]) <= 3 and record["ranges"][0]["rank"] == 1
    assert not list(tmp_path.rglob("*.part"))


def test_opcode_model_explains_tokens(tmp_path: Path) -> None:
    vocab = ["push", "mov", "call", "ret", "pop", "xor"]
    model = create_model(
        "cnn", in_kind="opcodes", n_classes=3, vocab_size=len(vocab) + 2, channels=[4], embed_dim=4
    )
    path = save_checkpoint(
        tmp_path / "op.pt", model, model_name="cnn", model_kwargs={"channels": [4], "embed_dim": 4},
        in_kind="opcodes", n_classes=3, vocab_size=len(vocab) + 2,
        spec=ConvertSpec(kind="opcodes", max_len=512, vocab=tuple(vocab)).to_dict(),
        classes=["Gatak", "Ramnit", "Vundo"], seed=0, manifest_hash=None,
    )  # fmt: skip
    text = "\n".join(random.Random(0).choice(vocab) for _ in range(300)).encode()
    expl = explain_bytes(Scanner(path, backend="torch"), "sample.txt", text, method="gradient")
    assert expl.unit == "token" and expl.sections == [] and expl.verdict.family == expl.target
    assert all(r.unit == "token" and r.section is None and 0 <= r.start < r.end <= 300 for r in expl.ranges)
    assert render_png(expl, text)[:4] == b"\x89PNG"


def test_explain_refuses_what_it_cannot_draw(tiny_detector: Path) -> None:
    sc = Scanner(tiny_detector, backend="torch")
    with pytest.raises(MalvisionError, match="empty"):
        explain_bytes(sc, "e", b"")
    with pytest.raises(MalvisionError, match="too small"):
        explain_bytes(sc, "tiny", b"MZ" + bytes(10))
    with pytest.raises(MalvisionError, match="target class"):
        explain_bytes(sc, "x", _random(4096, 1), target="goodware")


def test_a_tiled_image_model_scans_but_is_not_mapped_back_to_the_file(tmp_path: Path) -> None:
    model = create_model("cnn", in_kind="image", n_classes=2, channels=[4])
    path = save_checkpoint(
        tmp_path / "tiles.pt", model, model_name="cnn", model_kwargs={"channels": [4]}, in_kind="image",
        n_classes=2, vocab_size=None, spec=ConvertSpec(image_size=16, tile=8).to_dict(),
        classes=["benign", "malware"], seed=0, manifest_hash=None,
    )  # fmt: skip
    sc = Scanner(path, backend="torch")
    data = _random(40_000, 3)
    x = model_input(MemorySource.of("x", data), sc.spec)
    assert sc.spec.tile == 8 and x.shape == (16, 16) and sc.infer([x]).shape == (1, 2)
    with pytest.raises(MalvisionError, match="this model reads 8x8 tiles"):
        explain_bytes(sc, "x", data)


# -- the command ------------------------------------------------------------------------------------------
def test_cli_explain_json(tiny_detector: Path, tmp_path: Path) -> None:
    f = tmp_path / "sample.exe"
    f.write_bytes(_pe([(b".text", 0x400, _random(0x2000, 13))]))
    res = CliRunner().invoke(
        app,
        [
            "explain",
            str(f),
            "--model",
            str(tiny_detector),
            "--out",
            str(tmp_path / "o"),
            "--json",
            "--top-k",
            "2",
        ],
    )
    assert res.exit_code == 0, res.output
    record = json.loads(res.stdout)
    assert record["path"] == str(f) and record["verdict"] in ("benign", "malware")
    assert len(record["ranges"]) <= 2 and Path(record["png"]).is_file() and Path(record["json"]).is_file()
    res = CliRunner().invoke(
        app, ["explain", str(f), "--model", str(tiny_detector), "--out", str(tmp_path / "o")]
    )
    assert res.exit_code == 0 and "top" in res.stdout and ".text" in res.stdout


def test_cli_explain_gives_the_score_scan_gives(tmp_path: Path) -> None:
    """The bundled default scans on numpy trees: explain's verdict comes from the same backend, to the bit."""
    import pip

    # t32.exe: its torch score differs from the trees' in the 8th digit
    launcher = sorted(Path(pip.__file__).parent.joinpath("_vendor", "distlib").glob("*.exe"))[0]
    runner = CliRunner()
    explained = runner.invoke(app, ["explain", str(launcher), "--out", str(tmp_path), "--json"])
    scanned = runner.invoke(app, ["scan", str(launcher), "--json"])
    assert explained.exit_code == 0 and scanned.exit_code == 0
    assert json.loads(explained.stdout)["score"] == json.loads(scanned.stdout)[0]["score"]


def test_cli_explain_missing_file_is_one_line(tiny_detector: Path, tmp_path: Path) -> None:
    res = subprocess.run(
        [MALVISION, "explain", str(tmp_path / "nope"), "--model", str(tiny_detector)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == EXIT_ERROR
    assert res.stderr.strip() == f"error: {tmp_path / 'nope'}: no such file"


def test_a_features_model_is_explained_by_named_features(tmp_path: Path) -> None:
    """An mlp whose malware logit is one feature (log_size): that feature takes the whole attribution."""
    from corpus import minimal_pe
    from malvision.convert.pefeatures import FEATURE_NAMES

    k = FEATURE_NAMES.index("log_size")
    model = create_model("mlp", in_kind="features", n_classes=2, hidden=[2], dropout=0.0).eval()
    with torch.no_grad():
        lin = model.body[1]
        lin.weight.zero_()
        lin.bias.zero_()
        lin.weight[0, k] = 1.0
        model.fc.weight.copy_(torch.tensor([[0.0, 0.0], [0.5, 0.0]]))
        model.fc.bias.zero_()
        model.body[0].running_var[k] = 4.0  # log_size ~9 standardises to ~4.6, inside the input clip
    path = save_checkpoint(tmp_path / "f.pt", model, model_name="mlp", model_kwargs={"hidden": [2], "dropout": 0.0},
                           in_kind="features", n_classes=2, vocab_size=None, spec={"kind": "features"},
                           classes=["benign", "malware"], seed=0, manifest_hash=None)  # fmt: skip
    data = minimal_pe()
    expl = explain_bytes(Scanner(path, backend="torch"), "a.exe", data, top_k=3, target="malware")
    assert expl.unit == "feature" and expl.ranges == [] and len(expl.features) == 3
    top = expl.features[0]
    assert top.name == "log_size" and top.share > 0.99 and top.attribution > 0
    assert abs(top.value - np.log1p(len(data))) < 1e-4 and top.typical == 0.0  # untouched running mean
    # integrated gradients are complete: they add up to the log-odds change from the baseline
    assert abs(top.attribution - 0.5 * np.log1p(len(data)) / np.sqrt(4.0 + 1e-5)) < 1e-3
    record = expl.to_dict()
    assert record["features"][0]["name"] == "log_size" and record["features"][0]["rank"] == 1
    png = render_png(expl, data)
    assert png.startswith(b"\x89PNG") and len(png) > 5000
    with pytest.raises(MalvisionError, match="gradcam needs a convolutional model"):
        explain_bytes(Scanner(path, backend="torch"), "a.exe", data, method="gradcam")


def test_the_default_model_names_the_imports_behind_its_features() -> None:
    """The shipped trees on a real PE: each import feature in the top list shows the file's own imports
    that set it, and a hashed bucket the file leaves empty shows none."""
    import pip

    from malvision.convert.pefeatures import FEATURE_NAMES, imports_behind
    from malvision.pe import HEAD_BYTES, parse

    exe = Path(pip.__file__).parent / "_vendor" / "distlib" / "t64.exe"
    data = exe.read_bytes()
    scanner = Scanner("default", backend="torch")
    expl = explain_bytes(scanner, exe.name, data, top_k=len(FEATURE_NAMES))
    assert expl.method == "occlusion" and len(expl.features) == scanner.spec.n_features  # every one it reads
    assert {f.name for f in expl.features} == set(FEATURE_NAMES[: scanner.spec.n_features])
    behind = imports_behind(data, parse(data[:HEAD_BYTES]))
    assert sum(len(v) for v in behind.values()) > 50  # every imported function lands in some feature
    for f in expl.features:
        if f.name.startswith(("import_other_", "import_")) and not f.name.startswith("import_dll_"):
            assert bool(f.imports) == (f.value == 1), f
            assert f.imports == behind.get(f.name, [])
        else:
            assert f.imports == []
    assert any(f.name.startswith("import_other_") and f.imports for f in expl.features)
    assert json.loads(json.dumps(expl.to_dict()))["features"][0].keys() >= {"name", "imports", "rank"}


def test_the_shipped_family_model_names_its_grams_and_nearest_training_samples() -> None:
    scanner = Scanner("big2015-opcodes", backend="torch")
    vocab = list(scanner.spec.vocab[:40])
    text = "\n".join(random.Random(3).choice(vocab) for _ in range(2000)).encode()
    expl = explain_bytes(scanner, "sample.asm.txt", text, top_k=5)
    assert expl.features and all(f.description.startswith("how often the") for f in expl.features)
    note = expl.note or ""
    assert "nearest training samples" in note
    named = note.split(": ", 1)[1].split(", ")
    sims = [float(n.rsplit(" ", 1)[1]) for n in named]
    assert len(named) == 3 and {n.rsplit(" ", 1)[0] for n in named} <= set(scanner.classes)
    assert sims == sorted(sims, reverse=True) and -1.0 <= sims[-1] <= sims[0] <= 1.0
