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
import secrets
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
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
from malvision.io import human_size
from malvision.scan import Scanner, Verdict

__all__ = ["DEFAULT_MAX_UPLOAD", "ServerSettings", "Limiter", "PngStore", "model_card", "create_app", "serve"]

log = logging.getLogger("malvision.server")

DEFAULT_MAX_UPLOAD = 64 * 1024**2
FRAMING = 64 * 1024  # multipart boundaries and part headers allowed on top of the files themselves
STATIC = Path(__file__).with_name("static")
CSP = (
    "default-src 'self'; img-src 'self' blob: data:; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'"
)
_PNG_ID = re.compile(r"[A-Za-z0-9_-]{16,64}")
T = TypeVar("T")


@dataclass(frozen=True)
class ServerSettings:
    """Limits of one server: upload size (bytes), request timeout (s), workers, queue, API key."""

    max_upload: int = DEFAULT_MAX_UPLOAD
    timeout: float = 30.0
    max_concurrent: int = 2
    queue: int = 8
    api_key: str | None = None
    max_files: int = 64
    png_store: int = 64

    def __post_init__(self) -> None:
        for name in ("max_upload", "max_concurrent", "max_files", "png_store"):
            if int(getattr(self, name)) < 1:
                raise MalvisionError(f"server setting {name} must be positive, got {getattr(self, name)}")
        if self.queue < 0:
            raise MalvisionError(f"server setting queue must be 0 or more, got {self.queue}")
        if not self.timeout > 0:
            raise MalvisionError(f"server setting timeout must be positive seconds, got {self.timeout}")
        if self.api_key is not None and len(self.api_key) < 8:
            raise MalvisionError("--api-key must be at least 8 characters")


# -- the queue ----------------------------------------------------------------------------------------
class Limiter:
    """``running`` worker threads and room for ``waiting`` more requests; tickets beyond that get 503."""

    def __init__(self, running: int, waiting: int) -> None:
        self.capacity = running + waiting
        self.pool = ThreadPoolExecutor(running, thread_name_prefix="malvision-infer")
        self._lock = threading.Lock()
        self.admitted = 0
        self.running = 0

    def admit(self) -> Ticket:
        """A ticket, or 503 when ``running + waiting`` requests are already in."""
        with self._lock:
            if self.admitted >= self.capacity:
                raise HTTPException(
                    503,
                    "server busy: all workers and queue places are taken; retry shortly",
                    {"Retry-After": "1"},
                )
            self.admitted += 1
        return Ticket(self)

    def _release(self) -> None:
        with self._lock:
            self.admitted -= 1

    def _count(self, delta: int) -> None:
        with self._lock:
            self.running += delta

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {
                "running": self.running,
                "waiting": self.admitted - self.running,
                "capacity": self.capacity,
            }

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


