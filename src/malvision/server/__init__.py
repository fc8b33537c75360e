"""The HTTP API and web page: ``app`` (routes over one loaded ``Scanner``), ``http`` (security headers,
JSON errors, multipart schemas), ``limits`` (settings, the ticket queue, the PNG store) and ``uploads``
(multipart bodies and sample zips read into memory under a byte limit)."""

from __future__ import annotations

from malvision.server.app import STATIC, create_app, model_card, serve
from malvision.server.limits import DEFAULT_MAX_UPLOAD, Limiter, PngStore, ServerSettings

__all__ = [
    "DEFAULT_MAX_UPLOAD",
    "STATIC",
    "Limiter",
    "PngStore",
    "ServerSettings",
    "create_app",
    "model_card",
    "serve",
]
