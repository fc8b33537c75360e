"""What a file's bytes hold, beside its headers: section entropies, printable strings, marker strings.

The third block of the PE feature vector (features version 3). ``ContentTap`` gathers it in the same
one pass over a file's chunks as the rest of ``FeatureTap``, in memory bounded by the number of
sections, whatever the file's size:

- **sections**: the entropy of each section's raw bytes, of the headers and of the overlay; summaries
  (highest, lowest, mean, size-weighted), the entry point's section and the usual code, data and
  resource sections by name, and how much of the file sits in sections above 7 bits a byte (packed or
  encrypted). -1 where a file has no such part.
- **strings**: runs of at least 5 printable ASCII bytes (as ``strings`` finds them): how many, how
  long, the entropy and distribution of their characters. (UTF-16 runs and version-resource fields were
  measured too and left out: little weight in the trees, and together as much time as the strings.)
- **markers**: how often its ASCII strings (run together) name URLs, drive paths, registry hives, the
  Run key, command interpreters, an embedded PE's DOS stub, manifest fields.
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
_CHARS = range(0x20, 0x7F)
# (feature suffix, bytes): counted in the strings
_MARKERS = (
    ("http", b"http://"), ("https", b"https://"), ("hkey", b"HKEY_"), ("drive_upper", b"C:\\"),
    ("drive_lower", b"c:\\"), ("exe", b".exe"), ("dll", b".dll"), ("bat", b".bat"), ("cmd", b"cmd.exe"),
    ("powershell", b"powershell"), ("run_key", b"CurrentVersion\\Run"), ("user_agent", b"Mozilla/"),
    ("dos_stub", b"This program cannot"), ("manifest", b"<assembly"),
    ("require_admin", b"requireAdministrator"), ("as_invoker", b"asInvoker"),
)  # fmt: skip
_CARRY = max(len(m) for _, m in _MARKERS) - 1
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
    + tuple(f"strings_char_{c:02x}" for c in _CHARS)
    + tuple(f"marker_{name}" for name, _ in _MARKERS)
)


class _Strings:
    """Runs of at least ``MIN_STRING`` printable ASCII bytes in a stream fed in pieces: how many, their
    total length, and (returned by ``feed``) their bytes in order. A run is found as a run of windows of
    ``MIN_STRING`` printable bytes, so only the few edges of long runs are located, not the many of the
    short ones machine code is full of (several times faster on code)."""

    def __init__(self) -> None:
        self.n, self.total = 0, 0
        self._carry = np.zeros(0, dtype=np.uint8)  # the last MIN_STRING - 1 bytes: windows not yet complete
        self._open = False  # a run reaches the end of the windows so far

    def feed(self, chunk: np.ndarray) -> list[np.ndarray]:
        buf = np.concatenate((self._carry, chunk)) if self._carry.size else chunk
        k = MIN_STRING - 1
        n = buf.size - k  # windows that start in buf and end in it
        if n <= 0:
            self._carry = buf.copy()
            return []
        v = buf.view(np.int8)  # 0x20-0x7e: above 31 as a signed byte (0x80-0xff are negative), not 0x7f
        p = v > 31
        p &= v != 127
        pairs = p[:-1] & p[1:]  # windows of 2, then 4, then 5 (MIN_STRING) bytes: three passes, not four
        w = pairs[:n] & pairs[2 : n + 2]
        w &= p[k : n + k]
        edges = np.flatnonzero(w[1:] != w[:-1]) + 1
        starts, ends = (edges[1::2], edges[0::2]) if w[0] else (edges[0::2], edges[1::2])
        out: list[np.ndarray] = []
        if w[0]:
            if self._open:  # the run of the last piece goes on
                stop = int(ends[0]) + k if ends.size else n
                out.append(buf[:stop])
                self.total += stop
                if not ends.size:
                    self._carry = buf[n:].copy()
                    return out
                ends = ends[1:]
            else:
                starts = np.concatenate(([0], starts))
        elif self._open:  # it ended with the last piece's windows: its last k bytes are here
            out.append(buf[:k])
            self.total += k
        self._open = bool(w[-1])
        last = int(starts[-1]) if self._open else None
        if self._open:
            starts = starts[:-1]
        lengths = ends - starts + k  # each closed run with the k bytes of its last window
        self.n += int(starts.size) + self._open
        self.total += int(lengths.sum())
        if starts.size:  # gathered without a pass over the bytes between them
            offset = np.repeat(starts - (np.cumsum(lengths) - lengths), lengths)
            out.append(buf[np.arange(offset.size) + offset])
        if last is not None:
            out.append(buf[last:n])
            self.total += n - last
        self._carry = buf[n:].copy()
        return out

    def finish(self) -> list[np.ndarray]:
        """The last bytes of a run still open at the end of the file."""
        if not self._open:
            return []
        self._open = False
        self.total += self._carry.size
        return [self._carry]


class ContentTap:
    """The content block of one file, fed its chunks in order (``update``) and its parsed headers as
    soon as they are known (``locate``, with the bytes already seen)."""

    def __init__(self) -> None:
        self._ascii = _Strings()
        self._chars = np.zeros(256, dtype=np.int64)  # the ASCII strings' characters
        self._counts = np.zeros(len(_MARKERS), dtype=np.int64)
        self._tail = b""  # the end of the strings so far, for markers that straddle two pieces
        self._pos = 0
        self._covered = 0  # bytes already in the section histograms
        self._bounds = np.zeros((0, 2), dtype=np.int64)  # [start, end) of sections, headers, overlay
        self._edges: list[int] = []  # the same bounds, flat, for cutting chunks
        self._hists: np.ndarray | None = None
        self._headers: PEHeaders | None = None

    def locate(self, headers: PEHeaders | None, seen: bytes | bytearray) -> None:
        """Start the per-section histograms from ``headers``, ``seen`` being the file's bytes so far."""
        self._headers = headers
        if headers is None:
            return
        sections = headers.sections[:MAX_SECTIONS]
        regions = [(s.raw_pointer, s.raw_pointer + s.raw_size) for s in sections]
        end = max((s.raw_pointer + s.raw_size for s in sections if s.raw_size), default=0)
        regions += [(0, headers.size_of_headers), (end, 1 << 62) if end else (0, 0)]
        self._bounds = np.array(regions, dtype=np.int64)
        self._edges = self._bounds.ravel().tolist()
        self._hists = np.zeros((len(regions), 256), dtype=np.int64)
        self._sections(np.frombuffer(bytes(seen), dtype=np.uint8), 0)

    def update(self, chunk: bytes | bytearray | memoryview) -> np.ndarray:
        """Take the next chunk; returns its 256-bin byte histogram (made from the same counts as the
        sections', so the file's histogram costs no second pass)."""
        a = np.frombuffer(chunk, dtype=np.uint8)
        at, self._pos = self._pos, self._pos + a.size
        if not a.size:
            return np.zeros(256, dtype=np.int64)
        hist = byte_histogram(a) if self._hists is None else self._sections(a, at)
        self._text(self._ascii.feed(a))
        return hist

    def _text(self, strings: list[np.ndarray]) -> None:
        """Count the characters and markers of the next pieces of the strings."""
        if not strings:
            return
        text = np.concatenate(strings)
        self._chars += np.bincount(text, minlength=256)
        joined = self._tail + text.tobytes()
        for i, (_, m) in enumerate(_MARKERS):
            self._counts[i] += joined.count(m) - self._tail.count(m)
        self._tail = joined[-_CARRY:]

    def _sections(self, a: np.ndarray, at: int) -> np.ndarray:
        """Count ``a`` (file offset ``at``) into every region that holds its bytes, once per piece
        between region edges; the bytes before ``_covered`` are counted already. Returns its histogram."""
        assert self._hists is not None
        end, bounds = at + a.size, self._bounds
        # plain Python: np.unique would import numpy.ma, 17 ms of a scan's cold start
        cuts = sorted({min(max(c, at), end) for c in (at, end, self._covered, *self._edges)})
        total = np.zeros(256, dtype=np.int64)
        for lo, hi in zip(cuts[:-1], cuts[1:], strict=True):
            piece = a[lo - at : hi - at]
            # byte_histogram's 65,536 pair bins cost more than they save on a small piece
            h = byte_histogram(piece) if piece.size > 1 << 16 else np.bincount(piece, minlength=256)
            total += h
            if lo >= self._covered:
                self._hists[(bounds[:, 0] <= lo) & (bounds[:, 1] >= hi)] += h
        self._covered = max(self._covered, end)
        return total

    def features(self, size: int) -> np.ndarray:
        """The block (``CONTENT_NAMES``) of a ``size``-byte file whose chunks have all been fed."""
        self._text(self._ascii.finish())
        f = dict.fromkeys(CONTENT_NAMES, 0.0)
        f.update(self._section_block(size))
        a = self._ascii
        if a.n:
            chars = self._chars[0x20:0x7F]
            f["strings_log_n"] = math.log1p(a.n)
            f["strings_mean_length"] = a.total / a.n
            f["strings_entropy"] = byte_stats(self._chars).entropy
            f["strings_share"] = a.total / size if size else 0.0
            for c, v in zip(_CHARS, chars / chars.sum(), strict=True):
                f[f"strings_char_{c:02x}"] = float(v)
        for (name, _), count in zip(_MARKERS, self._counts, strict=True):
            f[f"marker_{name}"] = math.log1p(int(count))
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
