"""Bytes to model input: the one conversion shared by training and scanning (no torch, no writes)."""

from __future__ import annotations

import numpy as np

from malvision.convert.image import (
    byte_plot,
    iter_plot_rows,
    nataraj_width,
    plot_shape,
    resize_plot,
    resize_rows,
)
from malvision.convert.opcodes import parse_opcodes
from malvision.convert.pefeatures import FeatureTap
from malvision.convert.sequence import Vocabulary, byte_sequence, pad_batch
from malvision.convert.spec import ConvertSpec
from malvision.io import Source

__all__ = [
    "ConvertSpec",
    "Vocabulary",
    "byte_plot",
    "byte_sequence",
    "convert_source",
    "nataraj_width",
    "pad_batch",
    "parse_opcodes",
    "plot_shape",
    "resize_plot",
]


def convert_source(source: Source, spec: ConvertSpec, vocab: Vocabulary | None = None) -> np.ndarray:
    """Model input for ``source`` under ``spec``: (S, S) uint8 image, a 1-D id sequence, or the
    float32 PE feature vector.

    Image and feature conversion stream the file in blocks (memory stays flat for any size); byte and
    opcode sequences read only what they keep.
    """
    if spec.kind == "image":
        height, width = plot_shape(source.size)
        return resize_rows(iter_plot_rows(source.chunks(), source.size), height, width, spec.image_size)
    if spec.kind == "bytes":
        return byte_sequence(source.read(spec.max_len), spec.max_len)
    if spec.kind == "features":
        tap = FeatureTap()
        for chunk in source.chunks():
            tap.update(chunk)
        return tap.features(source.size)
    vocab = vocab or Vocabulary(spec.vocab)
    return vocab.encode(parse_opcodes(source.read(), source.name), spec.max_len)
