"""The HTTP plumbing every route shares: security headers, the JSON error shape and its handlers, and
the OpenAPI description of multipart bodies."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from malvision.errors import MalvisionError
from malvision.scan.verdict import Verdict

__all__ = [
    "CSP", "DOCS_CSP", "DOCS_PAGES", "ERRORS", "ZIP_PASSWORD", "ErrorOut", "SecurityHeaders", "UploadVerdict", "add_error_handlers", "multipart",
]  # fmt: skip

log = logging.getLogger("malvision.server")

CSP = (
    "default-src 'self'; img-src 'self' blob: data:; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'"
)
# Swagger UI and ReDoc start from an inline script, style themselves inline and show fetched images as blob:
# URLs; every file is still our own
DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' blob: data:; worker-src 'self' blob:; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'"
)
DOCS_PAGES = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc"})


class ErrorOut(BaseModel):
    """Every error answer."""

    error: str


@dataclass(frozen=True)
class UploadVerdict(Verdict):
    """A record of ``POST /v1/scan``: ``scan --json``'s, with the uploaded file it is of (``upload``, its
    place in the request from 0) and a zip entry's name in the zip (``entry``)."""

    upload: int = 0
    entry: str | None = None


def multipart(field_name: str, max_files: int | None, extra: dict[str, str]) -> dict[str, Any]:
    """The request body of a multipart route: the file field (an array when ``max_files``), text fields."""
    item = {"type": "string", "format": "binary"}
    many = {"type": "array", "items": item, "minItems": 1, "maxItems": max_files}
    props: dict[str, Any] = {field_name: many if max_files else item}
    # Text fields carry no "type": in multipart every value is text ("1501" is a password too). Their
    # size counts toward the upload limit, and one over MAX_FIELD bytes is refused with 413.
    props |= {k: {"description": v} for k, v in extra.items()}
    schema = {"type": "object", "properties": props, "required": [field_name]}
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": schema}}}}


ZIP_PASSWORD = "open uploaded .zip files with this password (e.g. infected) and judge their entries"


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut, "description": text}
    for code, text in (
        (400, "malformed multipart body, or no file in it"),
        (401, "missing or wrong X-API-Key (only when the server has an API key)"),
        (413, "upload over the size limit"),
        (415, "not multipart/form-data"),
        (422, "input cannot be handled (e.g. a wrong zip password)"),
        (503, "all workers and queue places taken"),
        (504, "request took longer than the timeout"),
    )
}


class SecurityHeaders:
    """Pure ASGI middleware: nosniff everywhere, a strict CSP everywhere, one that lets the API docs' inline
    start-up script run on /docs and /redoc; none lets a page load anything from another origin."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path, root = str(scope.get("path", "")), str(scope.get("root_path", ""))
        if root and path.startswith(root):  # mounted or behind a proxy: the path below the app's root
            path = path[len(root) :]
        csp = DOCS_CSP if path in DOCS_PAGES else CSP

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("Referrer-Policy", "no-referrer")
                headers.setdefault("Content-Security-Policy", csp)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def add_error_handlers(app: FastAPI) -> None:
    """Every error answer is JSON ``{"error": "..."}``; no traceback reaches a client."""

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail)}, exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        msgs = [
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', 'invalid')}" for e in exc.errors()
        ]
        return JSONResponse({"error": "invalid request: " + "; ".join(msgs[:3])}, 422)

    @app.exception_handler(MalvisionError)
    async def bad_input(_request: Request, exc: MalvisionError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, 422)

    @app.exception_handler(Exception)
    async def crash(request: Request, exc: Exception) -> JSONResponse:
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return JSONResponse({"error": "internal error (the server log has the details)"}, 500)
