"""Tiny datasets in the exact on-disk formats users have, written into tmp_path."""

from __future__ import annotations

import hashlib
import zipfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pyzipper
from PIL import Image


def write_png(path: Path, arr: np.ndarray, mode: str | None = None) -> Path:
    """Save ``arr`` with Pillow (mode 'L' for uint8 2-D arrays, as Malimg's PNGs are)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(arr)
    if mode is not None:
        im = im.convert(mode)
    im.save(path, format="PNG")
    return path


def bytes_dump(data: bytes, unknown: Iterable[int] = (), base: int = 0x401000) -> bytes:
    """A BIG2015 ``.bytes`` hex dump of ``data``: ``ADDRESS HH ...`` lines of 16, CRLF, ``??`` at ``unknown``."""
    unknown = set(unknown)
    lines = []
    for off in range(0, len(data), 16):
        cells = ["??" if off + k in unknown else f"{b:02X}" for k, b in enumerate(data[off : off + 16])]
        lines.append(f"{base + off:08X} " + " ".join(cells) + "\r\n")
    return "".join(lines).encode("ascii")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def aes_zip(path: Path, entries: dict[str, bytes], password: bytes = b"infected") -> Path:
    """An AES-256 encrypted zip (as pyzipper writes) with ``entries`` stored under their names."""
    with pyzipper.AESZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, encryption=pyzipper.WZ_AES) as zf:
        zf.setpassword(password)
        for name, data in entries.items():
            zf.writestr(name, data)
    return path


def manifest_csv(rows: Iterable[tuple[str, str, str, int, str]]) -> bytes:
    """theZoo-style manifest.csv: sha256,family,kind,size,original_name."""
    lines = ["sha256,family,kind,size,original_name"] + [",".join(map(str, r)) for r in rows]
    return ("\n".join(lines) + "\n").encode()
