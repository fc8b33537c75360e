"""Models shipped inside the package, and how a model reference becomes a checkpoint path."""

from __future__ import annotations

from pathlib import Path

from malvision.errors import CheckpointError
from malvision.io import is_dir

__all__ = ["WEIGHTS_DIR", "BUNDLED", "DEFAULT_MODEL", "RUN_MODELS", "resolve_checkpoint"]

WEIGHTS_DIR = Path(__file__).with_name("weights")
# name -> file under weights/; each is trained by a command recorded in its model card.
BUNDLED: dict[str, str] = {
    "default": "pe-features.pt",  # the detector that finds the most unseen families at 0.1% FPR
    "pe-features": "pe-features.pt",
    "pe-detector": "pe-detector.pt",  # the best byte-level network (an MLP on the file's histograms)
    "big2015-opcodes": "big2015-opcodes.pt",
}
DEFAULT_MODEL = "default"
# What a run folder's model is, first found first: `train-detector`'s model.pt (with its card), a
# bundle left beside a run, `train`'s best.pt.
RUN_MODELS = ("model.pt", "bundled.pt", "best.pt")


def resolve_checkpoint(ref: str | Path) -> Path:
    """A bundled model name, a run folder (``train-detector``'s ``model.pt`` or ``train``'s ``best.pt``)
    or a checkpoint file -> the file's path."""
    text = str(ref)
    if text in BUNDLED:
        path = WEIGHTS_DIR / BUNDLED[text]
        if not path.is_file():
            raise CheckpointError(f"bundled model {text!r} is missing from this installation ({path})")
        return path
    p = Path(text)
    if is_dir(p):
        for name in RUN_MODELS:
            if (p / name).is_file():
                return p / name
        raise CheckpointError(
            f"{p}: no best.pt, model.pt or bundled.pt in this run folder; train into it first"
        )
    try:
        if p.is_file():
            return p
    except OSError as e:  # a name too long, no permission on a parent
        raise CheckpointError(f"{text}: cannot open ({e.strerror or e})") from None
    names = ", ".join(sorted(BUNDLED))
    raise CheckpointError(f"{text}: no such model file or run folder (bundled models: {names})")
