"""Multipart uploads read into memory while their bytes are counted: 413 as soon as the limit is passed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath, PureWindowsPath
from typing import Any

from fastapi import HTTPException, Request

from malvision.io import human_size, is_zip

__all__ = ["FRAMING", "Form", "Upload", "read_uploads", "zip_entries", "zip_entry"]

FRAMING = 64 * 1024  # multipart boundaries and part headers allowed on top of the files themselves
MAX_FIELD = FRAMING  # a form field that is not a file (a zip password, an entry name)
UNZIP_FACTOR = 8  # a request's zip entries may hold this many times the upload limit, decompressed


@dataclass
class Upload:
    """One uploaded file, in memory."""

    field: str
    filename: str
    data: bytes


@dataclass
class Form:
    """A multipart body: its files and its (short) text fields."""

    files: list[Upload]
    fields: dict[str, str]


def _open_zip(upload: Upload, password: str, max_total: int) -> Any:
    """The uploaded zip as a ``ZipDataset`` read from memory, every entry label ``sample``, entries
    over ``max_total`` bytes (alone or together) refused as ``scan`` refuses them."""
    from malvision.data.zips import ZipDataset

    return ZipDataset(
        upload.filename, label="sample", password=password, max_entry_size=max_total,
        max_total_size=max_total, data=upload.data,
    )  # fmt: skip


def zip_entries(
    upload: Upload, password: str, max_files: int, max_total: int
) -> list[tuple[str, str | None, bytes | str]]:
    """The entries of an uploaded sample zip, read in memory: (``zip!entry``, the entry's name in the zip
    or None for one refused while listing, bytes or the error).

    A zip that cannot be opened is one error; entries the reader refuses (bombs, unsafe names, over
    ``max_total`` bytes in all) are errors of their own; more than ``max_files`` entries is a 422.
    """
    from malvision.errors import InputError, MalvisionError

    try:
        zd = _open_zip(upload, password, max_total)
    except MalvisionError as e:
        return [(upload.filename, None, str(e))]
    try:
        if len(zd.records) + len(zd.skipped) > max_files:
            raise HTTPException(
                422,
                f"{upload.filename}: {len(zd.records)} entries, over the {max_files} files of one request",
            )
        out: list[tuple[str, str | None, bytes | str]] = [(name, None, msg) for name, msg in zd.skipped]
        for i, rec in enumerate(zd.records):
            name = f"{upload.filename}!{rec.id}"
            try:
                out.append((name, rec.id, zd.open(i).read()))
            except InputError as e:  # an empty entry gets the verdict of no bytes, as in `scan`
                out.append((name, rec.id, b"" if rec.size == 0 else str(e)))
            except MalvisionError as e:
                out.append((name, rec.id, str(e)))
        return out
    finally:
        zd.close()


def _safe_name(raw: str | None, index: int) -> str:
    """The file's base name without control characters (at most 200 characters)."""
    name = PureWindowsPath(PurePosixPath(raw or "").name).name if raw else ""
    name = "".join(c for c in name if c.isprintable())[:200].strip()
    return name or f"upload-{index}"


def zip_entry(upload: Upload, entry: str, password: str, max_total: int) -> tuple[str, bytes]:
    """``(zip!entry, bytes)`` of one entry of an uploaded zip: 404 when the upload is no zip or has no
    such entry, 422 when it (or the entry) cannot be read with ``password``."""
    from malvision.errors import MalvisionError

    if not is_zip(upload.data):
        raise HTTPException(404, f"{upload.filename}: not a zip, so it has no entry {entry!r}")
    try:
        zd = _open_zip(upload, password, max_total)
    except MalvisionError as e:
        raise HTTPException(422, str(e)) from None
    try:
        i = next((i for i, r in enumerate(zd.records) if r.id == entry), None)
        if i is None:
            raise HTTPException(404, f"{upload.filename}: no entry {entry!r}")
        try:
            return f"{upload.filename}!{entry}", zd.open(i).read()
        except MalvisionError as e:
            raise HTTPException(422, str(e)) from None
    finally:
        zd.close()


async def read_uploads(request: Request, limit: int, max_files: int) -> Form:
    """Parse a multipart body into in-memory files and short text fields, counting bytes as they
    come: 413 past ``limit`` for the whole request."""
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
    except FormParserError as e:  # its message says what: "Maximum header size exceeded" for a long name
        raise HTTPException(400, f"malformed multipart body: {str(e).lower() or type(e).__name__}") from None
    except BaseException:
        parts.files.clear()
        raise
    return Form(parts.files, parts.fields)


class _Parts:
    """The multipart parser's callbacks: each part's headers, then its bytes when it is a file."""

    def __init__(self, max_files: int) -> None:
        self.max_files = max_files
        self.files: list[Upload] = []
        self.fields: dict[str, str] = {}
        self.text: bytearray | None = None
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
        self.disposition, self.buf, self.text, self.field, self.name = b"", None, None, "", ""

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
                raise HTTPException(422, f"too many files in one request (at most {self.max_files})")
            self.name = _safe_name(opts[b"filename"].decode("utf-8", "replace"), len(self.files) + 1)
            self.buf = bytearray()
        else:
            self.text = bytearray()

    def part_data(self, data: bytes, start: int, end: int) -> None:
        if self.buf is not None:
            self.buf += data[start:end]
        elif self.text is not None:
            self.text += data[start:end]
            if len(self.text) > MAX_FIELD:
                raise HTTPException(413, f"form field {self.field!r} is over {MAX_FIELD} bytes")

    def part_end(self) -> None:
        if self.buf is not None:
            self.files.append(Upload(self.field, self.name, bytes(self.buf)))
            self.buf = None
        elif self.text is not None:
            self.fields[self.field] = self.text.decode("utf-8", "replace")
            self.text = None
