"""The ``malvision`` command: parses, calls the library, prints. Errors become one line and an exit code.

``app`` holds the shared options and ``main``; the commands live in rooms as users think of them:
``data`` (convert, data info, data build), ``benchmark``, ``experiments`` (train, evaluate, gradients,
train-detector, bundle, models) and ``inference`` (scan, explain, serve, export, info); ``render``
draws their tables.
"""

from __future__ import annotations

from malvision.cli import benchmark, data, experiments, inference, reproduce  # noqa: F401  (importing registers the commands)
from malvision.cli.app import EXIT_ERROR, EXIT_FOUND, EXIT_INTERRUPTED, EXIT_OK, app, main, parse_size

__all__ = ["EXIT_ERROR", "EXIT_FOUND", "EXIT_INTERRUPTED", "EXIT_OK", "app", "main", "parse_size"]
