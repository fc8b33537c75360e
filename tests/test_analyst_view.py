"""What an analyst reads: features by their Windows names, imports as dll!function, the byte plot with
every model, one malware score with its threshold and band, terminal output that fits."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from malvision.cli import app
from malvision.convert.featurelabels import FEATURE_LABELS, feature_label, feature_span
from malvision.convert.pefeatures import FEATURE_NAMES, imports_behind
from malvision.pe import parse_or_none
from malvision.scan import Scanner


def _launcher(name: str = "w32.exe") -> Path:
    import pip._vendor.distlib as distlib

    path = Path(distlib.__file__).with_name(name)
    if not path.is_file():
        pytest.skip(f"pip's distlib {name} is not installed")
    return path


def test_every_feature_has_a_distinct_analyst_name_and_a_description() -> None:
    assert set(FEATURE_LABELS) == set(FEATURE_NAMES)
    labels = [v.label for v in FEATURE_LABELS.values()]
    assert len(set(labels)) == len(labels)
    assert all(v.description and v.description != k for k, v in FEATURE_LABELS.items())
    assert not any(re.search(r"_bit\d+$", v.label) for v in FEATURE_LABELS.values())
    assert feature_label("characteristics_bit13").label == "IMAGE_FILE_DLL"
    assert feature_label("characteristics_bit5").label == "IMAGE_FILE_LARGE_ADDRESS_AWARE"
    assert feature_label("dll_characteristics_bit8").label == "IMAGE_DLLCHARACTERISTICS_NX_COMPAT"
    assert feature_label("dll_characteristics_bit6").label == "IMAGE_DLLCHARACTERISTICS_DYNAMIC_BASE"
    assert feature_label("subsystem_gui").label == "IMAGE_SUBSYSTEM_WINDOWS_GUI"
    assert feature_label("import_VirtualAlloc").label == "kernel32.dll!VirtualAlloc"
    assert feature_label("import_RegSetValueEx").label == "advapi32.dll!RegSetValueEx"
    assert feature_label("section_rsrc").label == "section .rsrc"
    assert feature_label("dir_security").label == "IMAGE_DIRECTORY_ENTRY_SECURITY"


def test_features_point_at_the_bytes_they_come_from() -> None:
    data = _launcher().read_bytes()
    headers = parse_or_none(data[:65536])
    assert headers is not None
    head = feature_span("dll_characteristics_bit8", headers, len(data))
    assert head is not None and head[0] == 0 and head[1] <= headers.size_of_headers
    text = next(s for s in headers.sections if s.name == b".text")
    assert feature_span("section_text", headers, len(data)) == (
        text.raw_pointer,
        text.raw_pointer + text.raw_size,
    )
    imports = feature_span("import_dll_kernel32", headers, len(data))
    assert imports is not None and 0 < imports[0] < imports[1] <= len(data)
    assert feature_span("entropy", headers, len(data)) is None  # the whole file
    assert feature_span("section_upx", headers, len(data)) is None  # no such section
    # A section the feature does not count (Delphi's DATA for .data) gets no box from it.
    renamed = bytearray(data)
    at = data.index(b".data\0\0\0", 0, headers.size_of_headers)
    renamed[at : at + 8] = b"DATA\0\0\0\0"
    other = parse_or_none(bytes(renamed[:65536]))
    assert other is not None and feature_span("section_data", other, len(data)) is None
    assert feature_span("section_data", headers, len(data)) is not None


def test_imports_behind_a_feature_read_as_dll_bang_function() -> None:
    data = _launcher().read_bytes()
    behind = imports_behind(data, parse_or_none(data[:65536]))
    names = [n for v in behind.values() for n in v]
    assert names and all(re.fullmatch(r"[\w.-]+\.dll![\w@?$#]+", n, re.I) for n in names), names[:5]
    assert any(n.lower().startswith("kernel32.dll!") for n in names)
    # As pefile reads them: the file's own names, A/W suffix and all (the features fold the suffix).
    import pefile

    pe = pefile.PE(data=data, fast_load=True)
    pe.parse_data_directories(directories=[pefile.DIRECTORY_ENTRY["IMAGE_DIRECTORY_ENTRY_IMPORT"]])
    want = [
        f"{e.dll.decode().lower()}!{i.name.decode()}"
        for e in pe.DIRECTORY_ENTRY_IMPORT
        for i in e.imports
        if i.name
    ]
    assert sorted(names) == sorted(want) and any(n.endswith("W") for n in names)


def test_explaining_a_real_pe_with_the_default_model(tmp_path: Path) -> None:
    """Named features with their bytes, the malware score against its threshold, the card's band, and
    a picture holding the byte plot beside the feature bars."""
    pe = _launcher()
    result = CliRunner().invoke(app, ["explain", str(pe), "-o", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["target"] == "malware"  # a detector explains its one score
    assert record["band"] in ("clean", "suspicious", "malicious") and 0 < record["threshold"] < 1
    assert record["unit"] == "feature" and len(record["features"]) == 5
    labels = {v.label for v in FEATURE_LABELS.values()}
    assert all(f["label"] in labels and f["description"] for f in record["features"])
    assert [s["name"] for s in record["sections"]][:2] == ["headers", ".text"]
    with Image.open(record["png"]) as img:
        width, height = img.size
        pixels = np.asarray(img.convert("L"))
    assert width >= 1000  # byte plot and bars side by side
    assert pixels.std() > 20  # a picture, not a blank page
    text = CliRunner().invoke(app, ["explain", str(pe), "-o", str(tmp_path)])
    assert re.search(
        r": (benign|malware) \((clean|suspicious|malicious)\) score 0\.\d{4}, threshold 0\.\d{4}: (below|at or above)",
        text.stdout,
    )
    assert "raw model probability of 'malware'" in text.stdout
    assert "characteristics_bit" not in text.stdout


def test_scan_brief_and_a_table_relative_to_the_folder(tmp_path: Path) -> None:
    folder = tmp_path / "a-rather-long-folder-name" / "with" / "more-levels"
    folder.mkdir(parents=True)
    for name in ("w32.exe", "t32.exe"):
        (folder / name).write_bytes(_launcher(name).read_bytes())
    (folder / "notes.txt").write_text("plain text\n" * 20)
    brief = CliRunner().invoke(app, ["scan", "--brief", str(folder)])
    assert brief.exit_code == 0, brief.output
    lines = brief.stdout.strip().splitlines()
    assert len(lines) == 3
    assert re.fullmatch(rf"{re.escape(str(folder))}/t32\.exe: benign 0\.\d{{4}} (clean|suspicious)", lines[1])
    assert lines[0].endswith("notes.txt: unknown (text file, not a Windows PE file)")
    table = CliRunner().invoke(app, ["scan", str(folder)], env={"COLUMNS": "100"})
    assert table.exit_code == 0
    assert (
        f"paths under {folder}" in table.stdout.replace("\n", " ").replace("  ", " ")
        or "paths under" in table.stdout
    )
    rows = [ln for ln in table.stdout.splitlines() if ".exe" in ln]
    assert len(rows) == 2 and all(str(folder) not in ln for ln in rows)  # relative, one line each
    assert all(re.search(r"0\.\d{4} < 0\.\d{4}", ln) for ln in rows)


def test_info_lists_features_by_their_analyst_names() -> None:
    out = CliRunner().invoke(app, ["info", "--features", "--json"])
    assert out.exit_code == 0, out.output
    rows = json.loads(out.stdout)
    assert len(rows) == len(FEATURE_NAMES) and {r["id"] for r in rows} == set(FEATURE_NAMES)
    assert all(r["label"] == FEATURE_LABELS[r["id"]].label for r in rows)
    splits = [int(r["splits"]) for r in rows]
    assert splits == sorted(splits, reverse=True) and splits[0] > 0  # the trees' most used first
    card = json.loads(CliRunner().invoke(app, ["info", "--json"]).stdout)
    low, high = card["bands"]["points"]["0.01"], card["bands"]["points"]["0.001"]
    assert 0 < low <= high == card["threshold"]
    refused = CliRunner().invoke(app, ["info", "big2015-opcodes", "--features"])
    assert refused.exit_code != 0 and "reads no PE features" in str(refused.exception)  # main() prints it


def test_a_family_model_has_no_band() -> None:
    scanner = Scanner("big2015-opcodes", backend="torch")
    assert scanner.bands is None