@dataclass
class Ticket:
    """One admitted request; released once, when its job ends (or at once if it never submitted one)."""

    limiter: Limiter
    submitted: bool = False
    _released: bool = field(default=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def release(self) -> None:
        with self._lock:
            if self._released:
                return
            self._released = True
        self.limiter._release()

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on a worker thread; the ticket is released when it ends, however it ends."""

        def job() -> T:
            self.limiter._count(1)
            try:
                return fn(*args)
            finally:
                self.limiter._count(-1)

        fut: Future[T] = self.limiter.pool.submit(job)
        self.submitted = True
        fut.add_done_callback(lambda _f: self.release())
        return await asyncio.wrap_future(fut)


class PngStore:
    """The last ``capacity`` explanation PNGs, in memory, under unguessable ids."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, png: bytes) -> str:
        key = secrets.token_urlsafe(18)
        with self._lock:
            self._items[key] = png
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
        return key

    def get(self, key: str) -> bytes | None:
        with self._lock:
            return self._items.get(key)


# -- uploads ------------------------------------------------------------------------------------------
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


# -- the model card -------------------------------------------------------------------------------------
def model_card(scanner: Scanner, *, full_path: bool = False, with_hashes: bool = False) -> dict[str, Any]:
    """What ``malvision info --json`` shows for the scanner's model (file name only unless ``full_path``)."""
    from malvision.card import model_summary

    return model_summary(scanner.checkpoint, scanner.model_path, full_path=full_path, with_ids=with_hashes)


# -- the app -----------------------------------------------------------------------------------------
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
    from malvision.explain import explain_bytes, render_png

    settings = settings or ServerSettings()
    scanner = Scanner(scanner_or_model) if isinstance(scanner_or_model, str | Path) else scanner_or_model
    limiter = Limiter(settings.max_concurrent, settings.queue)
    store = PngStore(settings.png_store)
    key_header = APIKeyHeader(
        name="X-API-Key", auto_error=False, description="needed when the server has --api-key"
    )

    async def require_key(key: str | None = Depends(key_header)) -> None:
        if settings.api_key is None:
            return
        if key is None or not hmac.compare_digest(key.encode(), settings.api_key.encode()):
            raise HTTPException(401, "missing or wrong API key (send it in the X-API-Key header)")

    app = FastAPI(
        title="malvision",
        summary="Malware detection from a file's bytes seen as an image and as a sequence.",
        version=_version(),
        responses={500: {"model": ErrorOut, "description": "internal error"}},
    )
    app.state.scanner = scanner
    app.state.settings = settings
    app.state.limiter = limiter
    app.state.pngs = store
    app.add_middleware(_SecurityHeaders)

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

    async def guarded(job: Callable[[Ticket], Awaitable[T]]) -> T:
        ticket = limiter.admit()
        try:
            async with asyncio.timeout(settings.timeout):
                return await job(ticket)
        except TimeoutError:
            raise HTTPException(
                504,
                f"request took longer than {settings.timeout:g} s (try a smaller file, or raise --timeout)",
            ) from None
        finally:
            if not ticket.submitted:
                ticket.release()

    async def files_of(request: Request, names: tuple[str, ...]) -> list[Upload]:
        uploads = await read_uploads(request, settings.max_upload, settings.max_files)
        files = [u for u in uploads if u.field in names]
        if not files:
            raise HTTPException(400, f"no file in the upload; send it in the multipart field {names[0]!r}")
        return files

    @app.post(
        "/v1/scan",
        dependencies=[Depends(require_key)],
        openapi_extra=_multipart("files", many=True),
        responses={200: {"model": list[Verdict], "description": "one record per file"}} | _ERRORS,
        tags=["scan"],
    )
    async def scan(request: Request) -> JSONResponse:
        """Verdicts for one or several files (field ``files``): the records of ``malvision scan --json``."""

        async def job(ticket: Ticket) -> list[dict[str, Any]]:
            files = await files_of(request, ("files", "file"))
            return await ticket.run(_scan_all, scanner, files)

        return JSONResponse(await guarded(job))

    @app.post(
        "/v1/explain",
        dependencies=[Depends(require_key)],
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
            files = await files_of(request, ("file", "files"))
            if len(files) != 1:
                raise HTTPException(400, f"explain takes one file, got {len(files)}")
            return await ticket.run(work, files[0])

        record, png = await guarded(job)
        record["png"] = f"/v1/explain/{store.put(png)}.png"
        return JSONResponse(record)

    @app.get(
        "/v1/explain/{png_id}.png",
        response_class=Response,
        responses={200: {"content": {"image/png": {}}}, 404: {"model": ErrorOut}},
        tags=["explain"],
    )
    async def explain_png(png_id: str) -> Response:
        """The heat-map PNG of a recent explanation (the last few are kept, in memory)."""
        png = store.get(png_id) if _PNG_ID.fullmatch(png_id) else None
        if png is None:
            raise HTTPException(404, "no such explanation image (only the most recent ones are kept)")
        return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})

    @app.get("/v1/model", dependencies=[Depends(require_key)], tags=["model"])
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
        } | limiter.stats()

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    return app


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
