"""What a file's bytes hold, beside its headers: section entropies, printable strings, marker strings.

The third block of the PE feature vector (features version 3). ``ContentTap`` gathers it in the same
one pass over a file's chunks as the rest of ``FeatureTap``, in memory bounded by the number of
sections, whatever the file's size:

- **sections**: the entropy of each section's raw bytes, of the headers and of the overlay; summaries
  (highest, lowest, mean, size-weighted), the entry point's section and the usual code, data and
  resource sections by name, and how much of the file sits in sections above 7 bits a byte (packed or
  encrypted). -1 where a file has no such part.
- **strings**: runs of at least 5 printable ASCII bytes (as ``strings`` finds them) and of 5 UTF-16LE
  characters: how many, how long, the entropy and distribution of their characters.
- **markers**: how often a file names URLs, drive paths, registry hives, the Run key, command
  interpreters, an embedded PE's DOS stub; whether it carries a version resource and manifest fields.
  No toolchain names (``Borland``, ``Nullsoft``, ...): as for the header block, a detector keyed on
  those learns how the benign corpus was built, not what malware does.
"""

from __future__ import annotations

import math

import numpy as np

from malvision.pe import MAX_SECTIONS, PEHeaders
from malvision.triage import byte_histogram, byte_stats

__all__ = ["CONTENT_NAMES", "ContentTap"]

MIN_STRING = 5
HIGH_ENTROPY = 7.0
_PRINTABLE = np.zeros(256, dtype=bool)
_PRINTABLE[0x20:0x7F] = True
_CHARS = range(0x20, 0x7F)
# (feature suffix, bytes): counted wherever they occur
_MARKERS = (
    ("http", b"http://"), ("https", b"https://"), ("hkey", b"HKEY_"), ("drive_upper", b"C:\\"),
    ("drive_lower", b"c:\\"), ("exe", b".exe"), ("dll", b".dll"), ("bat", b".bat"), ("cmd", b"cmd.exe"),
    ("powershell", b"powershell"), ("run_key", b"CurrentVersion\\Run"), ("user_agent", b"Mozilla/"),
    ("mz", b"MZ"), ("dos_stub", b"This program cannot"), ("manifest", b"<assembly"),
    ("require_admin", b"requireAdministrator"), ("as_invoker", b"asInvoker"),
)  # fmt: skip
# UTF-16LE strings of a version resource: present or not
_VERSION = ("VS_VERSION_INFO", "CompanyName", "ProductName", "OriginalFilename", "LegalCopyright",
            "FileDescription", "Microsoft Corporation")  # fmt: skip
_UTF16 = tuple((s, s.encode("utf-16-le")) for s in _VERSION)
_CARRY = max(len(m) for _, m in _MARKERS + _UTF16) - 1
_SECTION_BLOCK = (
    "section_entropy_max", "section_entropy_min", "section_entropy_mean", "section_entropy_weighted",
    "entry_section_entropy", "text_entropy", "rdata_entropy", "data_entropy", "rsrc_entropy",
    "high_entropy_share", "n_high_entropy_sections", "overlay_entropy", "headers_entropy",
    "log_entry_section_raw", "log_entry_section_virtual",
)  # fmt: skip
_NAMED = {
    ".text": "text_entropy",
    ".rdata": "rdata_entropy",
    ".data": "data_entropy",
    ".rsrc": "rsrc_entropy",
}
CONTENT_NAMES: tuple[str, ...] = (
    _SECTION_BLOCK
    + ("strings_log_n", "strings_mean_length", "strings_entropy", "strings_share")
    + ("utf16_strings_log_n", "utf16_strings_mean_length")
    + tuple(f"strings_char_{c:02x}" for c in _CHARS)
    + tuple(f"marker_{name}" for name, _ in _MARKERS)
    + tuple(f"version_{s}" for s in _VERSION)
)


