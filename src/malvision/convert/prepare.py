"""Bytes to model input in one read: the ``prepare`` that the cache builder, the scanner, explain and
the server all call, for every input kind (no torch, no writes).

One pass over a source's chunks gathers its sha256, its byte histogram, its first ``HEAD_BYTES`` and
the PE headers parsed from them (what triage reads), and the model input the ``ConvertSpec`` asks for:
the area-resized byte plot (``image``; with the entropy plot beside it, ``views``), the first ``max_len`` bytes (``bytes``), the first ``max_len``
opcode mnemonics as ids (``opcodes``), the PE feature vector (``features``), both in one row (``fused``)
or the whole file's histograms and strings (``histograms``, ``convert.histograms``). Memory follows the
model input, not the file: a multi-GB file streams through in ``io.CHUNK`` blocks.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from malvision.convert.image import EntropyPlot, iter_plot_rows, plot_shape, resize_rows, tile_rows
from malvision.convert.opcodes import OpcodeReader
from malvision.convert.pefeatures import FeatureTap
from malvision.convert.sequence import Vocabulary, byte_sequence
from malvision.convert.spec import ConvertSpec
from malvision.errors import ConversionError, InputError, NotASampleError
from malvision.io import Source
from malvision.pe import PEHeaders
from malvision.triage import byte_stats, triage

__all__ = ["Encoder", "Prepared", "Stop", "prepare", "model_input"]


class Encoder(Protocol):
    """Token strings to ids: a model's ``Vocabulary``, or the cache builder's growing codebook."""

    def encode(self, tokens: list[str]) -> np.ndarray: ...


class Stop(Protocol):
    """A flag another thread or process sets to end a read at its next chunk."""

    def is_set(self) -> bool: ...


@dataclass
class Prepared:
    """One source read once: what triage needs and the model input.

    ``x`` is None when the input cannot be made from these bytes, and ``problem`` then says why (too
    small for a byte plot, not opcode text).
    """

    name: str
    sha256: str
    size: int
    head: bytes
    hist: np.ndarray
    headers: PEHeaders | None
    x: np.ndarray | None
    problem: str | None
    not_a_sample: bool = False  # the problem: the input is no sample at all (``NotASampleError``)

    def error(self) -> ConversionError:
        """The problem as an exception naming the source (a ``NotASampleError`` where it is one)."""
        return (NotASampleError if self.not_a_sample else ConversionError)(f"{self.name}: {self.problem}")

    def triage(self, spec: ConvertSpec) -> str | None:
        """Why a model of ``spec`` cannot judge this file (``malvision.triage``: not a PE, truncated,
        near-constant, ...), or None: what makes a scan's verdict ``unknown``, and what a cache records of
        each file so that its figures count such files as a scan does."""
        return triage(self.head, byte_stats(self.hist), spec.expects, self.headers)


class _Prefix:
    """The first ``n`` bytes of a stream."""

    def __init__(self, n: int) -> None:
        self.n, self.data = n, bytearray()

    def update(self, chunk: bytes | bytearray | memoryview) -> None:
        if len(self.data) < self.n:
            self.data.extend(chunk[: self.n - len(self.data)])


def prepare(
    src: Source, spec: ConvertSpec, vocab: Encoder | None = None, stop: Stop | None = None
) -> Prepared:
    """Read ``src`` once and make its model input under ``spec``.

    ``vocab`` encodes opcode mnemonics (default: the spec's own vocabulary); ``stop``, when set by
    another thread or process, ends the read at the next chunk with an ``InputError``.
    """
    if not isinstance(src, Source):  # bytes or a path: the error says how to make one
        raise TypeError(
            f"prepare() reads a malvision.io.Source, not {type(src).__name__}: wrap bytes in "
            "MemorySource.of(name, data) and open a path with malvision.io.open_source(path)"
        )
    tap = FeatureTap(vector=spec.kind in ("features", "fused", "histograms"))
    side: dict[str, Any] = {  # what one kind needs beside the tap, fed the same chunks
        "bytes": lambda: _Prefix(spec.max_len),
        "opcodes": lambda: OpcodeReader(spec.max_len),
        "views": lambda: EntropyPlot(_plotted(src), spec.image_size),
        "histograms": _histograms,
    }
    reader = side[spec.kind]() if spec.kind in side else None

    def tapped() -> Iterator[memoryview]:
        for chunk in src.chunks():
            if stop is not None and stop.is_set():
                raise InputError(f"{src.name}: interrupted")
            tap.update(chunk)
            if reader is not None:
                reader.update(chunk)
            yield chunk

    chunks = tapped()
    image, problem = _plot(chunks, src, spec) if spec.kind in ("image", "views", "fused") else (None, None)
    not_a_sample = False
    for _ in chunks:  # the rest of the file: its histogram and sha256
        pass
    tap.finish()
    x: np.ndarray | None = image
    if spec.kind == "bytes":
        x = byte_sequence(bytes(reader.data), spec.max_len)
    elif spec.kind == "features":
        x = tap.features(src.size)[: spec.n_features]
    elif spec.kind == "histograms":
        x = reader.vector(tap.hist, tap.features(src.size))
    elif spec.kind == "views" and image is not None:  # the plot, then its entropy
        x = np.stack([image, reader.image()])
    elif spec.kind == "fused" and image is not None:  # the PE vector, then the image in [0, 1]
        x = np.concatenate(
            [tap.features(src.size)[: spec.n_features], image.ravel().astype(np.float32) / np.float32(255.0)]
        )
    elif spec.kind == "opcodes":
        try:
            x = (vocab or Vocabulary(spec.vocab)).encode(reader.tokens(bytes(tap.head), tap.hist, src.name))
        except ConversionError as e:
            problem = str(e).removeprefix(f"{src.name}: ")
            not_a_sample = isinstance(e, NotASampleError)
    head = bytes(tap.head)
    return Prepared(src.name, src.sha256, src.size, head, tap.hist, tap.headers, x, problem, not_a_sample)


def _plotted(src: Source) -> int:
    """How many of the source's bytes its byte plot shows: whole rows only (Malimg drops the last partial
    row), so the entropy channel covers what the image does, for a file as for its Malimg PNG."""
    if src.plot_width:
        return src.size
    try:
        height, width = plot_shape(src.size)
    except ConversionError:  # too small for a plot: the views input is refused on the image side
        return src.size
    return height * width


def _histograms() -> Any:
    """A ``convert.histograms.Histograms``, imported when a model reads them (not in every scan's start)."""
    from malvision.convert.histograms import Histograms

    return Histograms()


def _plot(
    chunks: Iterator[memoryview], src: Source, spec: ConvertSpec
) -> tuple[np.ndarray | None, str | None]:
    """The S x S image of the source's byte plot (its own width for a Malimg PNG's rows), area-averaged
    or, with ``spec.tile``, its mosaic of tiles; or why not."""
    try:
        height, width = (
            (src.size // src.plot_width, src.plot_width) if src.plot_width else plot_shape(src.size)
        )
        rows = iter_plot_rows(chunks, src.size, width)
        if spec.tile:
            return tile_rows(rows, height, width, spec.image_size, spec.tile), None
        return resize_rows(rows, height, width, spec.image_size), None
    except ConversionError as e:
        return None, f"too small for a byte plot ({e})"


def model_input(src: Source, spec: ConvertSpec, vocab: Encoder | None = None) -> np.ndarray:
    """``prepare(src, spec, vocab).x``, or a ``ConversionError`` naming the file and the problem."""
    p = prepare(src, spec, vocab)
    if p.x is None:
        raise p.error()
    return p.x
