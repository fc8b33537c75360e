"""What a scan gives for each file: a ``Verdict``, or a ``ScanError`` when the file could not be read."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["FIELDS", "Verdict", "ScanError"]

FIELDS = ("path", "sha256", "size", "verdict", "score", "family", "reason")


@dataclass(frozen=True)
class Verdict:
    """One scanned file: ``verdict`` is malware, benign or unknown; ``score`` the malware probability."""

    path: str
    sha256: str | None
    size: int | None
    verdict: str
    score: float | None
    family: str | None
    reason: str | None
    family_score: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ScanError:
    """A file that could not be scanned (unreadable, too large, ...): the run goes on."""

    path: str
    message: str
