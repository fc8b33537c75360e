"""Fuzz settings and the input strategies shared by the targets: mutated PE files, PNGs and zips.

``MALVISION_FUZZ_EXAMPLES`` sets the examples per target (``make fuzz`` sets 20000). Without it each
target runs its small default, derandomized so the normal suite is deterministic; with it, runs are
random and a failure prints the blob that reproduces it (``@reproduce_failure``).
"""

from __future__ import annotations

import io
import os
import struct
import zipfile
import zlib

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from PIL import Image

from corpus import PE, minimal_pe

__all__ = ["fuzz", "LONG", "mutated", "mutated_pe", "png_bytes", "zip_bytes", "fix_png_crcs"]

LONG = bool(os.environ.get("MALVISION_FUZZ_EXAMPLES"))


def fuzz(default: int = 100) -> settings:
    """Settings for one fuzz target: ``default`` examples, or ``$MALVISION_FUZZ_EXAMPLES``."""
    n = int(os.environ.get("MALVISION_FUZZ_EXAMPLES") or default)
    return settings(
        max_examples=n,
        deadline=None,
        database=None,  # nothing written into the repo; failures are kept as explicit @example / tests
        derandomize=not LONG,
        suppress_health_check=list(HealthCheck),
        print_blob=True,
    )


INTERESTING = (
    0,
    1,
    2,
    0x7F,
    0x80,
    0xFF,
    0x100,
    0x7FFF,
    0x8000,
    0xFFFF,
    0x10000,
    0x7FFFFFFF,
    0x80000000,
    0xFFFFFFFF,
)


@st.composite
def mutated(draw: st.DrawFn, base: bytes, hot: int | None = None, max_edits: int = 8) -> bytes:
    """``base`` with a few edits: bytes set, integer fields overwritten with edge values, a cut, an
    insertion. Edits land in the first ``hot`` bytes (the headers) three times out of four."""
    data = bytearray(base)
    for _ in range(draw(st.integers(0, max_edits))):
        if not data:
            break
        limit = len(data) if hot is None or draw(st.integers(0, 3)) == 0 else min(hot, len(data))
        at = draw(st.integers(0, limit - 1))
        kind = draw(st.sampled_from(["byte", "u16", "u32", "insert", "delete"]))
        if kind == "byte":
            data[at] = draw(st.integers(0, 255))
        elif kind in ("u16", "u32"):
            fmt, size = ("<H", 2) if kind == "u16" else ("<I", 4)
            value = draw(st.sampled_from(INTERESTING)) & (0xFFFF if size == 2 else 0xFFFFFFFF)
            if at + size <= len(data):
                struct.pack_into(fmt, data, at, value)
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
        else:
            del data[at : at + draw(st.integers(1, 64))]
    if draw(st.integers(0, 4)) == 0:  # truncate
        data = data[: draw(st.integers(0, len(data)))]
    return bytes(data)


_PE = minimal_pe(text_size=0x400, data_size=0x400)


def mutated_pe() -> st.SearchStrategy[bytes]:
    """The corpus's minimal PE with its headers and section table mutated."""
    return mutated(_PE, hot=PE.SECTIONS + 80)


def _png(mode: str, size: tuple[int, int], interlace: bool = False) -> bytes:
    rng = np.random.default_rng(0)
    w, h = size
    if mode == "I;16":
        im = Image.fromarray(rng.integers(0, 65536, (h, w), dtype=np.uint16))
    else:
        im = Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8), "L").convert(mode)
    buf = io.BytesIO()
    im.save(buf, format="PNG", interlace=interlace)
    return buf.getvalue()


PNGS = [
    _png("L", (40, 24)),
    _png("L", (33, 7), interlace=True),
    _png("RGB", (16, 16)),
    _png("P", (16, 16)),
    _png("LA", (8, 8)),
    _png("1", (20, 5)),
    _png("I;16", (8, 8)),
]


def fix_png_crcs(data: bytes) -> bytes:
    """Recompute every chunk CRC, so mutations reach the decoder instead of the CRC check."""
    out = bytearray(data)
    pos = 8
    while pos + 12 <= len(out):
        (n,) = struct.unpack_from(">I", out, pos)
        end = pos + 8 + n
        if end + 4 > len(out):
            break
        struct.pack_into(">I", out, end, zlib.crc32(bytes(out[pos + 4 : end])))
        pos = end + 4
    return bytes(out)


@st.composite
def png_bytes(draw: st.DrawFn) -> bytes:
    """A PNG of some mode, mutated (mostly in IHDR and the first chunks), CRCs fixed or not."""
    data = draw(mutated(draw(st.sampled_from(PNGS)), hot=64))
    return fix_png_crcs(data) if draw(st.booleans()) else data


def _zip(entries: dict[str, bytes], method: int, aes: bool) -> bytes:
    import pyzipper

    buf = io.BytesIO()
    if aes:
        with pyzipper.AESZipFile(buf, "w", compression=method, encryption=pyzipper.WZ_AES) as zf:
            zf.setpassword(b"infected")
            for name, data in entries.items():
                zf.writestr(name, data)
    else:
        with zipfile.ZipFile(buf, "w", compression=method) as zf:
            for name, data in entries.items():
                zf.writestr(name, data)
    return buf.getvalue()


_ENTRIES = {
    "FamA/0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef": _PE,
    "FamB/fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210": bytes(range(256)) * 8,
}
_MANIFEST = (
    "sha256,family,kind,size,original_name\n"
    + "".join(f"{n.split('/')[1]},{n.split('/')[0]},pe,{len(d)},x.exe\n" for n, d in _ENTRIES.items())
).encode()
ZIPS = [
    _zip(_ENTRIES, zipfile.ZIP_DEFLATED, aes=False),
    _zip(_ENTRIES, zipfile.ZIP_STORED, aes=False),
    _zip({**_ENTRIES, "manifest.csv": _MANIFEST}, zipfile.ZIP_DEFLATED, aes=True),
    _zip({"FamA/x": b"MZ" + bytes(100), "FamA/y": b""}, zipfile.ZIP_STORED, aes=True),
]


@st.composite
def zip_bytes(draw: st.DrawFn) -> bytes:
    """A sample zip (plain or AES, stored or deflated, with or without manifest), mutated mostly in
    its local headers, central directory and end record."""
    base = draw(st.sampled_from(ZIPS))
    cd = base.find(b"PK\x01\x02")
    if draw(st.booleans()):  # edit the central directory and end record (sizes, offsets, counts, names)
        edited = draw(mutated(base[cd:], hot=len(base) - cd))
        return base[:cd] + edited
    return draw(mutated(base, hot=64))
