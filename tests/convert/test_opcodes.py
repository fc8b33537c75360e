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
        # a list of sample ids, as the <family>/<family>.txt files beside BIG2015's opcode files
        (b"gatak\n01azqd4InC7m9JpocGv5\n04mcPSei852tgIKUwTJr\n", "2 of 3 lines are longer than any mnemonic"),
    ],
)
def test_parse_opcodes_refuses_what_is_not_an_opcode_list(data: bytes, match: str) -> None:
    with pytest.raises(ConversionError, match=match):
        parse_opcodes(data, "sample.txt")


def test_parse_opcodes_error_names_the_file() -> None:
    with pytest.raises(ConversionError, match=r"^sample\.txt: "):
        parse_opcodes(b"", "sample.txt")


def test_a_long_mnemonic_or_a_few_odd_lines_are_still_opcodes() -> None:
    text = b"vpbroadcastmw2d\npush\n" + b"x" * 40 + b"\n"  # 15 characters is a mnemonic; one odd line of 3
    assert parse_opcodes(text) == ["vpbroadcastmw2d", "push", "x" * 40]
