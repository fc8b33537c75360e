"""The one inference path: bytes -> ``convert.prepare`` -> triage -> model (torch or ONNX) -> ``Verdict``.

``scanner.Scanner`` loads a model once and scores full batches while ``readers`` read, convert and
triage files on worker threads (or processes); ``verdict`` holds what comes out for each file.
"""

from __future__ import annotations

from malvision.scan.readers import Preparer
from malvision.scan.scanner import PROCESS_AFTER, Scanner
from malvision.scan.verdict import BANDS, FIELDS, ScanError, Verdict, band_of

__all__ = ["BANDS", "FIELDS", "band_of", "PROCESS_AFTER", "Preparer", "ScanError", "Scanner", "Verdict"]
