"""Samples as records, and the raw datasets that hand out their bytes one at a time."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Self

from malvision.errors import DatasetError
from malvision.io import Source

__all__ = ["Record", "Closing", "RawDataset", "ConcatDataset"]


@dataclass(frozen=True)
class Record:
    """One sample: its id, class label, group (family or source package) and where its bytes live.

    ``size`` is the byte count of the sample as ``open`` returns it (estimated for BIG2015 ``.bytes``
    dumps until opened); ``plot_width`` is set when the sample already is a byte plot (Malimg PNG).
    ``collection`` is where a malware sample was collected (a sample zip, a repository): source-disjoint
    evaluation never trains and tests on one collection. ``pe_type`` (``32-bit GUI``, ``64-bit console
    DLL``, ...) is read from the PE headers when a cache is built, and ``unknown`` is why a scan would
    call the file unknown rather than score it (``Prepared.triage``; None: scan scores it).
    """

    id: str
    label: str
    group: str | None
    source: str
    size: int
    sha256: str | None
    plot_width: int | None = None
    collection: str | None = None
    pe_type: str | None = None
    unknown: str | None = None


class Closing:
    """A dataset as a context manager: ``close`` on the way out (a no-op unless a reader holds files)."""

    def close(self) -> None:
        """Release open files (zip readers); nothing to do for folders and caches."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RawDataset(Closing):
    """Labelled samples read as bytes: ``records[i]`` describes sample ``i``, ``open(i)`` reads it.

    ``skipped`` lists (name, message) for entries the reader refused while listing (a bad PNG header,
    an unsafe zip entry name, a CSV row without its file); cache builders report them as failures.
    """

    format: ClassVar[str] = "raw"

    def __init__(self, name: str, records: list[Record] | None = None) -> None:
        self.name = name
        self.records: list[Record] = records if records is not None else []
        self.skipped: list[tuple[str, str]] = []
        self.strict = False

    def __len__(self) -> int:
        return len(self.records)

    def open(self, i: int) -> Source:
        """The bytes of sample ``i``; a ``MalvisionError`` when they cannot be read."""
        raise NotImplementedError

    @property
    def classes(self) -> list[str]:
        """Sorted distinct labels; a label's index in this list is its class id."""
        return sorted({r.label for r in self.records})

    def _skip(self, name: str, message: str) -> None:
        """Refuse one entry: an error in strict mode, else remembered in ``skipped``."""
        if self.strict:
            raise DatasetError(message if message.startswith(name) else f"{name}: {message}")
        self.skipped.append((name, message))

    def _require_records(self, where: str) -> None:
        if not self.records:
            first = f" (first problem: {self.skipped[0][1]})" if self.skipped else ""
            raise DatasetError(f"{where}: no samples found{first}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {len(self)} samples)"


class ConcatDataset(RawDataset):
    """Several raw datasets read as one; later samples whose sha256 was already seen are skipped."""

    format = "concat"

    def __init__(self, parts: Sequence[RawDataset], name: str | None = None) -> None:
        super().__init__(name or " + ".join(p.name for p in parts))
        self.parts = list(parts)
        self._where: list[tuple[int, int]] = []
        seen: dict[str, str] = {}
        for k, part in enumerate(self.parts):
            self.skipped.extend(part.skipped)
            for j, rec in enumerate(part.records):
                if rec.sha256 is not None:
                    if rec.sha256 in seen:
                        self.skipped.append((rec.source, f"{rec.source}: same sha256 as {seen[rec.sha256]}"))
                        continue
                    seen[rec.sha256] = rec.source
                self.records.append(rec)
                self._where.append((k, j))

    def open(self, i: int) -> Source:
        k, j = self._where[i]
        return self.parts[k].open(j)

    def close(self) -> None:
        for part in self.parts:
            part.close()
