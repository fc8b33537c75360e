"""HTTP API and web page over one loaded ``Scanner``: upload limits, timeouts and a bounded queue.

    POST /v1/scan                   multipart field ``files`` (one or more) -> list of verdict records
    POST /v1/explain                multipart field ``file`` -> explanation record + link to its PNG
    GET  /v1/explain/{id}.png       the heat-map PNG (kept in a bounded in-memory store)
    GET  /v1/model                  the model card (as ``malvision info --json``)
    GET  /healthz                   liveness, queue state
    GET  /                          the web page (static files, no CDN)

Uploads are read into memory while their bytes are counted (413 as soon as the limit is passed, or at
once from Content-Length), never written to disk, and dropped with the request. Each request holds one
of ``max_concurrent + queue`` tickets from before its upload is read until its inference ends (503 when
none is left): that bounds both the work and the memory held by uploads. Inference runs on
``max_concurrent`` worker threads; a request over ``timeout`` seconds gets 504 (its inference, if it
already started, finishes in the background and keeps its ticket until then). Errors are JSON
``{"error": "..."}``; no traceback ever reaches a client. The PNG links are unguessable ids
(capability URLs) and need no API key, so the page can show them in an ``<img>``.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Literal, TypeVar

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.security import APIKeyHeader
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from malvision.bundled import DEFAULT_MODEL
from malvision.errors import MalvisionError
from malvision.scan import Scanner, Verdict
from malvision.server.limits import Limiter, PngStore, ServerSettings, Ticket
from malvision.server.uploads import Upload, read_uploads

__all__ = ["STATIC", "model_card", "create_app", "serve"]

log = logging.getLogger("malvision.server")

STATIC = Path(__file__).parent.parent / "static"
CSP = (
    "default-src 'self'; img-src 'self' blob: data:; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'"
)
_PNG_ID = re.compile(r"[A-Za-z0-9_-]{16,64}")
_KEY_HEADER = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="needed when the server has --api-key"
)
T = TypeVar("T")


def model_card(scanner: Scanner, *, full_path: bool = False, with_hashes: bool = False) -> dict[str, Any]:
    """What ``malvision info --json`` shows for the scanner's model (file name only unless ``full_path``)."""
    from malvision.card import model_summary

    return model_summary(scanner.checkpoint, scanner.model_path, full_path=full_path, with_ids=with_hashes)


class ErrorOut(BaseModel):
    """Every error answer."""

    error: str


def _multipart(field_name: str, many: bool) -> dict[str, Any]:
    item = {"type": "string", "format": "binary"}
    prop = {"type": "array", "items": item} if many else item
    schema = {"type": "object", "properties": {field_name: prop}, "required": [field_name]}
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": schema}}}}


_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut, "description": text}
    for code, text in (
        (401, "missing or wrong X-API-Key"),
        (413, "upload over the size limit"),
        (415, "not multipart/form-data"),
        (422, "input cannot be handled"),
        (503, "all workers and queue places taken"),
        (504, "request took longer than the timeout"),
    )
}


class _SecurityHeaders:
    """Pure ASGI middleware: nosniff everywhere, a strict CSP (no CDN) on everything but /docs."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        strict = not str(scope.get("path", "")).startswith(("/docs", "/redoc"))

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("Referrer-Policy", "no-referrer")
                if strict:
                    headers.setdefault("Content-Security-Policy", CSP)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def create_app(scanner_or_model: Any = DEFAULT_MODEL, settings: ServerSettings | None = None) -> FastAPI:
    """The FastAPI app over a ``Scanner`` (or a model reference, loaded once here)."""
    settings = settings or ServerSettings()
    scanner = Scanner(scanner_or_model) if isinstance(scanner_or_model, str | Path) else scanner_or_model
    svc = _Service(scanner, settings)
    app = FastAPI(
        title="malvision",
        summary="Malware detection from a file's bytes seen as an image and as a sequence.",
        version=_version(),
        responses={500: {"model": ErrorOut, "description": "internal error"}},
    )
    app.state.scanner = scanner
    app.state.settings = settings
    app.state.limiter = svc.limiter
    app.state.pngs = svc.pngs
    app.add_middleware(_SecurityHeaders)
    _add_error_handlers(app)
    _add_scan_routes(app, svc)
    _add_info_routes(app, svc)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


class _Service:
    """What the routes share: the scanner, the settings, the ticket queue and the PNG store."""

    def __init__(self, scanner: Scanner, settings: ServerSettings) -> None:
        self.scanner, self.settings = scanner, settings
        self.limiter = Limiter(settings.max_concurrent, settings.queue)
        self.pngs = PngStore(settings.png_store)

    async def require_key(self, key: str | None = Depends(_KEY_HEADER)) -> None:
        """401 unless the request carries the server's API key (when it has one)."""
        expected = self.settings.api_key
        if expected is None:
            return
        if key is None or not hmac.compare_digest(key.encode(), expected.encode()):
            raise HTTPException(401, "missing or wrong API key (send it in the X-API-Key header)")

    async def guarded(self, job: Callable[[Ticket], Awaitable[T]]) -> T:
        """Run ``job`` holding a ticket (503 when none is left), within the timeout (504 beyond)."""
        ticket = self.limiter.admit()
        try:
            async with asyncio.timeout(self.settings.timeout):
                return await job(ticket)
        except TimeoutError:
            raise HTTPException(
                504,
                f"request took longer than {self.settings.timeout:g} s (try a smaller file, or raise --timeout)",
            ) from None
        finally:
            if not ticket.submitted:
                ticket.release()

    async def files_of(self, request: Request, names: tuple[str, ...]) -> list[Upload]:
        """The uploaded files in the multipart fields ``names`` (400 when there is none)."""
        uploads = await read_uploads(request, self.settings.max_upload, self.settings.max_files)
        files = [u for u in uploads if u.field in names]
        if not files:
            raise HTTPException(400, f"no file in the upload; send it in the multipart field {names[0]!r}")
        return files


