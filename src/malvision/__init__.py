"""malvision: detect and classify malware from a file's bytes seen as an image and as a sequence."""

from __future__ import annotations

from malvision.errors import MalvisionError

__all__ = ["MalvisionError", "ScanError", "Scanner", "Verdict", "__version__"]


def __getattr__(name: str) -> object:
    # Looked up when asked for: the scanner's imports, and importlib.metadata (tens of ms of every
    # command's start) for the version.
    if name in ("ScanError", "Scanner", "Verdict"):
        from malvision import scan

        return getattr(scan, name)
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("malvision")
        except PackageNotFoundError:  # running from a source tree
            return "0.0.0"
    raise AttributeError(name)
