"""What the report scripts read: a `malvision train-detector` run folder and the cache it was trained on."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from malvision.data.cache import CachedDataset
from malvision.errors import MalvisionError


def load_run(run: Path, cache: Path) -> tuple[dict[str, Any], dict[str, Any], CachedDataset]:
    """(card, out-of-fold scores, dataset); a one-line error and exit 1 for a folder or cache that
    is not a run, or not the run's cache."""
    try:
        card = json.loads((run / "card.json").read_text())
        oof = json.loads((run / "oof_scores.json").read_text())
    except (OSError, ValueError) as e:
        sys.exit(f"error: {run} is not a `malvision train-detector` run folder ({e})")
    try:
        ds = CachedDataset(cache)
    except MalvisionError as e:
        sys.exit(f"error: {e}")
    if ds.manifest_hash != card.get("data", {}).get("manifest_hash"):
        sys.exit(f"error: {cache} is not the cache {run} was trained on")
    return card, oof, ds
