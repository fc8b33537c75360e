"""malvision: detect and classify malware from a file's bytes seen as an image and as a sequence."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from malvision.errors import MalvisionError

try:
    __version__ = version("malvision")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0"

__all__ = ["MalvisionError", "Scanner", "Verdict", "__version__"]


def __getattr__(name: str) -> object:
    # The scanner pulls in torch: import it only when asked for.
    if name in ("Scanner", "Verdict"):
        from malvision import scan

        return getattr(scan, name)
    raise AttributeError(name)
