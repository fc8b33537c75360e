"""HTTP API and web page over one loaded ``Scanner``: upload limits, timeouts and a bounded queue.

    POST /v1/scan                   multipart field ``files`` (one or more; sample zips opened in memory
                                    with ``zip_password``) -> list of verdict records
    POST /v1/explain                multipart field ``file`` (or a zip, its ``entry`` and ``zip_password``)
                                    -> explanation record + link to its PNG
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
import os
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.security import APIKeyHeader
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline

from malvision.bundled import DEFAULT_MODEL
from malvision.errors import ConversionError, InputError, MalvisionError
from malvision.io import is_zip
from malvision.scan import Scanner
from malvision.server.http import (
    ERRORS,
    ZIP_PASSWORD,
    ErrorOut,
    SecurityHeaders,
    UploadVerdict,
    add_error_handlers,
    multipart,
)
from malvision.server.limits import Limiter, PngStore, ServerSettings, Ticket
from malvision.server.uploads import (
    UNZIP_FACTOR,
    Form,
    Upload,
    read_uploads,
    zip_entries,
    zip_entry,
)

__all__ = ["STATIC", "model_card", "create_app", "serve"]


STATIC = Path(__file__).parent.parent / "static"
_PNG_ID = re.compile(r"[A-Za-z0-9_-]{16,64}")
_KEY_HEADER = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="needed when the server has --api-key"
)
T = TypeVar("T")


def model_card(scanner: Scanner, *, full_path: bool = False, with_hashes: bool = False) -> dict[str, Any]:
    """What ``malvision info --json`` shows for the scanner's model (file name only unless ``full_path``)."""
    from malvision.card import model_summary

    return model_summary(scanner.checkpoint, scanner.model_path, full_path=full_path, with_ids=with_hashes)


def create_app(scanner_or_model: Any = DEFAULT_MODEL, settings: ServerSettings | None = None) -> FastAPI:
    """The FastAPI app over a ``Scanner`` (or a model reference, loaded once here)."""
    settings = settings or ServerSettings()
    scanner = Scanner(scanner_or_model) if isinstance(scanner_or_model, str | Path) else scanner_or_model
    svc = _Service(scanner, settings)
    app = FastAPIOffline(  # /docs and /redoc from files the package holds, not a CDN: labs are offline
        title="malvision",
        summary="Malware detection from a file's bytes seen as an image and as a sequence.",
        version=_version(),
        responses={500: {"model": ErrorOut, "description": "internal error"}},
    )
    app.state.scanner = scanner
    app.state.settings = settings
    app.state.limiter = svc.limiter
    app.state.pngs = svc.pngs
    app.add_middleware(SecurityHeaders)
    add_error_handlers(app)
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

    def auth(self) -> list[Any]:
        """The routes' key check: none (and none in the schema) when the server has no API key."""
        return [Depends(self.require_key)] if self.settings.api_key is not None else []

    async def require_key(self, key: str | None = Depends(_KEY_HEADER)) -> None:
        """401 unless the request carries the server's API key."""
        expected = self.settings.api_key or ""
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

    async def form(self, request: Request, names: tuple[str, ...]) -> tuple[list[Upload], dict[str, str]]:
        """The uploaded files in the multipart fields ``names`` (400 when there is none), and the
        body's text fields."""
        form: Form = await read_uploads(request, self.settings.max_upload, self.settings.max_files)
        files = [u for u in form.files if u.field in names]
        if not files:
            raise HTTPException(400, f"no file in the upload; send it in the multipart field {names[0]!r}")
        return files, form.fields