class _Runs:
    """Runs of True in a boolean stream fed in pieces: how many are at least ``min_len`` long, their
    total length and (``bins``) a histogram of the values they cover."""

    def __init__(self, min_len: int, bins: int = 0) -> None:
        self.min_len, self.n, self.total = min_len, 0, 0
        self.hist = np.zeros(bins, dtype=np.int64) if bins else None
        self._open = 0  # length of the run reaching the end of the last piece
        self._pending: list[np.ndarray] = []  # its values while it is shorter than min_len

    def feed(self, mask: np.ndarray, values: np.ndarray | None = None) -> None:
        if not mask.size:
            return
        d = np.diff(mask.view(np.int8), prepend=np.int8(0), append=np.int8(0))
        starts, ends = np.flatnonzero(d == 1), np.flatnonzero(d == -1)
        first = 0
        if self._open:
            if starts.size and starts[0] == 0:  # the open run goes on
                self._extend(None if values is None else values[: ends[0]], int(ends[0]))
                if ends[0] == mask.size:
                    return
                first = 1
            self._open, self._pending = 0, []
        starts, ends = starts[first:], ends[first:]
        if starts.size and ends[-1] == mask.size:  # the last run may go on in the next piece
            self._extend(None if values is None else values[starts[-1] :], int(ends[-1] - starts[-1]))
            starts, ends = starts[:-1], ends[:-1]
        lengths = ends - starts
        keep = lengths >= self.min_len
        self.n += int(keep.sum())
        self.total += int(lengths[keep].sum())
        if self.hist is not None and values is not None and keep.any():
            edges = np.zeros(mask.size + 1, dtype=np.int32)
            edges[starts[keep]] += 1
            edges[ends[keep]] -= 1
            self.hist += np.bincount(values[np.cumsum(edges[:-1]) > 0], minlength=self.hist.size)

    def _extend(self, values: np.ndarray | None, k: int) -> None:
        if self._open >= self.min_len:  # counted already: only its length and values grow
            self.total += k
            self._add(values)
        elif self._open + k >= self.min_len:
            self.n += 1
            self.total += self._open + k
            for v in self._pending:
                self._add(v)
            self._add(values)
            self._pending = []
        elif values is not None:
            self._pending.append(values)
        self._open += k

    def _add(self, values: np.ndarray | None) -> None:
        if self.hist is not None and values is not None and values.size:
            self.hist += np.bincount(values, minlength=self.hist.size)


