"""Opcode mnemonic files (malvision.convert.opcodes)."""

from __future__ import annotations

import pytest

from malvision.convert.opcodes import parse_opcodes
from malvision.errors import ConversionError


def test_parse_opcodes_one_per_line_lower_case_blank_lines_dropped() -> None:
    assert parse_opcodes(b"push\r\nMOV\n\n  call \nxor") == ["push", "mov", "call", "xor"]


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"push\x00\x01\x02", "binary data"),
        ("push\nmöv\n".encode(), "not ASCII"),
        (b"\n  \n", "no opcodes"),
    ],
)
def test_parse_opcodes_refuses_what_is_not_an_opcode_list(data: bytes, match: str) -> None:
    with pytest.raises(ConversionError, match=match):
        parse_opcodes(data, "sample.txt")


def test_parse_opcodes_error_names_the_file() -> None:
    with pytest.raises(ConversionError, match=r"^sample\.txt: "):
        parse_opcodes(b"", "sample.txt")