def _add_scan_routes(app: FastAPI, svc: _Service) -> None:
    """``POST /v1/scan``, ``POST /v1/explain`` and the explanation PNGs."""
    from malvision.explain import explain_bytes, methods_for, render_png

    scanner, settings = svc.scanner, svc.settings
    methods = methods_for(scanner.checkpoint.model, scanner.spec.kind)

    @app.post(
        "/v1/scan",
        dependencies=svc.auth(),
        openapi_extra=multipart("files", settings.max_files, {"zip_password": ZIP_PASSWORD}),
        responses={200: {"model": list[UploadVerdict], "description": "one record per file"}} | ERRORS,
        tags=["scan"],
    )
    async def scan(request: Request) -> JSONResponse:
        """Verdicts for one or several files (field ``files``): the records of ``malvision scan --json``;
        with ``zip_password``, each uploaded zip gives one record per entry (``name.zip!entry``). A file
        that cannot be read gets ``{"path", "error"}`` and the others go on. Every record also names the
        uploaded file it is of, ``upload`` (its place in the request, from 0), and a zip entry's name in
        the zip, ``entry``."""

        async def job(ticket: Ticket) -> list[dict[str, Any]]:
            files, fields = await svc.form(request, ("files", "file"))
            return await ticket.run(_scan_all, scanner, files, fields.get("zip_password") or None, settings)

        return JSONResponse(await svc.guarded(job))

    @app.post(
        "/v1/explain",
        dependencies=svc.auth(),
        openapi_extra=multipart(
            "file",
            None,
            {
                "zip_password": ZIP_PASSWORD,
                "entry": "with a zip: the entry to explain (its name in the zip)",
            },
        ),
        responses=ERRORS | {404: {"model": ErrorOut, "description": "no such entry in the zip"}},
        tags=["explain"],
    )
    async def explain(
        request: Request,
        top_k: int = Query(5, ge=1, le=50, description="how many byte ranges or features"),
        method: str = Query(
            "ig",
            description="attribution method (a fitted model measures by occlusion whatever is asked)",
            json_schema_extra={"enum": list(methods)},
        ),
        target: str | None = Query(
            None,
            description="class to explain (default: malware for a detector, the family named for a family model)",
            json_schema_extra={"enum": list(scanner.classes)},
        ),
    ) -> JSONResponse:
        """Verdict (with ``band`` and ``threshold``), what drove it (byte ranges, or named features with
        the bytes they come from) and a link to the PNG: the byte plot with sections, and the attribution
        over or beside it. A file that cannot be explained (empty, unconvertible) still gets its verdict,
        with ``explained`` false and the reason in ``note``."""
        if method not in methods:
            raise HTTPException(
                422, f"method {method!r} does not apply to this model; use one of {', '.join(methods)}"
            )

        def work(upload: Upload, entry: str | None, password: str) -> tuple[dict[str, Any], bytes | None]:
            name, data = upload.filename, upload.data
            if entry:  # decrypting and inflating on the worker thread, not the event loop
                name, data = zip_entry(upload, entry, password, UNZIP_FACTOR * settings.max_upload)
            try:
                expl = explain_bytes(scanner, name, data, top_k=top_k, method=method, target=target)
            except (InputError, ConversionError) as e:
                return scanner.scan_bytes(name, data).to_dict() | {"explained": False, "note": str(e)}, None
            return expl.to_dict() | {"explained": True}, render_png(expl, data)

        async def job(ticket: Ticket) -> tuple[dict[str, Any], bytes | None]:
            files, fields = await svc.form(request, ("file", "files"))
            if len(files) != 1:
                raise HTTPException(400, f"explain takes one file, got {len(files)}")
            return await ticket.run(work, files[0], fields.get("entry"), fields.get("zip_password") or "")

        record, png = await svc.guarded(job)
        record["png"] = f"/v1/explain/{svc.pngs.put(png)}.png" if png is not None else None
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

    @app.get("/v1/model", dependencies=svc.auth(), tags=["model"], responses={401: ERRORS[401]})
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

    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")


def _scan_all(
    scanner: Scanner, files: list[Upload], password: str | None, settings: ServerSettings
) -> list[dict[str, Any]]:
    """One record per file, or per zip entry when ``password`` is given; the batch goes on past errors.
    Each record says which uploaded file it is of (``upload``, from 0) and, for a zip entry, the entry's
    name in the zip (``entry``): a client maps records to its files by them, not by name, which the
    server shortens and cleans."""
    items: list[tuple[int, str, str | None, bytes | str]] = []
    budget = UNZIP_FACTOR * settings.max_upload
    for k, u in enumerate(files):
        if password is not None and is_zip(u.data):
            entries = zip_entries(u, password, settings.max_files - len(items), max(budget, 1))
            # the unzip budget is shared by the request's zips
            budget -= sum(len(x) for _, _, x in entries if isinstance(x, bytes))
            items += [(k, *e) for e in entries]
        else:
            items.append((k, u.filename, None, u.data))
        if len(items) > settings.max_files:
            raise HTTPException(
                422, f"too many files in one request (at most {settings.max_files}, zip entries counted)"
            )
    out: list[dict[str, Any]] = []
    for k, name, entry, item in items:
        where = {"upload": k} | ({"entry": entry} if entry is not None else {})
        if isinstance(item, str):
            out.append({"path": name, "error": item} | where)
            continue
        try:
            out.append(scanner.scan_bytes(name, item).to_dict() | where)
        except MalvisionError as e:  # the batch goes on; this file's record says why
            out.append({"path": name, "error": str(e)} | where)
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
    import socket

    import uvicorn

    try:  # an address that cannot be had is one line now, not uvicorn's log after the model loads
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        with socket.create_server((host, port), family=family):
            pass
    except OSError as e:
        raise MalvisionError(f"cannot listen on {host}:{port} ({e.strerror or e})") from None
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
