"""Readers for the datasets users have: Malimg PNG trees, binary trees, labels CSVs, file lists
(BIG2015 and opcode trees are in ``data.big2015``).

Every reader lists its samples as ``Record``s when built (cheap: names, sizes, PNG headers) and reads
a sample's bytes only in ``open(i)``. Nothing is extracted, executed or unpickled.
"""

from __future__ import annotations

import contextlib
import csv
import os
import re
import warnings
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from malvision.data.records import RawDataset, Record
from malvision.errors import DatasetError, InputError
from malvision.io import DEFAULT_MAX_SIZE, MemorySource, Source, check_file, expand_inputs, open_source

__all__ = [
    "MalimgDataset",
    "BinaryTreeDataset",
    "CsvDataset",
    "FileListDataset",
    "FolderDataset",
    "read_malimg_png",
    "walk_files",
    "require_dir",
    "rel_id",
    "read_csv",
]

JUNK_FILES = frozenset({"thumbs.db", "desktop.ini"})
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")


def _is_junk(name: str) -> bool:
    return name.startswith(".") or name.lower() in JUNK_FILES


def walk_files(root: Path) -> Iterator[tuple[Path, Path]]:
    """(path, path relative to root) of every file below ``root``, sorted; hidden and junk files skipped.

    Symlinked folders are not followed (no loops).
    """
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not _is_junk(name):
                p = Path(dirpath, name)
                yield p, p.relative_to(root)


def require_dir(root: Path) -> Path:
    if not root.exists():
        raise DatasetError(f"{root}: no such folder")
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder")
    return root


def rel_id(rel: Path) -> str:
    return rel.as_posix()


# ---------------------------------------------------------------------------------------------- Malimg


def max_plot_pixels() -> int | None:
    """The largest byte plot a Malimg PNG can be read back at: Pillow's DecompressionBombError limit, as
    it is set now (None: no limit)."""
    limit = Image.MAX_IMAGE_PIXELS
    return None if limit is None else 2 * int(limit)


def _png_error(path: Path | str, e: BaseException) -> DatasetError:
    return DatasetError(f"{path}: corrupt or truncated PNG ({e}); re-create or remove the file")


def _check_png_mode(path: Path | str, im: Image.Image) -> None:
    if im.format != "PNG":
        raise DatasetError(f"{path}: not a PNG file ({im.format}); Malimg images are 8-bit grayscale PNGs")
    if im.mode != "L":
        raise DatasetError(
            f"{path}: PNG mode {im.mode!r}, expected 8-bit grayscale ('L') as in Malimg; "
            "convert it or remove it"
        )
    # the raw mode: Pillow reads 1-, 2- and 4-bit gray as 'L', scaled up
    raw = im.tile[0][3] if im.tile else "L"
    if raw != "L":
        raise DatasetError(
            f"{path}: a {raw.removeprefix('L;') if isinstance(raw, str) else raw}-bit grayscale PNG; Malimg "
            "images have 8 bits a pixel (one byte of the file each): convert it or remove it"
        )


