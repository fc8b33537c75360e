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

    parts: list[Upload] = []
    state: dict[str, Any] = {"header": b"", "value": b"", "disp": b"", "buf": None, "field": "", "name": None}

    def on_part_begin() -> None:
        state.update(disp=b"", buf=None, field="", name=None)

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state["header"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        state["value"] += data[start:end]

    def on_header_end() -> None:
        if state["header"].lower() == b"content-disposition":
            state["disp"] = state["value"]
        state.update(header=b"", value=b"")

    def on_headers_finished() -> None:
        _, opts = parse_options_header(state["disp"])
        state["field"] = opts.get(b"name", b"").decode("utf-8", "replace")
        if b"filename" in opts:
            if sum(1 for p in parts if p.filename) >= max_files:
                raise HTTPException(413, f"too many files in one request (at most {max_files})")
            state["name"] = _safe_name(opts[b"filename"].decode("utf-8", "replace"), len(parts) + 1)
            state["buf"] = bytearray()

    def on_part_data(data: bytes, start: int, end: int) -> None:
        if state["buf"] is not None:  # form fields other than files are ignored
            state["buf"] += data[start:end]

    def on_part_end() -> None:
        if state["buf"] is not None:
            parts.append(Upload(state["field"], state["name"], bytes(state["buf"])))
            state["buf"] = None

    callbacks = {
        "on_part_begin": on_part_begin,
        "on_part_data": on_part_data,
        "on_part_end": on_part_end,
        "on_header_field": on_header_field,
        "on_header_value": on_header_value,
        "on_header_end": on_header_end,
        "on_headers_finished": on_headers_finished,
    }
    parser = MultipartParser(params[b"boundary"], callbacks)  # type: ignore[arg-type]
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
        parts.clear()
        raise
    return parts
