"""The house rules a newcomer relies on: rooms small enough to read at once, one PE parser."""

from __future__ import annotations

from pathlib import Path

import malvision

SRC = Path(malvision.__file__).parent
MAX_LINES = 400


def test_no_module_is_over_400_lines() -> None:
    big = {
        str(p.relative_to(SRC)): n
        for p in SRC.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert big == {}, f"modules over {MAX_LINES} lines (split them into rooms): {big}"


def test_only_the_pe_layer_reads_pe_headers() -> None:
    """pefile (and struct reads of the NT headers) live in malvision.pe; the ordinal table is all
    anyone else takes from pefile's package."""
    for p in SRC.rglob("*.py"):
        if p.is_relative_to(SRC / "pe"):
            continue
        text = p.read_text()
        assert "import pefile" not in text and "from pefile" not in text, p
        assert "PE\\0\\0" not in text and "0x3C" not in text, p
