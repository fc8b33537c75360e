"""What a file is, before any model sees it: the checks behind honest ``unknown`` verdicts.

A model trained on Windows PE files has no business naming a family for an all-zero file, a JPEG or an
ELF binary. ``triage`` looks at the magic bytes, the byte histogram and the PE headers (``malvision.pe``)
and returns a reason when the input is outside what the model was made for.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from malvision._bytepass import histogram
from malvision.pe import PEHeaders, problem

__all__ = ["ByteStats", "byte_histogram", "byte_stats", "entropy_bits", "file_type", "triage"]

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


def byte_histogram(data: bytes | bytearray | memoryview | np.ndarray) -> np.ndarray:
    """Count of each byte value in ``data`` (256 int64 bins), in one C pass without the GIL."""
    out = np.zeros(256, dtype=np.int64)
    histogram(data, out)
    return out


def byte_stats(hist: np.ndarray) -> ByteStats:
    """Entropy (bits/byte) and most-common-byte share from a 256-bin histogram."""
    total = int(hist.sum())
    if total == 0:
        return ByteStats(0, 0.0, 1.0)
    p = hist[hist > 0] / total
    entropy = float((p * -np.log2(p)).sum()) + 0.0  # one byte value: 0.0, not -0.0
    return ByteStats(total, entropy, float(hist.max() / total))


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


def triage(
    head: bytes, stats: ByteStats, expects: str = "pe", headers: PEHeaders | None = None
) -> str | None:
    """Reason the file is outside what a model expecting ``expects`` ('pe' or 'text') can judge;
    ``headers`` are the file's parsed PE headers when the caller has them."""
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
        if kind == "data" and stats.entropy >= RANDOM_ENTROPY:  # a known format says what it is first
            return f"random or encrypted-looking data (entropy {stats.entropy:.3f} bits/byte), not a PE file"
        what = {"text": "text file", "data": "unrecognised binary data"}.get(kind, kind)
        return f"{what}, not a Windows PE file"
    return problem(head, stats.size, headers)


def entropy_bits(data: bytes | bytearray | memoryview) -> float:
    """Shannon entropy of ``data`` in bits per byte (0 for no bytes)."""
    return byte_stats(byte_histogram(data)).entropy
