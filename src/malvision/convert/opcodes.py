"""Opcode mnemonic files: one mnemonic per line (the BIG2015 opcode sequences)."""

from __future__ import annotations

from malvision.errors import ConversionError

__all__ = ["parse_opcodes"]


def parse_opcodes(data: bytes, name: str = "<opcodes>") -> list[str]:
    """Mnemonics of an opcode file, one per non-blank line, lower-cased; binary data is an error."""
    if b"\x00" in data[:4096]:
        raise ConversionError(f"{name}: binary data, expected one opcode mnemonic per line")
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise ConversionError(f"{name}: not ASCII text, expected one opcode mnemonic per line") from None
    tokens = [line.strip().lower() for line in text.splitlines()]
    tokens = [t for t in tokens if t]
    if not tokens:
        raise ConversionError(f"{name}: no opcodes found")
    return tokens