@contextlib.contextmanager
def _no_bomb_warning() -> Iterator[None]:
    """Byte plots of 90-180 MB files pass Pillow's pixel limit quietly; larger ones still fail with
    Pillow's DecompressionBombError, reported as a one-line DatasetError."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        yield


def _png_header(path: Path) -> tuple[int, int]:
    """(width, height) of an 8-bit grayscale PNG, from its header only."""
    try:
        with _no_bomb_warning(), Image.open(path) as im:
            _check_png_mode(path, im)
            return im.size
    except DatasetError:
        raise
    except Image.DecompressionBombError as e:
        raise _bomb_error(path, e) from None
    except UnidentifiedImageError:
        raise DatasetError(f"{path}: not an image file; Malimg images are 8-bit grayscale PNGs") from None
    except (OSError, SyntaxError, ValueError, EOFError, zlib.error) as e:
        raise _png_error(path, e) from None


def _bomb_error(path: Path | str, e: BaseException) -> DatasetError:
    return DatasetError(
        f"{path}: {e}; a byte plot this large (a file over about 170 MiB) is refused as a decompression bomb"
    )


def read_malimg_png(path: Path | str) -> np.ndarray:
    """The pixels of an 8-bit grayscale PNG as a (height, width) uint8 array; anything else is refused."""
    try:
        with _no_bomb_warning(), Image.open(path) as im:
            _check_png_mode(path, im)
            im.load()  # decodes everything: a truncated file fails here, not later
            arr = np.asarray(im, dtype=np.uint8)
    except DatasetError:
        raise
    except UnidentifiedImageError:
        raise DatasetError(f"{path}: not an image file; Malimg images are 8-bit grayscale PNGs") from None
    except Image.DecompressionBombError as e:
        raise _bomb_error(path, e) from None
    except (OSError, SyntaxError, ValueError, EOFError, zlib.error) as e:
        raise _png_error(path, e) from None
    if arr.ndim != 2 or arr.size == 0:
        raise DatasetError(f"{path}: empty or not a 2-D grayscale image")
    return arr


class MalimgDataset(RawDataset):
    """Malimg byte plots ``root/<family>/*.png`` (8-bit grayscale); label = family.

    ``open(i)`` gives the image rows flattened (the original bytes minus the dropped partial row) and
    ``plot_width`` is the PNG width, so conversion resizes the PNG as it is.
    """

    format = "malimg"

    def __init__(self, root: Path | str, strict: bool = False) -> None:
        root = require_dir(Path(root))
        super().__init__(root.name or str(root))
        self.strict = strict
        self.root = root
        for path, rel in walk_files(root):
            if len(rel.parts) < 2:
                self._skip(str(path), f"{path}: not inside a family folder (expected root/<family>/*.png)")
                continue
            if path.suffix.lower() != ".png":
                self._skip(str(path), f"{path}: not a .png file")
                continue
            try:
                width, height = _png_header(path)
            except DatasetError as e:
                self._skip(str(path), str(e))
                continue
            rid = rel_id(rel.with_suffix(""))
            self.records.append(Record(rid, rel.parts[0], None, str(path), width * height, None, width))
        self._require_records(str(root))

    def open(self, i: int) -> Source:
        rec = self.records[i]
        arr = read_malimg_png(rec.source)
        if arr.shape[1] != rec.plot_width:
            raise DatasetError(f"{rec.source}: image changed while reading (width {arr.shape[1]})")
        return MemorySource.of(rec.source, arr.tobytes(), plot_width=arr.shape[1])


# ---------------------------------------------------------------------------------------- binary trees


class FolderDataset(RawDataset):
    """Files below a folder, each read from disk whole by ``open``; subclasses list them."""

    def __init__(self, root: Path | str, max_size: int = DEFAULT_MAX_SIZE, strict: bool = False) -> None:
        self.root = require_dir(Path(root))
        super().__init__(self.root.name or str(self.root))
        self.strict, self.max_size = strict, max_size

    def _add(self, rid: str, label: str, path: Path) -> None:
        """List ``path`` as a sample, or skip it (with the reason) when it is not a readable file."""
        try:
            size = check_file(path, self.max_size)
        except InputError as e:
            self._skip(str(path), str(e))
            return
        self.records.append(Record(rid, label, None, str(path), size, None))

    def open(self, i: int) -> Source:
        return open_source(self.records[i].source, self.max_size)


class BinaryTreeDataset(FolderDataset):
    """Raw files ``root/<label>/...`` (any depth below the label folder); label = top folder."""

    format = "binary"

    def __init__(self, root: Path | str, max_size: int = DEFAULT_MAX_SIZE, strict: bool = False) -> None:
        super().__init__(root, max_size, strict)
        for path, rel in walk_files(self.root):
            if len(rel.parts) < 2:
                self._skip(str(path), f"{path}: not inside a label folder (expected root/<label>/<file>)")
                continue
            self._add(rel_id(rel), rel.parts[0], path)
        self._require_records(str(self.root))


# ------------------------------------------------------------------------------------------ labels CSV

FILE_COLUMNS = ("path", "filename", "file", "name", "sha256", "id")


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            rows = [{(k or "").strip().lower(): (v or "").strip() for k, v in r.items()} for r in reader]
            fields = [(k or "").strip().lower() for k in (reader.fieldnames or [])]
    except FileNotFoundError:
        raise DatasetError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DatasetError(f"{path}: cannot read CSV ({e})") from None
    if not fields:
        raise DatasetError(f"{path}: empty CSV, expected a header row")
    return fields, rows


class CsvDataset(RawDataset):
    """Files in a folder labelled by a CSV: a path/filename/sha256 column, ``label``, optional group.

    File names are relative to ``root`` (default: the CSV's folder); a bare sha256 is also looked up
    anywhere below ``root``. ``label`` gives every row the same label (no label column needed);
    ``group_column`` defaults to ``group`` or ``family`` when present.
    """

    format = "csv"

    def __init__(
        self,
        csv_path: Path | str,
        root: Path | str | None = None,
        label: str | None = None,
        label_column: str = "label",
        group_column: str | None = None,
        file_column: str | None = None,
        max_size: int = DEFAULT_MAX_SIZE,
        strict: bool = False,
        collection_column: str | None = None,
    ) -> None:
        csv_path = Path(csv_path)
        fields, rows = read_csv(csv_path)
        self.root = require_dir(Path(root) if root is not None else csv_path.parent)
        super().__init__(self.root.name or str(self.root))
        self.strict = strict
        self.max_size = max_size
        file_col = file_column or next((c for c in FILE_COLUMNS if c in fields), None)
        if file_col is None or file_col not in fields:
            raise DatasetError(
                f"{csv_path}: no file column; name one of {', '.join(FILE_COLUMNS)} (columns: {fields})"
            )
        label_column = label_column.lower()
        if label is None and label_column not in fields:
            raise DatasetError(f"{csv_path}: no {label_column!r} column (columns: {fields}); add one")
        if group_column is None:
            group_column = next((c for c in ("group", "family") if c in fields and c != label_column), None)
        elif group_column.lower() not in fields:
            raise DatasetError(f"{csv_path}: no group column {group_column!r} (columns: {fields})")
        group_column = group_column.lower() if group_column else None
        if collection_column is not None and collection_column not in fields:
            raise DatasetError(f"{csv_path}: no collection column {collection_column!r} (columns: {fields})")
        by_name: dict[str, Path] | None = None
        seen: set[Path] = set()
        for n, row in enumerate(rows, start=2):
            where = f"{csv_path}:{n}"
            value = row.get(file_col, "")
            lab = label if label is not None else row.get(label_column, "")
            if not value:
                self._skip(where, f"{where}: empty {file_col!r}")
                continue
            if not lab:
                self._skip(where, f"{where}: no label for {value}")
                continue
            path = self.root / value
            if not path.exists() and "/" not in value and "\\" not in value:
                if by_name is None:
                    by_name = {p.name: p for p, _ in walk_files(self.root)}
                path = by_name.get(value, path)
            try:
                size = check_file(path, max_size)
            except InputError as e:
                self._skip(where, f"{where}: {e}")
                continue
            if path in seen:
                self._skip(where, f"{where}: {value} is listed twice")
                continue
            seen.add(path)
            sha = row.get("sha256", "")
            group = (row.get(group_column) or None) if group_column else None
            try:
                rid = path.relative_to(self.root).as_posix()
            except ValueError:
                rid = str(path)
            collection = (row.get(collection_column) or None) if collection_column else None
            sha = sha.lower() if _HEX64.fullmatch(sha) else None
            self.records.append(Record(rid, lab, group, str(path), size, sha, collection=collection))
        self._require_records(str(csv_path))

    def open(self, i: int) -> Source:
        return open_source(self.records[i].source, self.max_size)


# ---------------------------------------------------------------------------------- plain file lists


class FileListDataset(RawDataset):
    """Every file below ``inputs`` (files or folders) as one sample with the same ``label``.

    group = the first folder below an input folder (e.g. the family in ``malware/<family>/...``).
    """

    format = "files"

    def __init__(
        self,
        inputs: Sequence[Path | str],
        label: str,
        max_size: int = DEFAULT_MAX_SIZE,
        strict: bool = False,
    ) -> None:
        super().__init__(", ".join(Path(p).name or str(p) for p in inputs))
        self.strict = strict
        self.max_size = max_size
        for path, rel in expand_inputs(inputs):
            try:
                size = check_file(path, max_size)
            except InputError as e:
                self._skip(str(path), str(e))
                continue
            group = rel.parts[0] if len(rel.parts) > 1 else None
            self.records.append(Record(str(path), label, group, str(path), size, None))
        self._require_records(self.name)

    def open(self, i: int) -> Source:
        return open_source(self.records[i].source, self.max_size)
