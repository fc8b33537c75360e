"""How a file becomes model input; stored with every dataset cache and trained model."""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

from malvision.convert.sequence import DEFAULT_MAX_LEN
from malvision.errors import ConversionError

__all__ = [
    "SPEC_VERSION",
    "KIND_VERSIONS",
    "OLDER_VERSIONS",
    "MAX_IMAGE_SIZE",
    "VECTOR_KINDS",
    "ConvertSpec",
    "input_name",
]

SPEC_VERSION = 1
# A kind whose conversion changed since SPEC_VERSION; features 2 added the import table, 3 the content
# block (section entropies, strings, markers), 4 the linker and image versions and the checksum flag, 5
# the resource directory, 6 the words of the bytes and UTF-16 strings, each of which fused vectors begin
# with too (fused N holds features N + 1); views 2 takes its entropy channel over the plotted bytes only (a
# Malimg PNG and its file give the same input).
KIND_VERSIONS = {"features": 6, "fused": 5, "views": 2}
# Older versions still converted: since 3 each features version appends, so an older vector is the start
# of today's (``pefeatures.FEATURE_WIDTHS``), and an older fused vector is that start and the image.
OLDER_VERSIONS = {"features": (3, 4, 5), "fused": (2, 3, 4)}
MAX_IMAGE_SIZE = 4096  # resizing holds two (side, 1024) 8-byte arrays: 64 MiB at this side
Kind = Literal["image", "views", "bytes", "opcodes", "features", "fused", "histograms"]
KINDS: tuple[str, ...] = ("image", "views", "bytes", "opcodes", "features", "fused", "histograms")
VECTOR_KINDS: tuple[str, ...] = ("features", "fused", "histograms")  # one float32 row a file


@dataclass(frozen=True)
class ConvertSpec:
    """Conversion settings: ``image`` (square area-resized byte plot), ``views`` (that image and the
    entropy plot of the same size, two channels), ``bytes``, ``opcodes``,
    ``features`` (the PE structure vector of ``convert.pefeatures``), ``fused`` (that vector, then the
    ``image`` scaled to [0, 1], in one float32 row) or ``histograms`` (byte, byte-entropy and nibble
    transition histograms and the printable strings' statistics, none from the PE structure:
    ``convert.histograms``).

    ``vocab`` holds the opcode vocabulary (training data only) for ``opcodes``. ``tile`` (``image`` and
    ``views``): 0 for the area-averaged plot, or the side of the tiles of the mosaic the picture is made of
    instead (``convert.image.tile_rows``: the plot at its own resolution, tiles spread through the file).
    """

    kind: Kind = "image"
    image_size: int = 64
    max_len: int = DEFAULT_MAX_LEN
    vocab: tuple[str, ...] = field(default=())
    version: int | None = None  # None: this malvision's version for ``kind``
    tile: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConversionError(f"unknown input kind {self.kind!r}; use one of {', '.join(KINDS)}")
        current = KIND_VERSIONS.get(self.kind, SPEC_VERSION)
        if self.version is None:
            object.__setattr__(self, "version", current)
        elif self.version != current and self.version not in OLDER_VERSIONS.get(self.kind, ()):
            fix = "upgrade malvision" if self.version > current else "rebuild the cache or retrain the model"
            raise ConversionError(
                f"{self.kind} conversion version {self.version} is not supported (this malvision reads "
                f"{current}); {fix}"
            )
        for name in ("image_size", "max_len"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise ConversionError(f"{name} must be a positive integer, got {value!r}")
            object.__setattr__(self, name, int(value))  # numpy integers become plain ints
        if isinstance(self.tile, bool) or not isinstance(self.tile, numbers.Integral) or self.tile < 0:
            raise ConversionError(f"tile must be a whole number of at least 0, got {self.tile!r}")
        object.__setattr__(self, "tile", int(self.tile))
        if self.tile and (self.kind not in ("image", "views") or self.image_size % self.tile):
            raise ConversionError(
                f"tile {self.tile}: tiles make the picture of an image or views input, and must divide its side "
                f"(kind {self.kind}, side {self.image_size})"
            )
        if self.image_size > MAX_IMAGE_SIZE:
            raise ConversionError(f"image_size {self.image_size} is over the limit of {MAX_IMAGE_SIZE}")
        if not isinstance(self.vocab, list | tuple) or not all(isinstance(t, str) for t in self.vocab):
            raise ConversionError("vocab must be a list of token strings")
        object.__setattr__(self, "vocab", tuple(self.vocab))

    @property
    def expects(self) -> str:
        """What files a model of this kind judges: ``text`` (opcode listings) or ``pe``; triage calls the
        rest unknown."""
        return "text" if self.kind == "opcodes" else "pe"

    @property
    def n_features(self) -> int:
        """How many PE features a ``features`` or ``fused`` input holds (or begins with)."""
        from malvision.convert.pefeatures import FEATURE_WIDTHS, N_FEATURES

        if self.kind not in ("features", "fused"):
            return N_FEATURES
        return FEATURE_WIDTHS[int(self.version or 0) + (self.kind == "fused")]

    @property
    def fixed_shape(self) -> tuple[int, ...] | None:
        """The shape of every model input of this kind, or None for sequences (their length varies)."""
        from malvision.convert.histograms import N_HISTOGRAM

        return {
            "image": (self.image_size, self.image_size),
            "views": (2, self.image_size, self.image_size),
            "features": (self.n_features,),
            "fused": (self.n_features + self.image_size**2,),
            "histograms": (N_HISTOGRAM,),
        }.get(self.kind)

    @property
    def dtype(self) -> np.dtype:
        """The dtype of a model input of this kind (opcode ids: their vocabulary decides, see ``Vocabulary``)."""
        return np.dtype(
            {"image": np.uint8, "views": np.uint8, "bytes": np.uint16, "opcodes": np.uint32}.get(
                self.kind, np.float32
            )
        )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["vocab"] = list(self.vocab)
        if not self.tile:  # the area-averaged plot: stored as before tiles existed
            del d["tile"]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ConvertSpec:
        if not isinstance(d, Mapping):
            raise ConversionError(f"a conversion spec is a mapping of its fields, got {type(d).__name__}")
        known = {k: d[k] for k in ("kind", "image_size", "max_len", "vocab", "version", "tile") if k in d}
        return cls(**known)


def input_name(spec: Mapping[str, Any]) -> str:
    """A stored spec's model input as a message names it, and as a model and a cache must agree on it: its
    kind, its side for the kinds that have one, its tiles if any."""
    kind, size, tile = spec.get("kind"), spec.get("image_size"), spec.get("tile", 0)
    sized = kind in ("image", "views", "fused")
    return f"{kind}{f' of size {size}' if sized else ''}{f' in {tile}x{tile} tiles' if tile else ''}"
