"""What a scan gives for each file: a ``Verdict``, or a ``ScanError`` when the file could not be read."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["BANDS", "FIELDS", "Verdict", "ScanError", "band_of"]

FIELDS = (  # every field of a record, in the order --csv writes them
    "path", "sha256", "size", "verdict", "band", "score", "threshold", "family", "family_score", "reason",
)  # fmt: skip
BANDS = ("clean", "suspicious", "malicious")


def band_of(score: float, points: tuple[float, float] | None) -> str | None:
    """``clean`` below the card's 1%-FPR point, ``malicious`` from its 0.1%-FPR point, ``suspicious``
    between; None when the card has no such points."""
    if points is None:
        return None
    suspicious, malicious = points
    return BANDS[2] if score >= malicious else BANDS[1] if score >= suspicious else BANDS[0]


@dataclass(frozen=True)
class Verdict:
    """One scanned file: ``verdict`` is malware, benign or unknown; ``score`` the calibrated malware
    probability, ``threshold`` what it was compared with, ``band`` where it falls among the card's
    false-positive points (``band_of``)."""

    path: str
    sha256: str | None
    size: int | None
    verdict: str
    score: float | None
    family: str | None
    reason: str | None
    family_score: float | None = None
    threshold: float | None = None
    band: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def score_text(self) -> str:
        """``0.8835, threshold 0.9757: below``: the score with what it was compared with."""
        if self.score is None:
            return ""
        if self.threshold is None:
            return f"{self.score:.4f}"
        side = "at or above" if self.score >= self.threshold else "below"
        return f"{self.score:.4f}, threshold {self.threshold:.4f}: {side}"


@dataclass(frozen=True)
class ScanError:
    """A file that could not be scanned (unreadable, too large, ...): the run goes on."""

    path: str
    message: str
