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


def _crc_table() -> list[int]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0xEDB88320 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC = _crc_table()


def zipcrypto_zip(path: Path, entries: dict[str, bytes], password: bytes = b"infected") -> Path:
    """A zip whose entries are deflated and encrypted with ZipCrypto (the traditional PKWARE cipher,
    as ``zip -P`` and most sample sites write it); written here so no ``zip`` command is needed."""
    import os
    import struct
    import zlib

    def cipher(data: bytes, encrypt: bool = True) -> bytes:
        k = [0x12345678, 0x23456789, 0x34567890]

        def update(p: int) -> None:
            k[0] = (k[0] >> 8) ^ _CRC[(k[0] ^ p) & 0xFF]
            k[1] = ((k[1] + (k[0] & 0xFF)) * 134775813 + 1) & 0xFFFFFFFF
            k[2] = (k[2] >> 8) ^ _CRC[(k[2] ^ (k[1] >> 24)) & 0xFF]

        for p in password:
            update(p)
        out = bytearray()
        for p in data:
            t = (k[2] | 2) & 0xFFFF
            out.append(p ^ ((t * (t ^ 1)) >> 8) & 0xFF)
            update(p)
        return bytes(out)

    local, central = bytearray(), bytearray()
    for name, data in entries.items():
        crc = zlib.crc32(data)
        comp = zlib.compressobj(9, zlib.DEFLATED, -15)
        body = cipher(os.urandom(11) + bytes([crc >> 24]) + comp.compress(data) + comp.flush())
        raw = name.encode()
        fields = (20, 0x801, 8, 0, 0x21, crc, len(body), len(data), len(raw), 0)  # ZipCrypto, UTF-8 name
        offset = len(local)
        local += struct.pack("<IHHHHHIIIHH", 0x04034B50, *fields) + raw + body
        central += (
            struct.pack("<IH" + "HHHHHIIIHH" + "HHHII", 0x02014B50, 20, *fields, 0, 0, 0, 0, offset) + raw
        )
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(entries), len(entries), len(central), len(local), 0)
    path.write_bytes(bytes(local + central + end))
    return path
