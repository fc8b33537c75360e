"""Multipart uploads read into memory while their bytes are counted: 413 as soon as the limit is passed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath, PureWindowsPath
from typing import Any

from fastapi import HTTPException, Request

from malvision.io import human_size

__all__ = ["FRAMING", "Upload", "read_uploads"]

FRAMING = 64 * 1024  # multipart boundaries and part headers allowed on top of the files themselves


@dataclass
class Upload:
    """One uploaded file, in memory."""

    field: str
    filename: str
    data: bytes


def _safe_name(raw: str | None, index: int) -> str:
    """The file's base name without control characters (at most 200 characters)."""
    name = PureWindowsPath(PurePosixPath(raw or "").name).name if raw else ""
    name = "".join(c for c in name if c.isprintable())[:200].strip()
    return name or f"upload-{index}"


async def read_uploads(request: Request, limit: int, max_files: int) -> list[Upload]:
    """Parse a multipart body into in-memory files, counting bytes as they come: 413 past ``limit``."""
    from python_multipart import MultipartParser
    from python_multipart.exceptions import FormParserError
    from python_multipart.multipart import parse_options_header

    kind, params = parse_options_header(request.headers.get("content-type", ""))
    if kind != b"multipart/form-data" or not params.get(b"boundary"):
        raise HTTPException(415, "send files as multipart/form-data (field 'files', or 'file' for explain)")
    body_limit = limit + FRAMING
    too_big = f"upload is over the {human_size(limit)} size limit"
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise HTTPException(400, "bad Content-Length header")
        if int(declared) > body_limit:
            raise HTTPException(413, too_big)
    parts = _Parts(max_files)
    parser = MultipartParser(params[b"boundary"], parts.callbacks())  # type: ignore[arg-type]
    got = 0
    try:
        async for chunk in request.stream():
            got += len(chunk)
            if got > body_limit:
                raise HTTPException(413, too_big)
            parser.write(chunk)
        parser.finalize()
    except FormParserError:
        raise HTTPException(400, "malformed multipart body") from None
    except BaseException:
        parts.files.clear()
        raise
    return parts.files


class _Parts:
    """The multipart parser's callbacks: each part's headers, then its bytes when it is a file."""

    def __init__(self, max_files: int) -> None:
        self.max_files = max_files
        self.files: list[Upload] = []
        self.header, self.value, self.disposition = b"", b"", b""
        self.buf: bytearray | None = None
        self.field, self.name = "", ""

    def callbacks(self) -> dict[str, Any]:
        return {
            "on_part_begin": self.part_begin,
            "on_part_data": self.part_data,
            "on_part_end": self.part_end,
            "on_header_field": self.header_field,
            "on_header_value": self.header_value,
            "on_header_end": self.header_end,
            "on_headers_finished": self.headers_finished,
        }

    def part_begin(self) -> None:
        self.disposition, self.buf, self.field, self.name = b"", None, "", ""

    def header_field(self, data: bytes, start: int, end: int) -> None:
        self.header += data[start:end]

    def header_value(self, data: bytes, start: int, end: int) -> None:
        self.value += data[start:end]

    def header_end(self) -> None:
        if self.header.lower() == b"content-disposition":
            self.disposition = self.value
        self.header, self.value = b"", b""

    def headers_finished(self) -> None:
        from python_multipart.multipart import parse_options_header

        _, opts = parse_options_header(self.disposition)
        self.field = opts.get(b"name", b"").decode("utf-8", "replace")
        if b"filename" in opts:
            if len(self.files) >= self.max_files:
                raise HTTPException(413, f"too many files in one request (at most {self.max_files})")
            self.name = _safe_name(opts[b"filename"].decode("utf-8", "replace"), len(self.files) + 1)
            self.buf = bytearray()

    def part_data(self, data: bytes, start: int, end: int) -> None:
        if self.buf is not None:  # form fields other than files are ignored
            self.buf += data[start:end]

    def part_end(self) -> None:
        if self.buf is not None:
            self.files.append(Upload(self.field, self.name, bytes(self.buf)))
            self.buf = None