class ContentTap:
    """The content block of one file, fed its chunks in order (``update``) and its parsed headers as
    soon as they are known (``locate``, with the bytes already seen)."""

    def __init__(self) -> None:
        self._ascii = _Runs(MIN_STRING, bins=256)
        self._utf16 = (_Runs(MIN_STRING), _Runs(MIN_STRING))  # characters at even and odd offsets
        self._counts = np.zeros(len(_MARKERS), dtype=np.int64)
        self._seen = np.zeros(len(_UTF16), dtype=bool)
        self._tail = b""
        self._last: int | None = None  # the previous chunk's last byte (a UTF-16 character's first)
        self._pos = 0
        self._covered = 0  # bytes already in the section histograms
        self._regions: list[tuple[int, int]] = []  # sections, then headers, then overlay
        self._hists: np.ndarray | None = None
        self._headers: PEHeaders | None = None

    def locate(self, headers: PEHeaders | None, seen: bytes | bytearray) -> None:
        """Start the per-section histograms from ``headers``, ``seen`` being the file's bytes so far."""
        self._headers = headers
        if headers is None:
            return
        sections = headers.sections[:MAX_SECTIONS]
        self._regions = [(s.raw_pointer, s.raw_pointer + s.raw_size) for s in sections]
        end = max((s.raw_pointer + s.raw_size for s in sections if s.raw_size), default=0)
        self._regions += [(0, headers.size_of_headers), (end, 1 << 62) if end else (0, 0)]
        self._hists = np.zeros((len(self._regions), 256), dtype=np.int64)
        self._sections(np.frombuffer(bytes(seen), dtype=np.uint8), 0)

    def update(self, chunk: bytes | bytearray | memoryview) -> None:
        a = np.frombuffer(chunk, dtype=np.uint8)
        at, self._pos = self._pos, self._pos + a.size
        if not a.size:
            return
        if self._hists is not None:
            self._sections(a, at)
        printable = _PRINTABLE[a]
        self._ascii.feed(printable, a)
        # UTF-16LE: a printable byte followed by 0x00; starts at at-1 when the last chunk's byte is one
        lead = self._last is not None
        buf = np.concatenate(([self._last], a)).astype(np.uint8) if lead else a
        pr = np.concatenate(([_PRINTABLE[self._last]], printable)) if lead else printable
        char = pr[:-1] & (buf[1:] == 0)
        start = at - 1 if lead else at
        for parity, runs in enumerate(self._utf16):
            runs.feed(char[(parity - start) % 2 :: 2])
        self._last = int(a[-1])
        joined = self._tail + bytes(chunk)
        for i, (_, m) in enumerate(_MARKERS):
            self._counts[i] += joined.count(m) - self._tail.count(m)
        for i, (_, m) in enumerate(_UTF16):
            self._seen[i] |= m in joined
        self._tail = joined[-_CARRY:]

    def _sections(self, a: np.ndarray, at: int) -> None:
        assert self._hists is not None
        start, self._covered = max(at, self._covered), max(self._covered, at + a.size)
        for i, (lo, hi) in enumerate(self._regions):
            lo, hi = max(lo, start), min(hi, at + a.size)
            if hi > lo:
                self._hists[i] += byte_histogram(a[lo - at : hi - at])

    def features(self, size: int) -> np.ndarray:
        """The block (``CONTENT_NAMES``) of a ``size``-byte file whose chunks have all been fed."""
        f = dict.fromkeys(CONTENT_NAMES, 0.0)
        f.update(self._section_block(size))
        a = self._ascii
        if a.n:
            chars = a.hist[0x20:0x7F]
            f["strings_log_n"] = math.log1p(a.n)
            f["strings_mean_length"] = a.total / a.n
            f["strings_entropy"] = byte_stats(a.hist).entropy
            f["strings_share"] = a.total / size if size else 0.0
            for c, v in zip(_CHARS, chars / chars.sum(), strict=True):
                f[f"strings_char_{c:02x}"] = float(v)
        n16 = sum(r.n for r in self._utf16)
        if n16:
            f["utf16_strings_log_n"] = math.log1p(n16)
            f["utf16_strings_mean_length"] = sum(r.total for r in self._utf16) / n16
        for (name, _), count in zip(_MARKERS, self._counts, strict=True):
            f[f"marker_{name}"] = math.log1p(int(count))
        for (s, _), seen in zip(_UTF16, self._seen, strict=True):
            f[f"version_{s}"] = float(seen)
        return np.array([f[n] for n in CONTENT_NAMES], dtype=np.float64)

    def _section_block(self, size: int) -> dict[str, float]:
        h = self._headers
        out = dict.fromkeys(_SECTION_BLOCK, -1.0)
        if h is None or self._hists is None or not h.sections:
            return out
        hists = self._hists
        entropy = [byte_stats(x).entropy if x.sum() else -1.0 for x in hists]
        sections = h.sections[:MAX_SECTIONS]
        ent = np.array(entropy[: len(sections)])
        raw = hists[: len(sections)].sum(axis=1).astype(np.float64)
        out |= {
            "section_entropy_max": float(ent.max()), "section_entropy_min": float(ent.min()),
            "section_entropy_mean": float(ent.mean()),
            "high_entropy_share": float(raw[ent > HIGH_ENTROPY].sum() / size) if size else 0.0,
            "n_high_entropy_sections": float((ent > HIGH_ENTROPY).sum()),
            "headers_entropy": entropy[-2], "overlay_entropy": entropy[-1],
        }  # fmt: skip
        if raw.sum():
            out["section_entropy_weighted"] = float((ent * raw).sum() / raw.sum())
        for s, e in zip(sections, ent, strict=True):
            name = _NAMED.get(s.name.decode("latin-1").lower())
            if name and out[name] == -1.0:
                out[name] = float(e)
        for s, e in zip(sections, ent, strict=True):  # the last that holds it, as in the header block
            if s.virtual_address <= h.entry_point < s.virtual_address + max(s.virtual_size, s.raw_size):
                out["entry_section_entropy"] = float(e)
                out["log_entry_section_raw"] = math.log1p(s.raw_size)
                out["log_entry_section_virtual"] = math.log1p(s.virtual_size)
        return out
