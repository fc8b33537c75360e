"""The bad-input corpus, made by code (no checked-in binaries): every odd file a user could hand us.

Each ``make_*`` writes into a folder and returns the path. ``write_files`` writes every regular-file
input at once; ``EXPECT`` says what ``malvision scan`` must answer for each (a reasoned ``unknown``,
a real verdict, or a one-line error). Checkpoints, zips and PNG trees have their own makers.
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import random
import struct
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyzipper
from PIL import Image

__all__ = [
    "SEED",
    "PE",
    "minimal_pe",
    "patch",
    "FILES",
    "EXPECT",
    "write_files",
    "make_special",
    "make_sparse",
    "make_png_variants",
    "make_zips",
    "make_zip_bomb",
    "make_checkpoint",
    "make_bad_checkpoints",
    "Marker",
    "make_never_run",
    "odd_names",
]

SEED = 20240607
KB = 1024


def _rand(n: int, seed: int = SEED) -> bytes:
    return random.Random(seed).randbytes(n)


# ------------------------------------------------------------------------------------------- a PE by hand


class PE:
    """Offsets of the fields ``minimal_pe`` writes, so tests can damage exactly one of them."""

    E_LFANEW = 0x3C
    PE_OFF = 0x80  # 'PE\0\0'
    COFF = PE_OFF + 4  # Machine, NumberOfSections, ...
    NUMBER_OF_SECTIONS = COFF + 2
    SIZE_OF_OPTIONAL_HEADER = COFF + 16
    OPT = COFF + 20
    SIZE_OF_HEADERS = OPT + 60
    SECTIONS = OPT + 224  # two 40-byte section headers
    HEADERS = 0x400  # SizeOfHeaders (FileAlignment 0x200)

    @staticmethod
    def section(i: int) -> int:
        """Offset of section header ``i``."""
        return PE.SECTIONS + 40 * i

    # within a section header
    SIZE_OF_RAW_DATA = 16
    POINTER_TO_RAW_DATA = 20


def minimal_pe(text_size: int = 0x1000, data_size: int = 0x1000, seed: int = SEED) -> bytes:
    """A small, valid PE32 (i386 GUI .exe) with .text and .data sections that pefile parses cleanly.

    The code section holds seeded x86-looking bytes ending in ``ret``; nothing here is meant to run
    (and nothing ever runs it).
    """
    assert text_size % 0x200 == 0 and data_size % 0x200 == 0
    rng = random.Random(seed)
    # Mostly a few common opcodes: looks like code, not like noise (entropy well below "random").
    text = _code(text_size - 1, seed) + b"\xc3"
    data = bytes(rng.randrange(0, 96) for _ in range(data_size))
    text_rva, data_rva = 0x1000, 0x1000 + max(0x1000, -(-text_size // 0x1000) * 0x1000)
    size_of_image = data_rva + max(0x1000, -(-data_size // 0x1000) * 0x1000)

    dos = bytearray(PE.PE_OFF)
    dos[0:2] = b"MZ"
    struct.pack_into("<HHHHHHHHHHHHHH", dos, 2, 0x90, 3, 0, 4, 0, 0xFFFF, 0, 0xB8, 0, 0, 0, 0x40, 0, 0)
    struct.pack_into("<I", dos, PE.E_LFANEW, PE.PE_OFF)
    dos[0x40:0x4E] = bytes.fromhex("0e1fba0e00b409cd21b8014ccd21")  # the usual DOS stub
    dos[0x4E:0x75] = b"This program cannot be run in DOS mode.\r"[:0x27]

    coff = struct.pack("<HHIIIHH", 0x14C, 2, 0x5F5E1000, 0, 0, 224, 0x0102)
    opt = struct.pack(
        "<HBBIIIIIIIIIHHHHHHIIIIHHIIIIII",
        0x10B,  # PE32
        14,
        0,
        text_size,  # SizeOfCode
        data_size,  # SizeOfInitializedData
        0,
        text_rva,  # AddressOfEntryPoint
        text_rva,  # BaseOfCode
        data_rva,  # BaseOfData
        0x400000,  # ImageBase
        0x1000,  # SectionAlignment
        0x200,  # FileAlignment
        6,
        0,
        0,
        0,
        6,
        0,
        0,
        size_of_image,
        PE.HEADERS,
        0,  # CheckSum
        2,  # Subsystem: Windows GUI
        0x8140,  # DllCharacteristics: DYNAMIC_BASE | NX_COMPAT | TERMINAL_SERVER_AWARE
        0x100000,
        0x1000,
        0x100000,
        0x1000,
        0,
        16,  # NumberOfRvaAndSizes
    ) + bytes(16 * 8)
    assert len(opt) == 224
    text_off, data_off = PE.HEADERS, PE.HEADERS + text_size
    sections = struct.pack(
        "<8sIIIIIIHHI", b".text", text_size, text_rva, text_size, text_off, 0, 0, 0, 0, 0x60000020
    ) + struct.pack(
        "<8sIIIIIIHHI", b".data", data_size, data_rva, data_size, data_off, 0, 0, 0, 0, 0xC0000040
    )
    head = bytes(dos) + b"PE\0\0" + coff + opt + sections
    assert len(head) == PE.SECTIONS + 80
    return head.ljust(PE.HEADERS, b"\0") + text + data


def patch(data: bytes, offset: int, fmt: str, *values: Any) -> bytes:
    """``data`` with ``struct.pack(fmt, *values)`` written at ``offset``."""
    out = bytearray(data)
    struct.pack_into(fmt, out, offset, *values)
    return bytes(out)


def _pe_variants() -> dict[str, bytes]:
    pe = minimal_pe()
    s1 = PE.section(1)
    return {
        "pe_valid.exe": pe,
        "pe_cut_in_headers.exe": pe[: PE.COFF + 10],
        "pe_cut_in_section_table.exe": pe[: PE.section(1) + 12],
        "pe_cut_in_section.exe": pe[: PE.HEADERS + 0x800],
        "pe_dos_header_only.exe": pe[:64],
        "pe_mz_only.exe": b"MZ",
        "pe_65535_sections.exe": patch(pe, PE.NUMBER_OF_SECTIONS, "<H", 0xFFFF),
        "pe_zero_sections.exe": patch(pe, PE.NUMBER_OF_SECTIONS, "<H", 0),
        "pe_raw_size_past_eof.exe": patch(pe, s1 + PE.SIZE_OF_RAW_DATA, "<I", 0x7FFFFE00),
        "pe_raw_pointer_past_eof.exe": patch(pe, s1 + PE.POINTER_TO_RAW_DATA, "<I", 0xFFFFFE00),
        "pe_overlapping_sections.exe": patch(pe, s1 + PE.POINTER_TO_RAW_DATA, "<I", PE.HEADERS),
        "pe_lfanew_past_eof.exe": patch(pe, PE.E_LFANEW, "<I", 0xFFFFFFF0),
        "pe_lfanew_zero.exe": patch(pe, PE.E_LFANEW, "<I", 0),
        "pe_optional_header_0xffff.exe": patch(pe, PE.SIZE_OF_OPTIONAL_HEADER, "<H", 0xFFFF),
        "pe_size_of_headers_huge.exe": patch(pe, PE.SIZE_OF_HEADERS, "<I", 0xFFFFFFFF),
        "pe_bad_signature.exe": patch(pe, PE.PE_OFF, "<4s", b"PX\0\0"),
    }


# --------------------------------------------------------------------------------- other regular files


def _png(mode: str = "L", size: tuple[int, int] = (64, 64), bits16: bool = False) -> bytes:
    rng = np.random.default_rng(SEED)
    if bits16:
        arr = rng.integers(0, 65536, size[::-1], dtype=np.uint16)
        im = Image.fromarray(arr)  # mode I;16
    elif mode == "RGB":
        im = Image.fromarray(rng.integers(0, 256, (*size[::-1], 3), dtype=np.uint8), "RGB")
    else:
        im = Image.fromarray(rng.integers(0, 256, size[::-1], dtype=np.uint8), "L")
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def _jpeg() -> bytes:
    y, x = np.mgrid[0:96, 0:128]
    arr = np.stack([(x * 2) % 256, (y * 2) % 256, (x + y) % 256], axis=-1).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr, "RGB").save(buf, format="JPEG", quality=80)
    return buf.getvalue()


def _code(n: int, seed: int = SEED) -> bytes:
    """Bytes that look like x86 code (a few common opcodes), not like noise."""
    rng = random.Random(seed)
    ops = [0x55, 0x48, 0x89, 0xE5, 0x8B, 0x45, 0x08, 0x83, 0xEC, 0x50, 0x6A, 0x00, 0xE8, 0xC3, 0x90, 0x31]
    return bytes(rng.choice(ops) for _ in range(n))


def _elf(body: bytes | None = None) -> bytes:
    ident = b"\x7fELF\x02\x01\x01" + bytes(9)
    hdr = ident + struct.pack("<HHIQQQIHHHHHH", 2, 0x3E, 1, 0x401000, 64, 0, 0, 64, 56, 1, 64, 0, 0)
    return hdr + (body if body is not None else _code(12 * KB))


def _macho() -> bytes:
    hdr = struct.pack("<IiiIIIII", 0xFEEDFACF, 0x01000007, 3, 2, 0, 0, 0x85, 0)
    return hdr + _code(12 * KB, SEED + 3)


def _text() -> bytes:
    lines = [f"line {i}: the quick brown fox jumps over the lazy dog, {i * i} times\n" for i in range(400)]
    return "".join(lines).encode()


FILES: dict[str, Callable[[], bytes]] = {
    "empty.bin": lambda: b"",
    "one_byte.bin": lambda: b"\x4d",
    "zeros_300k.bin": lambda: bytes(300 * KB),
    "ff_300k.bin": lambda: b"\xff" * (300 * KB),
    "random_seeded.bin": lambda: _rand(200 * KB),
    "urandom.bin": lambda: os.urandom(64 * KB),
    "text.txt": _text,
    "utf16_text.txt": lambda: _text().decode().encode("utf-16"),
    "image.png": _png,
    "image_rgb.png": lambda: _png("RGB"),
    "image.jpg": _jpeg,
    "elf.bin": _elf,
    "elf_packed.bin": lambda: _elf(_rand(12 * KB, SEED + 1)),  # high entropy: "random" wins over "ELF"
    "macho.bin": _macho,
    "pdf.pdf": lambda: b"%PDF-1.4\n" + _text(),
    "gzip.gz": lambda: gzip.compress(_text(), mtime=0),
    "pickle.pkl": lambda: pickle.dumps({"a": list(range(1000))}, protocol=4),
    **{name: (lambda d=data: d) for name, data in _pe_variants().items()},
}

# What ``malvision scan`` must say: "unknown" (with a reason), "verdict" (malware or benign, with a
# score), or "any" (a structurally odd PE that a loader might still take: verdict or unknown, never
# an error). A reason fragment, when given, must appear in the reason.
EXPECT: dict[str, tuple[str, str | None]] = {
    "empty.bin": ("unknown", "empty file"),
    "one_byte.bin": ("unknown", None),
    "zeros_300k.bin": ("unknown", "near-constant"),
    "ff_300k.bin": ("unknown", "near-constant"),
    "random_seeded.bin": ("unknown", "random"),
    "urandom.bin": ("unknown", "random"),
    "text.txt": ("unknown", "text file"),
    "utf16_text.txt": ("unknown", "not a Windows PE"),
    "image.png": ("unknown", "not a"),
    "image_rgb.png": ("unknown", "not a"),
    "image.jpg": ("unknown", "JPEG"),
    "elf.bin": ("unknown", "ELF"),
    "elf_packed.bin": ("unknown", None),
    "macho.bin": ("unknown", "Mach-O"),
    "pdf.pdf": ("unknown", "PDF"),
    "gzip.gz": ("unknown", "not a"),
    "pickle.pkl": ("unknown", "not a Windows PE"),
    "pe_valid.exe": ("verdict", None),
    "pe_cut_in_headers.exe": ("unknown", "PE"),
    "pe_cut_in_section_table.exe": ("unknown", "PE"),
    "pe_cut_in_section.exe": ("unknown", "truncated PE"),
    "pe_dos_header_only.exe": ("unknown", "PE"),
    "pe_mz_only.exe": ("unknown", None),
    "pe_65535_sections.exe": ("unknown", "PE"),
    "pe_zero_sections.exe": ("unknown", "no sections"),
    "pe_raw_size_past_eof.exe": ("unknown", "truncated PE"),
    "pe_raw_pointer_past_eof.exe": ("unknown", "truncated PE"),
    "pe_overlapping_sections.exe": ("any", None),
    "pe_lfanew_past_eof.exe": ("unknown", "truncated PE"),
    "pe_lfanew_zero.exe": ("unknown", "PE"),
    "pe_optional_header_0xffff.exe": ("any", None),
    "pe_size_of_headers_huge.exe": ("unknown", "PE"),
    "pe_bad_signature.exe": ("unknown", "PE"),
}
assert set(EXPECT) == set(FILES)


def write_files(folder: Path, names: list[str] | None = None) -> dict[str, Path]:
    """Write the regular-file corpus (or the named part of it) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name in names or FILES:
        path = folder / name
        path.write_bytes(FILES[name]())
        out[name] = path
    return out


