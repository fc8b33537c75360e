"""The BIG2015 formats as users have them: ``<id>.bytes`` hex dumps with ``trainLabels.csv``, and opcode
trees ``root/<family>/<id>.txt`` (one mnemonic per line)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from malvision.data.readers import FolderDataset, read_csv, require_dir, walk_files
from malvision.data.records import RawDataset, Record
from malvision.errors import DatasetError, InputError
from malvision.io import DEFAULT_MAX_SIZE, MemorySource, Source, check_file, open_source

__all__ = ["BIG2015_CLASSES", "Big2015Dataset", "OpcodeTreeDataset", "parse_bytes_dump"]

# trainLabels.csv Class 1..9 of the Microsoft Malware Classification Challenge (BIG2015).
BIG2015_CLASSES: tuple[str, ...] = (
    "Ramnit",
    "Lollipop",
    "Kelihos_ver3",
    "Vundo",
    "Simda",
    "Tracur",
    "Kelihos_ver1",
    "Obfuscator.ACY",
    "Gatak",
)

# ----------------------------------------------------------------------------------- BIG2015 .bytes

_ADDRESS = re.compile(r"^[^\S\n]*\S+", re.MULTILINE)
Unknown = Literal["zero", "drop"]
_DUMP_BLOCK = 8 * 1024 * 1024


def parse_bytes_dump(text: bytes, name: str = "<bytes>", unknown: Unknown = "zero") -> bytes:
    """The bytes of a BIG2015 ``.bytes`` hex dump (``ADDRESS HH HH ...`` lines).

    ``??`` marks bytes IDA could not read (uninitialised data). ``unknown="zero"`` (default) reads
    them as 0x00, as most published work on BIG2015 does, so offsets keep their place; ``"drop"``
    leaves them out. The text is parsed in line-aligned blocks, so memory stays near the output size.
    """
    if unknown not in ("zero", "drop"):
        raise DatasetError(f"unknown ?? policy {unknown!r}; use zero or drop")
    fill = "00" if unknown == "zero" else ""
    out = bytearray()
    start = 0
    while start < len(text):
        end = text.find(b"\n", start + _DUMP_BLOCK)
        end = len(text) if end < 0 else end + 1
        try:
            block = text[start:end].decode("ascii")
        except UnicodeDecodeError:
            raise DatasetError(f"{name}: not a BIG2015 hex dump (not ASCII text)") from None
        try:
            out += bytes.fromhex(_ADDRESS.sub("", block).replace("??", fill))
        except ValueError as e:
            raise DatasetError(
                f"{name}: not a BIG2015 hex dump ({e}); expected 'ADDRESS HH HH ...' lines"
            ) from None
        start = end
    if not out:
        raise DatasetError(f"{name}: hex dump holds no bytes")
    return bytes(out)


def _read_labels(path: Path) -> dict[str, str]:
    fields, rows = read_csv(path)
    if "id" not in fields or "class" not in fields:
        raise DatasetError(f"{path}: expected columns Id,Class as in BIG2015 trainLabels.csv (got {fields})")
    labels: dict[str, str] = {}
    for n, row in enumerate(rows, start=2):
        try:
            k = int(row["class"])
            if not 1 <= k <= len(BIG2015_CLASSES):
                raise ValueError
        except ValueError:
            raise DatasetError(f"{path}:{n}: Class {row['class']!r} is not 1..9") from None
        if row["id"]:
            labels[row["id"]] = BIG2015_CLASSES[k - 1]
    return labels


class Big2015Dataset(RawDataset):
    """BIG2015 ``<Id>.bytes`` hex dumps anywhere below ``root`` labelled by ``root/trainLabels.csv``.

    Class 1..9 becomes the family name (``BIG2015_CLASSES``). ``.bytes`` files without a label row
    (the unlabelled test set) are not listed; label rows without a file are reported in ``skipped``.
    ``size`` is estimated from the text (16 bytes per 58-character line) until a sample is opened.
    """

    format = "big2015"

    def __init__(
        self,
        root: Path | str,
        labels_csv: Path | str | None = None,
        unknown: Unknown = "zero",
        max_size: int = DEFAULT_MAX_SIZE,
        strict: bool = False,
    ) -> None:
        root = Path(root)
        if root.is_file():
            labels_csv, root = labels_csv or root, root.parent
        root = require_dir(root)
        super().__init__(root.name or str(root))
        self.strict = strict
        self.unknown: Unknown = unknown
        self.max_size = max_size
        labels_path = Path(labels_csv) if labels_csv is not None else root / "trainLabels.csv"
        labels = _read_labels(labels_path)
        files = {p.stem: p for p, _ in walk_files(root) if p.suffix == ".bytes"}
        for sid, family in labels.items():
            path = files.get(sid)
            if path is None:
                self._skip(sid, f"{labels_path}: no {sid}.bytes below {root}")
                continue
            try:
                size = check_file(path, max_size)
            except InputError as e:
                self._skip(str(path), str(e))
                continue
            self.records.append(Record(sid, family, None, str(path), size * 16 // 58, None))
        self.unlabelled = len(files) - len(self.records)
        self._require_records(str(root))

    def open(self, i: int) -> Source:
        rec = self.records[i]
        text = open_source(rec.source, self.max_size).read()
        return MemorySource.of(rec.source, parse_bytes_dump(text, rec.source, self.unknown))


# ------------------------------------------------------------------------------------- opcode trees


class OpcodeTreeDataset(FolderDataset):
    """Opcode files ``root/<family>/<id>.txt`` (one mnemonic per line); label = family.

    With ``root/manifest.csv`` (sample_id,family[,n_opcodes]) the manifest lists the samples.
    """

    format = "opcodes"

    def __init__(self, root: Path | str, max_size: int = DEFAULT_MAX_SIZE, strict: bool = False) -> None:
        super().__init__(root, max_size, strict)
        root = self.root
        manifest = root / "manifest.csv"
        if manifest.is_file():
            fields, rows = read_csv(manifest)
            if "sample_id" not in fields or "family" not in fields:
                raise DatasetError(f"{manifest}: expected columns sample_id,family (got {fields})")
            for r in rows:
                if r["sample_id"] and r["family"]:
                    self._add(r["sample_id"], r["family"], root / r["family"] / f"{r['sample_id']}.txt")
        else:
            for path, rel in walk_files(root):
                if len(rel.parts) < 2 or path.suffix.lower() != ".txt":
                    self._skip(str(path), f"{path}: expected root/<family>/<id>.txt")
                    continue
                self._add(path.stem, rel.parts[0], path)
        self._require_records(str(root))
