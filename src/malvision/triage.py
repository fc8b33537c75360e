"""What a file is, before any model sees it: the checks behind honest ``unknown`` verdicts.

A model trained on Windows PE files has no business naming a family for an all-zero file, a JPEG or an
ELF binary. ``triage`` looks at the magic bytes, the byte histogram and the PE headers (pefile, headers
only) and returns a reason when the input is outside what the model was made for.
"""

from __future__ import annotations

import functools
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["ByteStats", "byte_histogram", "byte_stats", "entropy_bits", "file_type", "pe_problem", "triage"]

# Near-constant: the most common byte value covers at least this share of the file.
CONSTANT_SHARE = 0.95
# Random or encrypted: Shannon entropy (bits/byte) above this over the whole file. Packed PE files run
# up to ~7.9 in their sections but keep low-entropy headers; whole-file uniform noise sits at 7.99+.
RANDOM_ENTROPY = 7.97

MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x7fELF", "ELF executable"),
    (b"\xfe\xed\xfa\xce", "Mach-O executable"),
    (b"\xfe\xed\xfa\xcf", "Mach-O executable"),
    (b"\xce\xfa\xed\xfe", "Mach-O executable"),
    (b"\xcf\xfa\xed\xfe", "Mach-O executable"),
    (b"\xca\xfe\xba\xbe", "Mach-O universal binary or Java class"),
    (b"\x89PNG\r\n\x1a\n", "PNG image"),
    (b"\xff\xd8\xff", "JPEG image"),
    (b"GIF87a", "GIF image"),
    (b"GIF89a", "GIF image"),
    (b"%PDF", "PDF document"),
    (b"PK\x03\x04", "zip archive"),
    (b"\x1f\x8b", "gzip archive"),
    (b"7z\xbc\xaf\x27\x1c", "7z archive"),
    (b"Rar!", "RAR archive"),
    (b"\xd0\xcf\x11\xe0", "OLE2 document"),
    (b"#!", "script"),
)


@dataclass(frozen=True)
class ByteStats:
    """Whole-file byte statistics, gathered while the file streams through conversion."""

    size: int
    entropy: float
    top_share: float


HIST_PIECE = 1 << 20  # bytes counted per bincount call: the int64 copy bincount makes stays small