# -------------------------------------------------------------------------------- not regular files


def make_special(folder: Path) -> dict[str, Path]:
    """A directory, a broken symlink, a symlink loop, a FIFO, a socket-free device stand-in, and a
    file behind a link: every entry that is not a plain readable file."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    (folder / "a_directory").mkdir()
    (folder / "a_directory" / "inner.bin").write_bytes(minimal_pe())
    out["a_directory"] = folder / "a_directory"
    out["broken_link"] = folder / "broken_link"
    os.symlink(folder / "does-not-exist", out["broken_link"])
    out["loop_a"], out["loop_b"] = folder / "loop_a", folder / "loop_b"
    os.symlink(out["loop_b"], out["loop_a"])
    os.symlink(out["loop_a"], out["loop_b"])
    out["fifo"] = folder / "fifo"
    os.mkfifo(out["fifo"])
    out["dev_null_link"] = folder / "dev_null_link"
    os.symlink("/dev/null", out["dev_null_link"])
    return out


def make_sparse(path: Path, size: int = 4 * 1024**3, tail: bytes = b"") -> Path:
    """A sparse file of ``size`` bytes (zeros, no disk blocks) ending in ``tail``."""
    with open(path, "wb") as f:
        f.truncate(size)
        if tail:
            f.seek(size - len(tail))
            f.write(tail)
    return path


def odd_names(folder: Path) -> dict[str, Path]:
    """Files whose names are not UTF-8, 255 bytes long, or full of shell and terminal specials."""
    folder.mkdir(parents=True, exist_ok=True)
    pe = minimal_pe()
    raw = {
        "latin1": b"caf\xe9-\xff\xfe.exe",
        "long": b"L" * 251 + b".exe",  # 255 bytes: the longest name Linux allows
        "specials": b"-rf $(touch x) ; `id` 'q\" [bold red]x[blink] \x1b[31m.exe",
        "newline": b"two\nlines.exe",
        "dash": b"-n",
    }
    out = {}
    for key, name in raw.items():
        p = os.path.join(os.fsencode(folder), name)
        with open(p, "wb") as f:
            f.write(pe)
        out[key] = Path(os.fsdecode(p))
    return out


# ------------------------------------------------------------------------------------------- PNG trees


def make_png_variants(root: Path) -> dict[str, Path]:
    """A Malimg-style tree ``root/<family>/*.png``: good grayscale PNGs plus every way a PNG goes bad."""
    good = _png("L", (64, 40))
    fam = root / "FamA"
    fam.mkdir(parents=True, exist_ok=True)
    (root / "FamB").mkdir(exist_ok=True)
    corrupt = bytearray(good)
    idat = corrupt.find(b"IDAT")
    corrupt[idat + 20 : idat + 60] = bytes(40)
    files = {
        "good1": (fam / "good1.png", good),
        "good2": (root / "FamB" / "good2.png", _png("L", (32, 80))),
        "corrupt": (fam / "corrupt.png", bytes(corrupt)),
        "truncated": (fam / "truncated.png", good[: len(good) // 2]),
        "header_only": (fam / "header_only.png", good[:33]),
        "bits16": (fam / "bits16.png", _png(bits16=True)),
        "rgb": (fam / "rgb.png", _png("RGB")),
        "not_png": (fam / "not_png.png", _text()),
        "empty": (fam / "empty.png", b""),
        "jpeg_named_png": (fam / "jpeg.png", _jpeg()),
        "huge_dims": (fam / "huge_dims.png", _png_huge_header()),
    }
    out = {}
    for key, (path, data) in files.items():
        path.write_bytes(data)
        out[key] = path
    return out


def _png_huge_header(width: int = 2**30, height: int = 2**30) -> bytes:
    """A PNG whose header claims width x height 8-bit pixels (a decompression bomb by the header)."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return (
            struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 1000))
        + chunk(b"IEND", b"")
    )


# ------------------------------------------------------------------------------------------------ zips


def make_zips(folder: Path, password: bytes = b"infected") -> dict[str, Path]:
    """Sample zips: a good one, unsafe entry names, a wrong password, corrupt and truncated archives."""
    folder.mkdir(parents=True, exist_ok=True)
    pe = minimal_pe()
    out = {}

    def aes(name: str, entries: dict[str, bytes], pw: bytes = password) -> Path:
        path = folder / name
        with pyzipper.AESZipFile(
            path, "w", compression=zipfile.ZIP_DEFLATED, encryption=pyzipper.WZ_AES
        ) as zf:
            zf.setpassword(pw)
            for n, d in entries.items():
                zf.writestr(n, d)
        out[name.removesuffix(".zip")] = path
        return path

    aes(
        "good.zip",
        {"FamA/sample1": pe, "FamA/sample2": _rand(50 * KB), "FamB/empty": b"", "FamB/text": _text()},
    )
    aes(
        "slip.zip",
        {
            "../../evil.exe": pe,
            "/etc/evil.exe": pe,
            "FamA/../../evil2.exe": pe,
            "C:/windows/evil.exe": pe,
            "..\\..\\evil3.exe": pe,
            "../evil\n4.exe": pe,  # and a newline for the error line to escape
            "FamA/ok.exe": pe,
        },
    )
    aes("wrong_password.zip", {"FamA/s.exe": pe}, pw=b"not-infected")
    good = (folder / "good.zip").read_bytes()
    (folder / "truncated.zip").write_bytes(good[: len(good) // 2])
    out["truncated"] = folder / "truncated.zip"
    mangled = bytearray(good)
    mangled[60:400] = bytes(340)
    (folder / "corrupt_entry.zip").write_bytes(bytes(mangled))
    out["corrupt_entry"] = folder / "corrupt_entry.zip"
    (folder / "not_a.zip").write_bytes(b"PK\x03\x04" + _rand(3000))
    out["not_a"] = folder / "not_a.zip"
    # A plain (unencrypted) zip whose central directory lies: it declares 16 bytes for a 1 MiB entry.
    path = folder / "lying_size.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("FamA/liar", _rand(1024 * KB, SEED + 2))
    raw = bytearray(path.read_bytes())
    cd = raw.rfind(b"PK\x01\x02")
    struct.pack_into("<I", raw, cd + 24, 16)  # uncompressed size in the central directory
    lh = raw.find(b"PK\x03\x04")
    struct.pack_into("<I", raw, lh + 22, 16)  # and in the local header
    path.write_bytes(bytes(raw))
    out["lying_size"] = path
    # Many tiny entries: for the entry-count limit.
    path = folder / "many_entries.zip"
    with zipfile.ZipFile(path, "w") as zf:
        for i in range(300):
            zf.writestr(f"FamA/{i:05d}", pe[:200] + i.to_bytes(4, "little"))
    out["many_entries"] = path
    return out


def make_zip_bomb(
    path: Path,
    size: int = 1000 * 1024**2,
    entries: int = 1,
    declared: int | None = None,
    overlap: bool = False,
) -> Path:
    """A zip of ``entries`` entries, each ``size`` zeros deflated (~1030:1); ``declared`` overrides the
    size the headers claim (a lying bomb); ``overlap`` points every entry at the same compressed bytes
    (a non-recursive zip bomb: N entries for the price of one). A 1 GB entry takes about a second."""
    step = 16 * 1024**2
    block = bytes(step)
    # Deflate 16 MiB of zeros once; after a full flush the stream is byte-aligned with an empty
    # window, so the same compressed block repeats for every further 16 MiB.
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    unit = comp.compress(block) + comp.flush(zlib.Z_FULL_FLUSH)
    n, rest = divmod(size, step)
    crc = 0
    for _ in range(n):
        crc = zlib.crc32(block, crc)
    tail_comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    tail = tail_comp.compress(block[:rest]) + tail_comp.flush()
    crc = zlib.crc32(block[:rest], crc)
    body = unit * n + tail
    claim = size if declared is None else declared
    local, central = [], []
    offset = 0
    for i in range(entries):
        name = f"Bomb/zeros{i}".encode()
        lh = (
            struct.pack(
                "<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, 8, 0, 0x21, crc, len(body), claim, len(name), 0
            )
            + name
        )
        local.append(lh + body)
        central.append(
            struct.pack(
                "<4sHHHHHHIIIHHHHHII",
                b"PK\x01\x02",
                20,
                20,
                0,
                8,
                0,
                0x21,
                crc,
                len(body),
                claim,
                len(name),
                0,
                0,
                0,
                0,
                0,
                offset,
            )
            + name
        )
        if not overlap:
            offset += len(lh) + len(body)
    cd = b"".join(central)
    if overlap:
        local = local[:1]
    cd_offset = sum(len(part) for part in local)
    end = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, entries, entries, len(cd), cd_offset, 0)
    with open(path, "wb") as f:
        for part in local:
            f.write(part)
        f.write(cd + end)
    return path


# ---------------------------------------------------------------------------------------- checkpoints


def make_checkpoint(path: Path, kind: str = "image", image_size: int = 32, **spec: Any) -> Path:
    """A tiny, valid detector checkpoint (benign/malware): cnn for images, malconv for bytes."""
    import torch

    from malvision.checkpoint import save_checkpoint
    from malvision.convert.spec import ConvertSpec
    from malvision.models import create_model

    torch.manual_seed(0)
    if kind == "image":
        name, kwargs, vocab = "cnn", {"channels": (8, 16)}, None
    elif kind == "bytes":
        name, kwargs, vocab = (
            "malconv",
            {"embed_dim": 4, "window": 8, "stride": 8, "channels": 6, "hidden": 6},
            257,
        )
    else:
        name, kwargs = "gru", {"embed_dim": 6, "hidden": 8}
        spec.setdefault("vocab", ["push", "mov", "call", "ret", "pop", "add", "sub", "jmp"])
        vocab = len(spec["vocab"]) + 2
    model = create_model(name, in_kind=kind, n_classes=2, vocab_size=vocab, **kwargs)
    return save_checkpoint(
        path,
        model,
        model_name=name,
        model_kwargs=kwargs,
        in_kind=kind,
        n_classes=2,
        vocab_size=vocab,
        spec=ConvertSpec(kind=kind, image_size=image_size, **spec).to_dict(),  # type: ignore[arg-type]
        classes=["benign", "malware"],
        seed=0,
        manifest_hash=None,
    )


class Marker:
    """Pickles as a call that creates ``path`` (a directory) when unpickled: proof that code ran."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.mkdir, (self.path,))


def make_bad_checkpoints(folder: Path, good: Path, marker: Path) -> dict[str, Path]:
    """Checkpoints that must be refused with one line: truncated, of another architecture, a pickle
    that would run code (as a torch zip and as a bare pickle), random bytes, an empty file."""
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    data = good.read_bytes()
    out = {}

    def write(name: str, blob: bytes) -> None:
        out[name] = folder / f"{name}.pt"
        out[name].write_bytes(blob)

    write("truncated", data[: len(data) // 2])
    write("truncated_tail", data[:-100])
    write("empty", b"")
    write("random", _rand(4096))
    payload = torch.load(good, map_location="cpu", weights_only=True)  # our own file, made just now
    payload["model"]["name"] = "rnn"  # cnn weights under the name rnn
    torch.save(payload, folder / "other_arch.pt")
    out["other_arch"] = folder / "other_arch.pt"
    payload = torch.load(good, map_location="cpu", weights_only=True)
    payload["extra"] = {"card": Marker(marker)}
    torch.save(payload, folder / "code_on_load.pt")
    out["code_on_load"] = folder / "code_on_load.pt"
    write("bare_pickle", pickle.dumps(Marker(marker)))
    payload = torch.load(good, map_location="cpu", weights_only=True)
    payload["spec"]["image_size"] = 10**9  # a hostile spec: a billion-pixel side
    torch.save(payload, folder / "huge_image_size.pt")
    out["huge_image_size"] = folder / "huge_image_size.pt"
    return out


def make_never_run(folder: Path, marker: Path) -> dict[str, Path]:
    """Samples that create ``marker`` if anything executes, imports or unpickles them."""
    folder.mkdir(parents=True, exist_ok=True)
    sh = folder / "dropper.sh"
    sh.write_text(f"#!/bin/sh\nmkdir '{marker}'\n" + "# padding\n" * 200)
    sh.chmod(0o755)
    py = folder / "evil_module.py"
    py.write_text(f"import os\nos.mkdir({str(marker)!r})\n" + "# padding\n" * 200)
    py.chmod(0o755)
    pk = folder / "evil.pkl"
    pk.write_bytes(pickle.dumps(Marker(marker)) + bytes(range(256)) * 8)
    pe = folder / "dropper.exe"
    pe.write_bytes(minimal_pe())
    out = {"sh": sh, "py": py, "pickle": pk, "pe": pe}
    # Modules a Python process might import from its working folder if it ever put it on sys.path.
    for mod in ("numpy", "torch", "typer", "rich", "sitecustomize", "usercustomize", "pefile", "PIL"):
        path = folder / f"{mod}.py"
        path.write_text(f"import os\nos.mkdir({str(marker)!r})\n")
        out[f"shadow_{mod}"] = path
    return out


def pe_with_text(text: bytes) -> bytes:
    """A PE32 with one .text section at 0x400 holding ``text`` (a multiple of 0x200 bytes)."""
    dos = bytearray(0x40)
    dos[0:2] = b"MZ"
    struct.pack_into("<I", dos, 0x3C, 0x40)
    coff = struct.pack("<HHIIIHH", 0x14C, 1, 0, 0, 0, 224, 0x0102)
    opt = struct.pack(
        "<HBBIIIIIIIIIHHHHHHIIIIHHIIIIII",
        0x10B, 14, 0, len(text), 0, 0, 0x1000, 0x1000, 0, 0x400000, 0x1000, 0x200,
        6, 0, 0, 0, 6, 0, 0, 0x1000 + len(text), 0x400, 0, 2, 0, 0x100000, 0x1000, 0x100000, 0x1000, 0, 16,
    ) + bytes(16 * 8)  # fmt: skip
    sec = struct.pack("<8sIIIIIIHHI", b".text", len(text), 0x1000, len(text), 0x400, 0, 0, 0, 0, 0x60000020)
    return (bytes(dos) + b"PE\0\0" + coff + opt + sec).ljust(0x400, b"\0") + text
