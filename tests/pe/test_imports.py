"""The import table read with struct agrees with pefile, streams in any chunking, and survives damage."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pefile
import pip
import pytest

from corpus import minimal_pe
from malvision.convert.pefeatures import FEATURE_NAMES, FeatureTap, features_of
from malvision.convert.prepare import model_input
from malvision.convert.spec import ConvertSpec
from malvision.errors import ConversionError
from malvision.io import MemorySource
from malvision.pe import HEAD_BYTES, api_name, import_window, parse, read_imports
from malvision.pe.imports import MAX_FUNCTIONS

# Real PE files (MSVC-built script launchers, x86, x64 and arm64) that ship inside pip.
LAUNCHERS = sorted(Path(pip.__file__).parent.joinpath("_vendor", "distlib").glob("*.exe"))


def _ours(data: bytes):  # noqa: ANN202
    headers = parse(data[:HEAD_BYTES])
    start, end = import_window(headers) or (0, 0)
    return read_imports(headers, data[start:end], start)


@pytest.mark.parametrize("exe", LAUNCHERS, ids=lambda p: p.name)
def test_imports_match_pefile(exe: Path) -> None:
    data = exe.read_bytes()
    pe = pefile.PE(data=data)
    dlls = [e.dll.decode().lower() for e in pe.DIRECTORY_ENTRY_IMPORT]
    names = [api_name(i.name.decode()) for e in pe.DIRECTORY_ENTRY_IMPORT for i in e.imports]
    got = _ours(data)
    assert got.parsed and list(got.dlls) == dlls and list(got.functions) == names and len(names) > 50


@pytest.mark.parametrize("exe", LAUNCHERS, ids=lambda p: p.name)
def test_any_chunking_gives_the_whole_file_vector(exe: Path) -> None:
    data = exe.read_bytes()
    whole = features_of(data)
    for size in (4096, HEAD_BYTES - 1, HEAD_BYTES + 1000, 1 << 20):
        tap = FeatureTap()
        for i in range(0, len(data), size):
            tap.update(memoryview(data)[i : i + size])
        np.testing.assert_array_equal(tap.features(len(data)), whole)
    f = dict(zip(FEATURE_NAMES, whole.tolist(), strict=True))
    assert f["imports_parsed"] == 1 and f["import_dll_kernel32"] == 1 and f["import_GetCommandLine"] == 1
    assert f["log_n_imports"] > 4


def test_a_table_past_the_head_needs_the_window() -> None:
    exe = next(p for p in LAUNCHERS if p.name == "t64-arm.exe")
    data = exe.read_bytes()
    start, _ = import_window(parse(data[:HEAD_BYTES])) or (0, 0)
    assert start > HEAD_BYTES  # the import table sits past the first 64 KiB
    tap = FeatureTap()
    tap.update(data[:HEAD_BYTES])  # only the head: the table's bytes never arrive
    head_only = dict(zip(FEATURE_NAMES, tap.features(len(data)), strict=True))
    streamed = dict(zip(FEATURE_NAMES, features_of(data), strict=True))
    assert head_only["imports_parsed"] == 0 and streamed["imports_parsed"] == 1


def test_damaged_tables_and_cut_files_never_raise() -> None:
    data = LAUNCHERS[0].read_bytes()
    headers = parse(data[:HEAD_BYTES])
    start, end = import_window(headers) or (0, 0)
    rng = random.Random(0)
    for _ in range(300):
        window = bytearray(data[start:end])
        for _ in range(rng.randint(1, 40)):
            window[rng.randrange(len(window))] = rng.randrange(256)
        got = read_imports(headers, bytes(window), start)
        assert len(got.functions) <= MAX_FUNCTIONS
    for cut in range(0, len(data), 1999):
        v = features_of(data[:cut])
        assert np.isfinite(v).all()


def test_api_names_drop_the_character_set_only() -> None:
    assert api_name("CreateFileW") == api_name("CreateFileA") == "CreateFile"
    assert api_name("Process32FirstW") == "Process32First"
    for same in ("GetProcAddress", "WinExec", "VirtualAllocEx", "A", "_CorExeMain", "MAPI"):
        assert api_name(same) == same


def test_an_old_feature_list_is_refused() -> None:
    assert ConvertSpec(kind="features").version == 6 and ConvertSpec(kind="image").version == 1
    assert ConvertSpec(kind="fused").version == 5  # fused vectors begin with the feature list
    for old in (1, 2):
        with pytest.raises(ConversionError, match=f"features conversion version {old} .* rebuild the cache"):
            ConvertSpec(kind="features", version=old)


def test_a_model_of_the_old_feature_list_says_so(tmp_path: Path) -> None:
    """A checkpoint of the 125-feature list is refused for its input version: its weights would load,
    and every input would then be converted with the wrong list."""
    from malvision.checkpoint import load_checkpoint, save_checkpoint
    from malvision.errors import CheckpointError
    from malvision.models import create_model

    model = create_model("mlp", in_kind="features", n_classes=2, n_features=125)
    path = save_checkpoint(
        tmp_path / "old.pt", model, model_name="mlp", model_kwargs={"n_features": 125}, in_kind="features", n_classes=2,
        vocab_size=None, spec={"kind": "features", "version": 1}, classes=["benign", "malware"], seed=0,
        manifest_hash=None,
    )  # fmt: skip
    with pytest.raises(CheckpointError, match="features conversion version 1 .* retrain the model"):
        load_checkpoint(path)


def test_an_older_features_model_reads_the_start_of_the_vector() -> None:
    src = MemorySource.of("a.exe", minimal_pe())
    x = model_input(src, ConvertSpec(kind="features"))
    assert x.shape == ConvertSpec(kind="features").fixed_shape == (len(FEATURE_NAMES),)
    for version, first_new in ((3, "linker_version_major"), (4, "res_n_types")):
        old = ConvertSpec(kind="features", version=version)
        xv = model_input(src, old)
        assert xv.shape == old.fixed_shape and len(xv) < len(x) and FEATURE_NAMES[len(xv)] == first_new
        assert np.array_equal(x[: len(xv)], xv)
        fused = model_input(src, ConvertSpec(kind="fused", version=version - 1, image_size=8))
        assert fused.shape == (len(xv) + 64,) and np.array_equal(fused[: len(xv)], xv)