def byte_histogram(data: bytes | bytearray | memoryview) -> np.ndarray:
    """Count of each byte value in ``data`` (256 int64 bins).

    Counts byte pairs as uint16 (65,536 bins, then folded to 256): ``np.bincount`` copies its input
    to int64 first, and pairs halve that copy: 2.7x faster than counting single bytes on the
    scanner's 4 MiB chunks (``benchmarks/convert.py``).
    """
    view = memoryview(data).cast("B")
    out = np.zeros(256, dtype=np.int64)
    for i in range(0, len(view), HIST_PIECE):
        piece = view[i : i + HIST_PIECE]
        pairs = np.bincount(np.frombuffer(piece, dtype=np.uint16, count=len(piece) // 2), minlength=1 << 16)
        pairs = pairs.reshape(256, 256)  # [high byte, low byte] of each little- or big-endian pair
        out += pairs.sum(axis=0) + pairs.sum(axis=1)
        if len(piece) % 2:
            out[piece[-1]] += 1
    return out


def byte_stats(hist: np.ndarray) -> ByteStats:
    """Entropy (bits/byte) and most-common-byte share from a 256-bin histogram."""
    total = int(hist.sum())
    if total == 0:
        return ByteStats(0, 0.0, 1.0)
    p = hist[hist > 0] / total
    return ByteStats(total, float(-(p * np.log2(p)).sum()), float(hist.max() / total))


def file_type(head: bytes) -> str:
    """'pe', 'text', or a name such as 'ELF executable' from the first bytes of a file."""
    if head[:2] == b"MZ":
        return "pe"
    for magic, name in MAGIC:
        if head.startswith(magic):
            return name
    sample = head[:4096]
    if sample and b"\x00" not in sample:
        try:
            sample.decode("utf-8")
            return "text"
        except UnicodeDecodeError as e:
            if e.start >= len(sample) - 3:  # a multi-byte character cut by the sample's end
                return "text"
    return "data"


@functools.cache
def _quiet_pe() -> Any:
    """pefile.PE without the ``gc.collect()`` its ``close()`` runs, also when a parse fails (~80 ms
    per damaged file beside torch). Parsing bytes maps nothing, so there is nothing to release."""
    import pefile

    class QuietPE(pefile.PE):
        def close(self) -> None:
            """Nothing to unmap for bytes: skip pefile's full garbage collection."""

    return QuietPE


def _whole_pe(head: bytes, size: int) -> bool:
    """Fast path for the common case: a PE whose headers and every section lie inside the file.

    Reads the few header fields that matter with ``struct`` (microseconds); anything unusual returns
    False and goes to pefile, which names the problem.
    """
    (e,) = struct.unpack_from("<I", head, 0x3C)
    opt = e + 24
    if head[e : e + 4] != b"PE\0\0" or opt + 64 > len(head):
        return False
    n_sections, opt_size = struct.unpack_from("<H", head, e + 6)[0], struct.unpack_from("<H", head, e + 20)[0]
    magic, (size_of_headers,) = (
        struct.unpack_from("<H", head, opt)[0],
        struct.unpack_from("<I", head, opt + 60),
    )
    table = opt + opt_size
    if n_sections == 0 or magic not in (0x10B, 0x20B) or opt_size < 64 or table + 40 * n_sections > len(head):
        return False
    end = 0
    for i in range(n_sections):
        raw_size, raw_ptr = struct.unpack_from("<II", head, table + 40 * i + 16)
        if raw_size:
            end = max(end, raw_ptr + raw_size)
    return 0 < end <= size and size_of_headers <= size


def pe_problem(head: bytes, size: int) -> str | None:
    """Why an 'MZ' file is not a whole PE (bad or missing headers, truncated), or None if it is."""
    import pefile

    if len(head) < 64:
        return "truncated PE: shorter than the 64-byte DOS header"
    (e_lfanew,) = struct.unpack_from("<I", head, 0x3C)
    if e_lfanew + 24 > size:
        return f"truncated PE: the PE header offset {e_lfanew} lies past the end of the file"
    if head[e_lfanew : e_lfanew + 4] == b"PE\0\0" and e_lfanew + 24 <= len(head):
        # pefile parses only the section headers that fit; the loader wants the whole declared table.
        (n_sections,) = struct.unpack_from("<H", head, e_lfanew + 6)
        (opt_size,) = struct.unpack_from("<H", head, e_lfanew + 20)
        if e_lfanew + 24 + opt_size + 40 * n_sections > size:
            return f"truncated PE: the table of {n_sections} sections runs past the end of the file"
    if _whole_pe(head, size):
        return None
    try:
        pe = _quiet_pe()(data=head, fast_load=True)
    except pefile.PEFormatError as e:
        return f"malformed PE: {str(e).strip().rstrip('.')}"
    try:
        if pe.FILE_HEADER.NumberOfSections == 0 or not pe.sections:
            return "malformed PE: no sections"
        end = max(s.PointerToRawData + s.SizeOfRawData for s in pe.sections if s.SizeOfRawData)
        if end > size:
            return f"truncated PE: sections end at byte {end:,} but the file has {size:,} bytes"
        if pe.OPTIONAL_HEADER.SizeOfHeaders > size:
            return "truncated PE: headers run past the end of the file"
    except (ValueError, AttributeError):
        return "malformed PE: unreadable section table"
    # No pe.close(): it only unmaps files, and it runs gc.collect(), ~160 ms per file beside torch.
    return None


def triage(head: bytes, stats: ByteStats, expects: str = "pe") -> str | None:
    """Reason the file is outside what a model expecting ``expects`` ('pe' or 'text') can judge."""
    if stats.size == 0:
        return "empty file"
    if stats.top_share >= CONSTANT_SHARE:
        return f"near-constant content ({stats.top_share:.1%} of bytes share one value)"
    kind = file_type(head)
    if expects == "text":
        return (
            None if kind == "text" else f"{kind if kind != 'pe' else 'Windows PE file'}, expected opcode text"
        )
    if kind != "pe":
        if stats.entropy >= RANDOM_ENTROPY:
            return f"random or encrypted-looking data (entropy {stats.entropy:.3f} bits/byte), not a PE file"
        what = {"text": "text file", "data": "unrecognised binary data"}.get(kind, kind)
        return f"{what}, not a Windows PE file"
    return pe_problem(head, stats.size)


def entropy_bits(data: bytes | bytearray | memoryview) -> float:
    """Shannon entropy of ``data`` in bits per byte (0 for no bytes)."""
    return byte_stats(byte_histogram(data)).entropy