def _add_error_handlers(app: FastAPI) -> None:
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


def _add_scan_routes(app: FastAPI, svc: _Service) -> None:
    """``POST /v1/scan``, ``POST /v1/explain`` and the explanation PNGs."""
    from malvision.explain import explain_bytes, render_png

    scanner = svc.scanner

    @app.post(
        "/v1/scan",
        dependencies=[Depends(svc.require_key)],
        openapi_extra=_multipart("files", many=True),
        responses={200: {"model": list[Verdict], "description": "one record per file"}} | _ERRORS,
        tags=["scan"],
    )
    async def scan(request: Request) -> JSONResponse:
        """Verdicts for one or several files (field ``files``): the records of ``malvision scan --json``."""

        async def job(ticket: Ticket) -> list[dict[str, Any]]:
            files = await svc.files_of(request, ("files", "file"))
            return await ticket.run(_scan_all, scanner, files)

        return JSONResponse(await svc.guarded(job))

    @app.post(
        "/v1/explain",
        dependencies=[Depends(svc.require_key)],
        openapi_extra=_multipart("file", many=False),
        responses=_ERRORS,
        tags=["explain"],
    )
    async def explain(
        request: Request,
        top_k: int = Query(5, ge=1, le=50, description="how many byte ranges"),
        method: Literal["ig", "gradient", "gradcam"] = Query("ig", description="attribution method"),
        target: str | None = Query(None, description="class to explain (default: the verdict's)"),
    ) -> JSONResponse:
        """Verdict, top byte ranges with their PE sections, and a link to the heat-map PNG (field ``file``)."""

        def work(u: Upload) -> tuple[dict[str, Any], bytes]:
            expl = explain_bytes(scanner, u.filename, u.data, top_k=top_k, method=method, target=target)
            return expl.to_dict(), render_png(expl, u.data)

        async def job(ticket: Ticket) -> tuple[dict[str, Any], bytes]:
            files = await svc.files_of(request, ("file", "files"))
            if len(files) != 1:
                raise HTTPException(400, f"explain takes one file, got {len(files)}")
            return await ticket.run(work, files[0])

        record, png = await svc.guarded(job)
        record["png"] = f"/v1/explain/{svc.pngs.put(png)}.png"
        return JSONResponse(record)

    @app.get(
        "/v1/explain/{png_id}.png",
        response_class=Response,
        responses={200: {"content": {"image/png": {}}}, 404: {"model": ErrorOut}},
        tags=["explain"],
    )
    async def explain_png(png_id: str) -> Response:
        """The heat-map PNG of a recent explanation (the last few are kept, in memory)."""
        png = svc.pngs.get(png_id) if _PNG_ID.fullmatch(png_id) else None
        if png is None:
            raise HTTPException(404, "no such explanation image (only the most recent ones are kept)")
        return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})


def _add_info_routes(app: FastAPI, svc: _Service) -> None:
    """``GET /v1/model``, ``/healthz`` and the page at ``/``."""
    scanner, settings = svc.scanner, svc.settings

    @app.get("/v1/model", dependencies=[Depends(svc.require_key)], tags=["model"])
    async def model(
        training_sha256: bool = Query(False, description="list the training files' sha256"),
    ) -> dict:
        """The model card: architecture, input, classes, metrics, threshold; and the server's limits."""
        return model_card(scanner, with_hashes=training_sha256) | {
            "threshold": scanner.threshold,
            "backend": scanner.backend,
            "limits": {
                "max_upload": settings.max_upload,
                "max_files": settings.max_files,
                "timeout": settings.timeout,
                "max_concurrent": settings.max_concurrent,
                "queue": settings.queue,
            },
        }

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict:
        """Liveness: the model is loaded; queue state; whether an API key is needed."""
        return {
            "status": "ok",
            "model": scanner.checkpoint.model_name,
            "auth": settings.api_key is not None,
        } | svc.limiter.stats()

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")


def _scan_all(scanner: Scanner, files: list[Upload]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for u in files:
        try:
            out.append(scanner.scan_bytes(u.filename, u.data).to_dict())
        except MalvisionError as e:  # the batch goes on; this file's record says why
            out.append({"path": u.filename, "error": str(e)})
    return out


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("malvision")
    except Exception:  # not installed
        return "unknown"


def serve(
    model: str | Path = DEFAULT_MODEL,
    settings: ServerSettings | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    log_level: str = "info",
) -> None:
    """Load the model once and serve until interrupted (uvicorn)."""
    import uvicorn

    settings = settings or ServerSettings()
    import torch

    # Each running inference gets its share of the cores instead of all of them fighting for every core.
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // settings.max_concurrent))
    app = create_app(model, settings)
    # Connections beyond a few per ticket are refused by uvicorn itself (503) before any body is read.
    try:
        uvicorn.run(
            app,
            host=host,
            port=port,
            log_level=log_level,
            server_header=False,
            limit_concurrency=4 * (settings.max_concurrent + settings.queue) + 16,
            timeout_keep_alive=5,
        )
    finally:
        app.state.limiter.close()
