"""Opcode mnemonic files: one mnemonic per line (the BIG2015 opcode sequences)."""

from __future__ import annotations

import numpy as np

from malvision.errors import ConversionError, NotASampleError

__all__ = ["MAX_LINE", "MAX_MNEMONIC", "OpcodeReader", "parse_opcodes"]

MAX_LINE = 4096  # a longer line is no mnemonic: the reader refuses it rather than hold it
MAX_MNEMONIC = 16  # x86's longest mnemonics (AVX-512's) have 15 characters
_BREAKS = tuple(bytes([c]) for c in b"\n\r\x0b\x0c\x1c\x1d\x1e")  # where str.splitlines splits ASCII text


def _mnemonics(text: bytes) -> list[str]:
    return [t for t in map(str.strip, text.decode("latin-1").lower().splitlines()) if t]


def _check(head: bytes, non_ascii: bool, name: str) -> None:
    if b"\x00" in head[:4096]:
        raise ConversionError(f"{name}: binary data, expected one opcode mnemonic per line")
    if non_ascii:
        raise ConversionError(f"{name}: not ASCII text, expected one opcode mnemonic per line")


def _check_tokens(tokens: list[str], name: str) -> None:
    """Refuse no tokens, and text whose lines are mostly too long to be mnemonics (a list of sample
    ids, as the ``<family>/<family>.txt`` files beside BIG2015's opcode files)."""
    if not tokens:
        raise ConversionError(f"{name}: no opcodes found")
    if max(map(len, tokens)) <= MAX_MNEMONIC:  # the common case, at C speed
        return
    long = sum(len(t) > MAX_MNEMONIC for t in tokens)
    if 2 * long > len(tokens):
        raise NotASampleError(
            f"{name}: not opcode text: {long:,} of {len(tokens):,} lines are longer than any mnemonic"
        )


def parse_opcodes(data: bytes, name: str = "<opcodes>") -> list[str]:
    """Mnemonics of an opcode file, one per non-blank line, lower-cased; binary data, and lines that
    are mostly too long for mnemonics, are errors."""
    _check(data, not data.isascii(), name)
    tokens = _mnemonics(data)
    _check_tokens(tokens, name)
    return tokens


class OpcodeReader:
    """The first ``max_len`` mnemonics of an opcode file, gathered chunk by chunk: exactly
    ``parse_opcodes(whole file)[:max_len]``, holding only what it keeps."""

    def __init__(self, max_len: int) -> None:
        self.max_len = max_len
        self._tokens: list[str] = []
        self._pending = b""
        self._too_long = False

    def update(self, chunk: bytes | bytearray | memoryview) -> None:
        if len(self._tokens) >= self.max_len or self._too_long:
            return
        data = self._pending + bytes(chunk)
        pos = 0
        while len(self._tokens) < self.max_len:
            need = self.max_len - len(self._tokens)
            end = min(len(data), pos + 64 * need + MAX_LINE)  # enough text for the tokens still wanted
            cut = max(data.rfind(b, pos, end) for b in _BREAKS) + 1
            if cut <= pos:
                break
            self._tokens += _mnemonics(data[pos:cut])[:need]
            pos = cut
            if end == len(data):
                break
        self._pending = data[pos:] if len(self._tokens) < self.max_len else b""
        self._too_long = len(self._pending) > MAX_LINE

    def tokens(self, head: bytes, hist: np.ndarray, name: str) -> list[str]:
        """The mnemonics, once every chunk is in; ``head`` and ``hist`` are the file's first bytes
        and byte histogram, for the same refusals ``parse_opcodes`` makes."""
        _check(head, bool(hist[128:].any()), name)
        if self._too_long:
            raise ConversionError(
                f"{name}: a line of over {MAX_LINE:,} bytes, expected one opcode mnemonic per line"
            )
        tokens = self._tokens
        if len(tokens) < self.max_len:
            tokens = tokens + _mnemonics(self._pending)[: self.max_len - len(tokens)]
        _check_tokens(tokens, name)
        return tokens
