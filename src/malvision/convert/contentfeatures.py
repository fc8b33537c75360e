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
- **words** (features version 6, ``words``): how often each of ``convert.stringwords.WORDS`` is a word of
  the file (``words_of``): a run of 4 to 24 ASCII letters, in lower case (``_bytepass.letter_words``: a
  longer run is cut into pieces of 24), in its bytes or in its UTF-16LE strings (``_bytepass.wide_runs``).
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import numpy as np

from malvision._bytepass import count_patterns, histogram, letter_words, printable_runs, wide_runs
from malvision.convert.stringwords import WORDS
from malvision.pe import MAX_SECTIONS, PEHeaders
from malvision.triage import byte_histogram, byte_stats

__all__ = ["CONTENT_NAMES", "WORD_NAMES", "ContentTap", "words_of"]

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
_PATTERNS = tuple(m for _, m in _MARKERS)
_WORDS = tuple(w.encode() for w in WORDS)
_CARRY = max(len(m) for m in _PATTERNS) - 1  # a marker that ends in a piece starts at most this far before it
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
WORD_NAMES: tuple[str, ...] = tuple(f"word_{w}" for w in WORDS)


class _Strings:
    """Runs of at least ``_bytepass.MIN_RUN`` (5) printable ASCII bytes in a stream fed in pieces: how many, their
    total length, and (returned by ``feed``) their bytes in order, run together (``_bytepass``)."""

    def __init__(self) -> None:
        self.n, self.total = 0, 0
        self._run, self._pending = 0, b""  # the run open at the end of the pieces so far

    def feed(self, chunk: bytes | bytearray | memoryview) -> bytes:
        text, runs, self._run, self._pending = printable_runs(chunk, self._run, self._pending)
        self.n += runs
        self.total += len(text)
        return text


def _resumed(
    scan: Any, kept: bytes, chunk: np.ndarray | bytes, final: bool, *args: Any
) -> tuple[bytes, bytes]:
    """``scan`` (``letter_words``, ``wide_runs``) over the bytes the piece before kept and ``chunk``: what it
    found, and the bytes it keeps for the next piece."""
    buf = kept + bytes(chunk) if kept else chunk  # rarely: a run goes on
    text, keep = scan(buf, final, *args)
    return text, bytes(buf[len(buf) - keep :]) if keep else b""


class _Words:
    """How often each word occurs in a stream fed in pieces: the words of its bytes and of its UTF-16LE
    strings (``letter_words``, ``wide_runs``); a run the next piece may go on with waits for it. With
    ``only`` (lower-case bytes), the other words are not counted."""

    def __init__(self, only: tuple[bytes, ...] | None = None) -> None:
        self.only = only
        self.counts: Counter[bytes] = Counter()
        self._letters = b""  # the letters at the end of the bytes so far
        self._wide = b""  # the bytes at the end so far that may start a UTF-16 string

    def feed(self, chunk: np.ndarray | bytes, final: bool = False) -> None:
        text, self._letters = _resumed(letter_words, self._letters, chunk, final, self.only)
        wide, self._wide = _resumed(wide_runs, self._wide, chunk, final)
        if wide:
            text += letter_words(wide, True, self.only)[0]
        if text:
            self.counts.update(text.split())

    def finish(self) -> Counter[bytes]:
        """The counts, once the last piece is in."""
        if self._letters or self._wide:
            self.feed(b"", final=True)
        return self.counts


def words_of(data: bytes | bytearray | memoryview) -> Counter[bytes]:
    """How often each word (lower case, 4 to 24 letters) occurs in a whole file's bytes and UTF-16 strings."""
    w = _Words()
    w.feed(bytes(data), final=True)
    return w.counts


class ContentTap:
    """The content block of one file, fed its chunks in order (``update``) and its parsed headers as
    soon as they are known (``locate``, with the bytes already seen)."""

    def __init__(self) -> None:
        self._ascii = _Strings()
        self._chars = np.zeros(256, dtype=np.int64)  # the ASCII strings' characters
        self._counts = np.zeros(len(_MARKERS), dtype=np.int64)
        self._words = _Words(_WORDS)
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
        self._words.feed(a)
        return hist

    def _text(self, text: bytes) -> None:
        """Count the characters and markers of the next piece of the strings (run together)."""
        if not text:
            return
        histogram(text, self._chars)
        buf = self._tail + text  # a marker may start in the strings before and end in these
        self._counts += count_patterns(buf, len(self._tail), _PATTERNS)
        self._tail = buf[-_CARRY:]

    def words(self) -> np.ndarray:
        """The word block (``WORD_NAMES``: log(1 + count)), once every chunk has gone through ``update``."""
        counts = self._words.finish()
        return np.log1p(np.array([counts.get(w, 0) for w in _WORDS], dtype=np.float64))

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
            h = byte_histogram(piece)
            total += h
            if lo >= self._covered:
                self._hists[(bounds[:, 0] <= lo) & (bounds[:, 1] >= hi)] += h
        self._covered = max(self._covered, end)
        return total

    def features(self, size: int) -> np.ndarray:
        """The block (``CONTENT_NAMES``) of a ``size``-byte file whose chunks have all been fed."""
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
